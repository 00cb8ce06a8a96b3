"""The model card: a Keras-style layer table and the same facts as plain data.

The table shows layers the way the training framework's `model.summary()` does: one row per
framework layer where the exporter kept layer names in its node scopes (tf2onnx, Keras 3,
torch.onnx), output shapes in the model's own layout (an NHWC Keras model's convolutions are
shown NHWC, though ONNX runs them NCHW), and the plumbing exporters add hidden: shape arithmetic
(Shape, Gather, Cast, Unsqueeze, Concat of dims), layout Transposes around each Conv, no-op Casts
and Identity copies; a bias Add after a Conv or MatMul joins its row (Keras' Conv2D and Dense
hold their bias). `all_tensors=True` lists every tensor as stored instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..graph.layers import Layer, Shape, shape_only

if TYPE_CHECKING:
    from .core import Model

#: Ops that copy a tensor without computing anything a user would call a layer.
_COPY_OPS = ("Identity", "Dropout")
#: Ops whose bias (an Add of a per-channel constant right after them) belongs to their row.
_BIASED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class Row:
    """One row of the summary: a framework layer (or one tensor) and what it adds up to."""

    name: str  # framework layer path, else the tensor name
    tensor: str  # the row's output tensor (its last)
    ops: list[str] = field(default_factory=list)
    shape: Shape = None  # in the model's own layout unless listing all tensors
    layout: str | None = None  # the output tensor's own layout
    params: int = 0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "tensor": self.tensor,
            "ops": list(self.ops),
            "shape": list(self.shape) if self.shape is not None else None,
            "layout": self.layout,
            "params": self.params,
        }


def _in_model_layout(shape: Shape, layout: str | None, model_layout: str) -> Shape:
    """`shape` of a tensor stored in `layout`, permuted to the model's input layout."""
    if shape is None or layout is None or len(shape) != 4 or model_layout not in ("NCHW", "NHWC"):
        return shape
    return tuple(shape[layout.index(c)] for c in model_layout)


def hidden_layers(model: Model) -> set[str]:
    """Tensors the summary hides: shape plumbing, layout Transposes, no-op Casts, copies."""
    proto = model.proto
    plumbing = shape_only(proto)
    by_name = {la.name: la for la in model.layers}
    producer = {o: n for n in proto.graph.node for o in n.output if o}
    input_dtypes = {i.name: str(i.dtype) for i in model.inputs}
    hidden = set(plumbing)
    for la in model.layers:
        node = producer.get(la.name)
        src = node.input[0] if node is not None and node.input else ""
        src_la = by_name.get(src)
        src_dtype = src_la.dtype if src_la is not None else input_dtypes.get(src)
        if la.op in _COPY_OPS:
            hidden.add(la.name)
        elif la.op == "Cast" and src_dtype == la.dtype:
            hidden.add(la.name)
        elif la.op == "Transpose" and la.layout is not None:
            # A layout change of a feature map (NHWC <-> NCHW around a Conv), not a layer.
            src_layout = src_la.layout if src_la is not None else None
            if src_layout is not None or src in input_dtypes:
                hidden.add(la.name)
    return hidden


def _is_bias(model: Model, la: Layer, producer: dict, hidden: set[str], last: Row) -> bool:
    """True for an Add of a constant per-channel vector to `last`'s output (through hidden
    copies): the bias of a Conv/MatMul exported as a separate node."""
    if la.op != "Add" or not last.ops or last.ops[-1] not in _BIASED_OPS:
        return False
    node = producer.get(la.name)
    if node is None or len(node.input) != 2:
        return False
    inits = {t.name: t for t in model.proto.graph.initializer}
    data = [i for i in node.input if i not in inits]
    consts = [i for i in node.input if i in inits]
    if len(data) != 1 or len(consts) != 1:
        return False
    dims = [d for d in inits[consts[0]].dims if d != 1]
    if len(dims) > 1:
        return False
    src = data[0]
    while src in hidden and src in producer and producer[src].input:
        src = producer[src].input[0]
    return src == last.tensor


def summary_rows(model: Model, all_tensors: bool = False) -> list[Row]:
    """The summary's rows (see the module docstring)."""
    layers = model.layers
    if all_tensors:
        return [Row(la.name, la.name, [la.op], la.shape, la.layout, la.params) for la in layers]
    hidden = hidden_layers(model)
    producer = {o: n for n in model.proto.graph.node for o in n.output if o}
    rows: list[Row] = []
    carried = 0  # parameters of hidden layers, shown on the next row
    for la in layers:
        if la.name in hidden:
            carried += la.params
            continue
        last = rows[-1] if rows else None
        same_layer = last is not None and la.framework is not None and la.framework == last.name
        if last is not None and (
            same_layer or (_is_bias(model, la, producer, hidden, last) and la.framework is None)
        ):
            last.tensor = la.name
            last.ops.append(la.op)
            last.shape = la.shape
            last.layout = la.layout
            last.params += la.params + carried
        else:
            rows.append(
                Row(
                    la.framework or la.name,
                    la.name,
                    [la.op],
                    la.shape,
                    la.layout,
                    la.params + carried,
                )
            )
        carried = 0
    if rows and carried:
        rows[-1].params += carried
    for r in rows:
        r.shape = _in_model_layout(r.shape, r.layout, model.layout)
    return rows


def to_dict(model: Model) -> dict:
    """Name, opset, producer, inputs, outputs, layers (every tensor), the summary's rows,
    parameter count and preprocessing."""
    return {
        "model": model.name,
        "opset": model.opset,
        "producer": f"{model.proto.producer_name} {model.proto.producer_version}".strip(),
        "inputs": [
            {
                "name": i.name,
                "shape": list(i.shape or ()),
                "dtype": str(i.dtype),
                "layout": i.layout,
            }
            for i in model.inputs
        ],
        "outputs": model.output_names,
        "layers": [
            {
                "name": la.name,
                "op": la.op,
                "shape": list(la.shape) if la.shape else None,
                "params": la.params,
                "layout": la.layout,
                "framework": la.framework,
            }
            for la in model.layers
        ],
        "summary": [r.to_dict() for r in summary_rows(model)],
        "total_params": model.param_count,
        "preprocess": model.preprocess.to_dict(),
    }


def summary(model: Model, max_name: int = 48, all_tensors: bool = False) -> str:
    """A table like Keras `model.summary()`: layer, op(s), output shape, params, with totals.

    One row per framework layer (or tensor), plumbing hidden, shapes in the model's layout;
    `all_tensors=True`: every tensor as stored, with its layout."""

    def fmt_shape(s: Shape) -> str:
        return "?" if s is None else "(" + ", ".join("?" if d is None else str(d) for d in s) + ")"

    def clip(s: str) -> str:
        return s if len(s) <= max_name else "…" + s[-(max_name - 1) :]

    rows = summary_rows(model, all_tensors)
    named = any(r.name != r.tensor for r in rows)
    head: tuple[str, ...] = (
        "Layer" if named else "Layer (tensor)",
        "Op",
        "Output shape",
        "Params",
    )
    cells: list[tuple[str, ...]] = [
        (clip(r.name), "+".join(r.ops), fmt_shape(r.shape), f"{r.params:,}") for r in rows
    ]
    if all_tensors:
        head = (*head[:3], "Layout", head[3])
        cells = [(c[0], c[1], c[2], r.layout or "", c[3]) for c, r in zip(cells, rows, strict=True)]
    k = len(head)
    widths = [
        max(len(head[i]), *(len(c[i]) for c in cells)) if cells else len(head[i]) for i in range(k)
    ]

    def line(vals: tuple[str, ...]) -> str:
        return "  ".join(
            v.ljust(w) if i < k - 1 else v.rjust(w)
            for i, (v, w) in enumerate(zip(vals, widths, strict=True))
        )

    header = line(head)
    bar = "=" * len(header)
    out = [
        f'Model: "{model.name}"  (opset {model.opset}, {model.proto.producer_name or "unknown producer"})'
    ]
    for i in model.inputs:
        out.append(f"Input {i.name!r}: {fmt_shape(i.shape)} {i.dtype} {i.layout}")
    out += [bar, header, bar]
    out += [line(c) for c in cells]
    out.append(bar)
    total = model.param_count
    out.append(f"Total params: {total:,} ({total * 4 / 2**20:.2f} MB as float32)")
    out.append(f"Layers: {len(model.layers)}  Outputs: {', '.join(model.output_names)}")
    if not all_tensors:
        shown = len(rows)
        notes = []
        if shown < len(model.layers):
            notes.append(
                f"{len(model.layers) - shown} tensors folded or hidden (shape plumbing, layout "
                "transposes, copies)"
            )
        if model.layout in ("NCHW", "NHWC"):
            notes.append(f"shapes in the model's {model.layout} layout")
        if notes:
            out.append("; ".join(notes) + "; `onnxlens inspect --all` lists every tensor.")
    return "\n".join(out)
