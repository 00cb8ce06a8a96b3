"""Receptive fields read from the graph: which input pixels a unit (row, col) of a layer can see.

Per spatial axis a tensor carries an affine map `unit i  ->  input pixels [i*jump + lo, i*jump + hi]`
(inclusive, in the model input's pixel grid). The input is (jump 1, lo 0, hi 0). A Conv/pool with
kernel k, stride s, begin pad p and dilation d maps (j, lo, hi) to
(s*j, lo - p*j, hi + ((k-1)*d - p)*j) (Araujo et al., "Computing Receptive Fields of CNNs",
Distill 2019, eq. 1-2, written per tensor). Where paths join (Add, Concat, Mul), the field is the
union of the inputs' fields (ResNet shortcuts: the residual branch dominates, the 1x1 projection
is inside it). Inputs that are global context (a 1x1 map broadcast over the grid, e.g. the
squeeze-excitation scale) do not move patches and are ignored, with a note. Ops that break the
affine map (Flatten, Reshape, MatMul, spatial Slice ...) give the whole image as the field, and
using it warns once, naming the op.

Each field also records which axes of its tensor are (H, W): (2, 3) after a Conv, (1, 2) for an
NHWC input. Transposes move them, so the Transpose/Conv/Transpose sandwiches of tf2onnx exports
keep exact fields, and mining knows which axis holds the channels of an NHWC feature map.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from .layers import opset_version, tensor_shape
from .shapes import same_pads

# Ops that map each spatial position to the same position (elementwise, per-pixel over channels).
POINTWISE = {
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid", "HardSwish",
    "Tanh", "Softplus", "Softsign", "Mish", "Swish", "Silu", "ThresholdedRelu", "Clip", "Abs", "Neg",
    "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf", "Cast", "Identity",
    "Dropout", "BatchNormalization", "InstanceNormalization", "LRN", "QuantizeLinear",
    "DequantizeLinear", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where",
    "Concat", "Split", "Not", "And", "Or", "Equal", "Greater", "Less", "Sin", "Cos",
}  # fmt: skip
POOLS = {"Conv", "MaxPool", "AveragePool", "LpPool", "ConvInteger", "QLinearConv"}
GLOBAL = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"}


@dataclass(frozen=True)
class Field:
    """The receptive field of a tensor. `jump`, `lo`, `hi` per axis (y, x), or `whole` = the entire
    image (global pooling, or a fallback whose reason is in `reason`). `axes`: the tensor's (H, W)
    axes, so (2, 3) for NCHW and (1, 2) for NHWC."""

    jump: tuple[float, float] = (1.0, 1.0)
    lo: tuple[float, float] = (0.0, 0.0)
    hi: tuple[float, float] = (0.0, 0.0)
    whole: bool = False
    reason: str = ""
    notes: tuple[str, ...] = field(default=(), compare=False)
    axes: tuple[int, int] = (2, 3)

    @property
    def size(self) -> tuple[float, float]:
        """Receptive field size (H, W) in input pixels (before clipping at the borders)."""
        return (self.hi[0] - self.lo[0] + 1, self.hi[1] - self.lo[1] + 1)

    @property
    def stride(self) -> tuple[float, float]:
        return self.jump

    @property
    def nchw_perm(self) -> tuple[int, int, int, int] | None:
        """The Transpose perm that makes a 4-D tensor with this field (N, C, H, W); None when it
        already is."""
        if self.axes == (2, 3):
            return None
        (c,) = {1, 2, 3} - set(self.axes)
        return (0, c, *self.axes)


INPUT = Field()
_CONST = Field(whole=True, reason="constant")


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _union(fields: list[Field], op: str) -> Field:
    real = [f for f in fields if f is not _CONST]
    local = [f for f in real if not f.whole]
    broken = [f for f in real if f.whole and f.reason and f.reason != "global"]
    if broken:
        return broken[0]
    if not local:
        return real[0] if real else _CONST
    notes = tuple(n for f in local for n in f.notes)
    if len(local) < len(real):
        notes += (f"{op}: global-context input (1x1 broadcast) ignored",)
    jumps = {f.jump for f in local}
    if len(jumps) > 1:
        return Field(whole=True, reason=f"{op} joins paths with different strides {sorted(jumps)}")
    if len({f.axes for f in local}) > 1:
        return Field(whole=True, reason=f"{op} joins NCHW and NHWC tensors")
    lo = tuple(min(f.lo[a] for f in local) for a in range(2))
    hi = tuple(max(f.hi[a] for f in local) for a in range(2))
    return Field(local[0].jump, lo, hi, notes=tuple(dict.fromkeys(notes)), axes=local[0].axes)  # type: ignore[arg-type]


class ReceptiveFields:
    """Receptive fields of every tensor of a model, computed once in graph order.

    `input_name` is the image input and `layout` its layout: its (H, W) are dims 2, 3 for "NCHW"
    and 1, 2 for "NHWC".
    """

    def __init__(
        self, model: onnx.ModelProto, input_name: str | None = None, layout: str = "NCHW"
    ) -> None:
        self.model = model
        g = model.graph
        inits = {t.name: t for t in g.initializer}
        self._inits = inits
        self._consts: dict[str, np.ndarray] = {}
        inputs = [v.name for v in g.input if v.name not in inits]
        self.input_name = input_name or inputs[0]
        self.fields: dict[str, Field] = {
            self.input_name: Field(axes=(1, 2)) if layout == "NHWC" else INPUT
        }
        for name in inits:
            self.fields[name] = _CONST
        for name in inputs:
            self.fields.setdefault(name, _CONST)
        for node in g.node:
            if node.op_type == "Constant":
                for o in node.output:
                    self.fields[o] = _CONST
                    attrs = _attrs(node)
                    if "value" in attrs:
                        self._consts[o] = numpy_helper.to_array(attrs["value"])
                continue
            ins = [self.fields.get(i, _CONST) for i in node.input if i]
            f = self._propagate(node, ins)
            for o in node.output:
                if o:
                    self.fields[o] = f
        self._warned: set[str] = set()

    # -- propagation --------------------------------------------------------------------------
    def _const(self, name: str) -> np.ndarray | None:
        if name in self._consts:
            return self._consts[name]
        t = self._inits.get(name)
        return numpy_helper.to_array(t) if t is not None else None

    def _hw(self, name: str, axes: tuple[int, int] = (2, 3)) -> tuple[int, int] | None:
        s = tensor_shape(self.model, name)
        if s is None or len(s) != 4 or not all(isinstance(s[a], int) for a in axes):
            return None
        return int(s[axes[0]]), int(s[axes[1]])  # type: ignore[arg-type]

    def _propagate(self, node: onnx.NodeProto, ins: list[Field]) -> Field:
        op = node.op_type
        label = f"{op} node {node.name or node.output[0]!r}"
        if not ins:
            return _CONST
        if all(f is _CONST for f in ins):
            return _CONST
        first = next(f for f in ins if f is not _CONST)
        if op in GLOBAL:
            return Field(whole=True, reason="global")
        if first.whole and op not in POINTWISE:
            return first
        if op in POINTWISE:
            if op == "Concat" and _attrs(node).get("axis", 1) % 4 in first.axes:
                return Field(whole=True, reason=f"{label} concatenates along a spatial axis")
            return _union(ins, op)
        if op == "Transpose":
            perm = list(_attrs(node).get("perm", [3, 2, 1, 0]))
            if len(perm) != 4 or perm[0] != 0:
                return Field(whole=True, reason=f"{label} moves the batch axis or is not 4-D")
            axes = (perm.index(first.axes[0]), perm.index(first.axes[1]))
            return Field(first.jump, first.lo, first.hi, notes=first.notes, axes=axes)
        if op in POOLS or op == "ConvTranspose":
            if first.axes != (2, 3):
                return Field(whole=True, reason=f"{label} slides over axes 2, 3 of an NHWC tensor")
        if op in POOLS:
            return self._window(node, first, label, transpose=False)
        if op == "ConvTranspose":
            return self._window(node, first, label, transpose=True)
        if op == "Resize" or op == "Upsample":
            src = self._hw(node.input[0], first.axes)
            dst = self._hw(node.output[0], first.axes)
            if src is None or dst is None:
                return Field(whole=True, reason=f"{label} has unknown static sizes")
            # Output pixel i samples around input i/f: jump shrinks by f; one input jump of slack
            # either side covers nearest rounding and the bilinear neighbours.
            jump = tuple(first.jump[a] * src[a] / dst[a] for a in range(2))
            lo = tuple(first.lo[a] - first.jump[a] for a in range(2))
            hi = tuple(first.hi[a] + first.jump[a] for a in range(2))
            return Field(jump, lo, hi, notes=first.notes, axes=first.axes)  # type: ignore[arg-type]
        if op == "Pad":
            pads = _attrs(node).get("pads")
            if pads is None and len(node.input) > 1:
                c = self._const(node.input[1])
                pads = None if c is None else [int(v) for v in c]
            if pads is None or len(pads) != 8:
                return Field(whole=True, reason=f"{label} has non-constant or non-4D pads")
            jump, (ay, ax) = first.jump, first.axes
            lo = (first.lo[0] - pads[ay] * jump[0], first.lo[1] - pads[ax] * jump[1])
            hi = (first.hi[0] - pads[ay] * jump[0], first.hi[1] - pads[ax] * jump[1])
            return Field(jump, lo, hi, notes=first.notes, axes=first.axes)
        if op in ("Softmax", "LogSoftmax"):
            axis = _attrs(node).get("axis", 1 if opset_version(self.model) < 13 else -1) % 4
            if axis not in (0, *first.axes):  # over channels only
                return first
        if op in ("ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin", "ReduceL2"):
            reduced = _attrs(node).get("axes")
            if reduced is None and len(node.input) > 1:
                c = self._const(node.input[1])
                reduced = None if c is None else [int(v) for v in c]
            if reduced is not None and {a % 4 for a in reduced} == set(first.axes):
                return Field(whole=True, reason="global", axes=first.axes)
            if reduced is not None and not ({a % 4 for a in reduced} & set(first.axes)):
                return first
        return Field(whole=True, reason=f"{label} breaks the affine map from input pixels")

    def _window(self, node: onnx.NodeProto, f: Field, label: str, transpose: bool) -> Field:
        a = _attrs(node)
        k = a.get("kernel_shape")
        if k is None and len(node.input) > 1:
            w = self._inits.get(node.input[1])
            k = list(w.dims[2:]) if w is not None else None
        if k is None or len(k) != 2:
            return Field(whole=True, reason=f"{label} is not a 2-D window with a known kernel")
        s = a.get("strides", [1, 1])
        d = a.get("dilations", [1, 1])
        pads = list(a.get("pads", [0, 0, 0, 0]))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER") and not transpose:
            hw = self._hw(node.input[0])
            if hw is None:
                return Field(whole=True, reason=f"{label} uses auto_pad with unknown input size")
            pads[:2] = same_pads(hw, k, s, d, auto)[0]
        elif auto == "VALID":
            pads = [0, 0, 0, 0]
        jump, lo, hi = [], [], []
        for ax in range(2):
            j = f.jump[ax]
            span = (k[ax] - 1) * d[ax]
            if not transpose:
                jump.append(j * s[ax])
                lo.append(f.lo[ax] - pads[ax] * j)
                hi.append(f.hi[ax] + (span - pads[ax]) * j)
            else:
                # Output o sees inputs i with i*s - p <= o <= i*s - p + span.
                jump.append(j / s[ax])
                lo.append(f.lo[ax] + (pads[ax] - span) * j / s[ax])
                hi.append(f.hi[ax] + pads[ax] * j / s[ax])
        return Field(tuple(jump), tuple(lo), tuple(hi), notes=f.notes)  # type: ignore[arg-type]

    # -- queries ------------------------------------------------------------------------------
    def field(self, layer: str) -> Field:
        f = self.fields.get(layer)
        if f is None:
            raise KeyError(layer)
        return f

    def box(
        self, layer: str, row: int, col: int, image_size: tuple[int, int]
    ) -> tuple[int, int, int, int]:
        """(y0, x0, y1, x1) in input pixels of unit (row, col) of `layer`, half-open (y1, x1
        exclusive), clipped at the image borders. `image_size` is the model input's (H, W)."""
        return tuple(self.boxes(layer, np.array([[row, col]]), image_size)[0])  # type: ignore[return-value]

    def boxes(self, layer: str, positions: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
        """int32 (..., 4) boxes for int (..., 2) (row, col) positions; negative rows give -1s."""
        f = self.field(layer)
        h, w = image_size
        pos = np.asarray(positions, dtype=np.float64)
        out = np.empty((*pos.shape[:-1], 4), np.int32)
        if f.whole:
            if f.reason not in ("global", "constant") and layer not in self._warned:
                self._warned.add(layer)
                warnings.warn(
                    f"receptive field of {layer!r}: {f.reason}; its patches are the whole image.",
                    stacklevel=2,
                )
            out[...] = (0, 0, h, w)
        else:
            y0 = np.floor(pos[..., 0] * f.jump[0] + f.lo[0])
            y1 = np.floor(pos[..., 0] * f.jump[0] + f.hi[0]) + 1
            x0 = np.floor(pos[..., 1] * f.jump[1] + f.lo[1])
            x1 = np.floor(pos[..., 1] * f.jump[1] + f.hi[1]) + 1
            out[..., 0] = np.clip(y0, 0, h)
            out[..., 1] = np.clip(x0, 0, w)
            out[..., 2] = np.clip(y1, 0, h)
            out[..., 3] = np.clip(x1, 0, w)
        out[pos[..., 0] < 0] = -1
        return out


def nchw_perms(fields: ReceptiveFields, tensors: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Per 4-D tensor that is not (N, C, H, W) (an NHWC feature map), the perm that makes it so."""
    perms: dict[str, tuple[int, ...]] = {}
    for name in tensors:
        perm = fields.field(name).nchw_perm
        shape = tensor_shape(fields.model, name)
        if perm is not None and (shape is None or len(shape) == 4):
            perms[name] = perm
    return perms


def receptive_field(model: onnx.ModelProto, layer: str) -> Field:
    """The receptive field of one tensor of `model` (see ReceptiveFields)."""
    return ReceptiveFields(model).field(layer)
