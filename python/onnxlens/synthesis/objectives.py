"""Objectives for synthesis: what an optimised image should excite, emitted as ONNX nodes.

An objective is a small graph appended to the model's: it reads layer tensors and produces one
score per batch row, shape (N,), that the optimiser maximises. Because the score is part of the
graph, its gradient (however it depends on the activations: mean(A^2), Gram matrices, cosine
similarities) comes out of the same single VJP run as everything else.

Objectives compose like lucid's: ``channel("relu3", 5) + 0.5 * deepdream("relu2")``,
``objective - other``, ``sum([...])``, and ``channel(L, 3).restrict([0, 2])`` (rows 0 and 2 only:
row i can carry its own target). Each rank-4 tensor is read in its own layout (NCHW
convolutions inside an NHWC Keras export included); (N, C) tensors (logits, embeddings) work
where a channel is all that is asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigurationError, ShapeError
from ..graph.builder import GraphBuilder

log = logging.getLogger("onnxlens")

# What the pre-activation of a class score is when an output applies one of these.
_SQUASHING = ("Softmax", "LogSoftmax", "Sigmoid")


@dataclass
class EmitContext:
    """What an objective needs to emit its nodes: the builder over the model graph, name
    resolution, the image layout and the batch size the graph is compiled for."""

    builder: GraphBuilder
    resolve: object  # Callable[[str], str]: layer/tensor/node name -> tensor name
    layout: str
    batch: int
    producers: dict = field(default_factory=dict)  # tensor -> producing NodeProto
    outputs: Sequence[str] = ()
    notes: list[str] = field(default_factory=list)
    #: each rank-4 tensor's own layout (`graph.layout.tensor_layouts`): a Keras export holds
    #: NCHW convolutions inside an NHWC model, so the image layout says nothing about a layer
    layouts: Mapping[str, str | None] = field(default_factory=dict)

    def tensor(self, name: str) -> str:
        return self.resolve(name)  # type: ignore[operator]

    def shape(self, tensor: str) -> tuple:
        s = self.builder.static_shape(tensor)
        if s is None:
            raise ShapeError(
                f"the shape of {tensor!r} is unknown; objectives need the rank of their layer "
                "(pass the image size so shapes can be inferred)."
            )
        return tuple(s)

    def channel_axis(self, tensor: str) -> int:
        """A rank-4 map's C axis by its own layout (the image layout when unknown); 1 for
        (N, C) vectors; the last axis for (N, T, C) tokens."""
        rank = len(self.shape(tensor))
        if rank == 4:
            own = self.layouts.get(tensor) or self.layout
            return own.index("C") if own and "C" in own else 1
        if rank == 3:
            return 2
        return 1

    def spatial_axes(self, tensor: str) -> list[int]:
        rank = len(self.shape(tensor))
        own = self.layouts.get(tensor) or self.layout
        if rank == 4 and own and {"H", "W"} <= set(own):
            return [own.index("H"), own.index("W")]
        c = self.channel_axis(tensor)
        return [a for a in range(1, rank) if a != c]


class Objective:
    """A per-row score to maximise; see the module docstring for how they compose."""

    def emit(self, ctx: EmitContext) -> str:
        """Emit the nodes of this objective; returns the name of its (N,) float tensor."""
        raise NotImplementedError

    # -- composition ---------------------------------------------------------------------------
    def __add__(self, other: object) -> Objective:
        if isinstance(other, int | float) and other == 0:
            return self  # sum() starts from 0
        if not isinstance(other, Objective):
            return NotImplemented
        return Sum([(1.0, self), (1.0, other)])

    __radd__ = __add__

    def __sub__(self, other: Objective) -> Objective:
        return Sum([(1.0, self), (-1.0, other)])

    def __neg__(self) -> Objective:
        return Sum([(-1.0, self)])

    def __mul__(self, w: object) -> Objective:
        if not isinstance(w, int | float):
            return NotImplemented
        return Sum([(float(w), self)])

    __rmul__ = __mul__

    def __truediv__(self, w: float) -> Objective:
        return Sum([(1.0 / float(w), self)])

    def restrict(self, rows: int | Iterable[int]) -> Objective:
        """This objective on the given batch rows only (0 elsewhere)."""
        return Restricted(self, (rows,) if isinstance(rows, int) else tuple(rows))

    @property
    def layers(self) -> list[str]:
        """The layer names this objective reads (for announcing and for activation reports)."""
        return []


@dataclass(frozen=True, eq=False)
class Sum(Objective):
    terms: list[tuple[float, Objective]]

    def emit(self, ctx: EmitContext) -> str:
        b = ctx.builder
        out: str | None = None
        for w, term in self.terms:
            t = term.emit(ctx)
            if w != 1.0:
                t = b.mul(t, b.scalar(w, t))
            out = t if out is None else b.op("Add", [out, t])
        assert out is not None
        return out

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys(la for _, t in self.terms for la in t.layers))

    def __repr__(self) -> str:
        return " + ".join(f"{w:g}*{t!r}" if w != 1 else repr(t) for w, t in self.terms)


@dataclass(frozen=True, eq=False)
class Restricted(Objective):
    inner: Objective
    rows: tuple[int, ...]

    def emit(self, ctx: EmitContext) -> str:
        bad = [r for r in self.rows if not 0 <= r < ctx.batch]
        if bad:
            raise ConfigurationError(
                f"batch rows {bad} are outside a batch of {ctx.batch}; restrict to rows 0..{ctx.batch - 1}."
            )
        mask = np.zeros(ctx.batch, np.float32)
        mask[list(self.rows)] = 1
        t = self.inner.emit(ctx)
        return ctx.builder.mul(t, ctx.builder.const(mask, hint="rows"))

    @property
    def layers(self) -> list[str]:
        return self.inner.layers

    def __repr__(self) -> str:
        return f"{self.inner!r}[rows {list(self.rows)}]"


def _gather(ctx: EmitContext, t: str, index: int, axis: int) -> str:
    size = ctx.shape(t)[axis]
    if isinstance(size, int) and not 0 <= index < size:
        raise ConfigurationError(
            f"index {index} is out of range for axis {axis} of {t!r}, which has {size} entries."
        )
    return ctx.builder.op("Gather", [t, ctx.builder.const(np.int64(index))], axis=axis)


def _mean_rest(ctx: EmitContext, t: str, rank: int) -> str:
    """Mean over every axis but the batch: (N, ...) -> (N,)."""
    if rank == 1:
        return t
    return ctx.builder.reduce_mean(t, list(range(1, rank)), keepdims=False)


@dataclass(frozen=True, eq=False)
class Channel(Objective):
    layer: str
    channel: int

    def emit(self, ctx: EmitContext) -> str:
        t = ctx.tensor(self.layer)
        rank = len(ctx.shape(t))
        g = _gather(ctx, t, self.channel, ctx.channel_axis(t))
        return _mean_rest(ctx, g, rank - 1)

    @property
    def layers(self) -> list[str]:
        return [self.layer]

    def __repr__(self) -> str:
        return f"channel({self.layer!r}, {self.channel})"


@dataclass(frozen=True, eq=False)
class Neuron(Objective):
    layer: str
    channel: int
    y: int | None = None
    x: int | None = None

    def emit(self, ctx: EmitContext) -> str:
        t = ctx.tensor(self.layer)
        shape = ctx.shape(t)
        spatial = ctx.spatial_axes(t)
        if len(spatial) != 2:
            raise ShapeError(
                f"neuron() needs a spatial layer (N, C, H, W); {self.layer!r} has shape {shape}. "
                "Use channel() for vectors."
            )
        pos = []
        for axis, want in zip(spatial, (self.y, self.x), strict=True):
            size = shape[axis]
            if want is None:
                if not isinstance(size, int):
                    raise ShapeError(
                        f"the centre of {self.layer!r} is unknown (dynamic size); pass y= and x=."
                    )
                want = size // 2
            pos.append((axis, int(want)))
        c_axis = ctx.channel_axis(t)
        if not 0 <= self.channel < (shape[c_axis] if isinstance(shape[c_axis], int) else 1 << 30):
            raise ConfigurationError(
                f"channel {self.channel} is out of range for {self.layer!r}, which has "
                f"{shape[c_axis]} channels."
            )
        axes = [c_axis] + [a for a, _ in pos]
        starts = [self.channel] + [p for _, p in pos]
        unit = ctx.builder.slice(t, starts, [s + 1 for s in starts], axes)
        return ctx.builder.op("Reshape", [unit, ctx.builder.ints([ctx.batch])])

    @property
    def layers(self) -> list[str]:
        return [self.layer]

    def __repr__(self) -> str:
        return f"neuron({self.layer!r}, {self.channel}, y={self.y}, x={self.x})"


@dataclass(frozen=True, eq=False)
class ClassLogit(Objective):
    index: int
    output: str | None = None
    pre_activation: bool = True

    def emit(self, ctx: EmitContext) -> str:
        out = ctx.tensor(self.output) if self.output else ctx.outputs[0]
        node = ctx.producers.get(out)
        if self.pre_activation and node is not None and node.op_type in _SQUASHING:
            ctx.notes.append(
                f"class objectives use the input of {node.op_type} {out!r} (the logit), not its "
                "output (pass pre_activation=False for the probability)"
            )
            out = node.input[0]
        shape = ctx.shape(out)
        g = _gather(ctx, out, self.index, 1)
        return _mean_rest(ctx, g, len(shape) - 1)

    def __repr__(self) -> str:
        return f"class_logit({self.index})"


@dataclass(frozen=True, eq=False)
class DeepDream(Objective):
    layer: str

    def emit(self, ctx: EmitContext) -> str:
        t = ctx.tensor(self.layer)
        sq = ctx.builder.mul(t, t)
        return _mean_rest(ctx, sq, len(ctx.shape(t)))

    @property
    def layers(self) -> list[str]:
        return [self.layer]

    def __repr__(self) -> str:
        return f"deepdream({self.layer!r})"


@dataclass(frozen=True, eq=False)
class Direction(Objective):
    layer: str
    vector: np.ndarray
    cossim_pow: float = 0.0

    def emit(self, ctx: EmitContext) -> str:
        b = ctx.builder
        t = ctx.tensor(self.layer)
        shape = ctx.shape(t)
        c_axis = ctx.channel_axis(t)
        v = np.asarray(self.vector, np.float32).reshape(-1)
        if isinstance(shape[c_axis], int) and shape[c_axis] != v.size:
            raise ShapeError(
                f"direction vector has {v.size} entries, layer {self.layer!r} has {shape[c_axis]} channels."
            )
        bshape = [1] * len(shape)
        bshape[c_axis] = v.size
        vt = b.const(v.reshape(bshape), hint="direction")
        dot = b.reduce_sum(b.mul(t, vt), [c_axis], keepdims=True)
        if self.cossim_pow:
            # lucid's _dot_cossim: dot * max(0.1, cos)^p, so the score favours the direction
            # itself over large activations that merely have a component along it.
            norm = b.op("Sqrt", [b.reduce_sum(b.mul(t, t), [c_axis], keepdims=True)])
            denom = b.op(
                "Add", [b.mul(norm, b.scalar(float(np.linalg.norm(v)), norm)), b.scalar(1e-6, norm)]
            )
            cos = b.op("Max", [b.op("Div", [dot, denom]), b.scalar(0.1, dot)])
            dot = b.mul(dot, b.op("Pow", [cos, b.scalar(float(self.cossim_pow), cos)]))
        return _mean_rest(ctx, dot, len(shape))

    @property
    def layers(self) -> list[str]:
        return [self.layer]

    def __repr__(self) -> str:
        return f"direction({self.layer!r}, <{np.asarray(self.vector).size}>, cossim_pow={self.cossim_pow})"


def _gram(ctx: EmitContext, t: str) -> tuple[str, int]:
    """(N, C, C) Gram matrices of a map, normalised by the number of positions; and C."""
    b = ctx.builder
    shape = ctx.shape(t)
    c_axis = ctx.channel_axis(t)
    rank = len(shape)
    if c_axis != rank - 1:  # channels last for (N, HW, C)
        perm = [0] + [a for a in range(1, rank) if a != c_axis] + [c_axis]
        t = b.op("Transpose", [t], perm=perm)
    c = shape[c_axis]
    if not isinstance(c, int):
        raise ShapeError(f"the channel count of {t!r} is unknown; a Gram matrix needs it.")
    flat = b.op("Reshape", [t, b.ints([ctx.batch, -1, c])])
    positions = int(np.prod([d for i, d in enumerate(shape) if i not in (0, c_axis)]))
    gram = b.op("MatMul", [b.op("Transpose", [flat], perm=[0, 2, 1]), flat])
    return b.mul(gram, b.scalar(1.0 / max(1, positions), gram)), c


@dataclass(frozen=True, eq=False)
class Diversity(Objective):
    """Minus the mean cosine similarity of each row's Gram matrix to the other rows' (lucid's
    diversity): maximising it pushes a batch of visualisations of one target apart."""

    layer: str

    def emit(self, ctx: EmitContext) -> str:
        b = ctx.builder
        if ctx.batch < 2:
            raise ConfigurationError("diversity() compares batch rows; use a batch of 2 or more.")
        gram, c = _gram(ctx, ctx.tensor(self.layer))
        g = b.op("Reshape", [gram, b.ints([ctx.batch, c * c])])
        norm = b.op("Sqrt", [b.reduce_sum(b.mul(g, g), [1], keepdims=True)])
        gn = b.op("Div", [g, b.op("Add", [norm, b.scalar(1e-8, norm)])])
        sim = b.op("MatMul", [gn, b.op("Transpose", [gn], perm=[1, 0])])  # (N, N)
        off = b.mul(sim, b.const(1 - np.eye(ctx.batch, dtype=np.float32), hint="offdiag"))
        row = b.reduce_sum(off, [1], keepdims=False)
        return b.mul(row, b.scalar(-1.0 / (ctx.batch - 1), row))

    @property
    def layers(self) -> list[str]:
        return [self.layer]

    def __repr__(self) -> str:
        return f"diversity({self.layer!r})"


@dataclass(frozen=True, eq=False)
class Alignment(Objective):
    """Minus the squared distance of each row's activations to the next row's, weighted by
    1/(1 + |i - j|)^decay_ratio over neighbours (lucid's alignment): for interpolations whose
    frames should change smoothly."""

    layer: str
    decay_ratio: float = 2.0

    def emit(self, ctx: EmitContext) -> str:
        b = ctx.builder
        t = ctx.tensor(self.layer)
        rank = len(ctx.shape(t))
        n = ctx.batch
        if n < 2:
            raise ConfigurationError("alignment() compares batch rows; use a batch of 2 or more.")
        flat = b.op("Reshape", [t, b.ints([n, -1])])
        w = np.zeros((n, n), np.float32)
        for i in range(n):
            for j in range(n):
                if i != j:
                    w[i, j] = 1.0 / (1 + abs(i - j)) ** self.decay_ratio
        # sum_j w_ij |a_i - a_j|^2 = |a_i|^2 sum_j w_ij - 2 a_i . (W a)_i + (W |a|^2)_i
        sq = b.reduce_sum(b.mul(flat, flat), [1], keepdims=False)  # (N,)
        wc = b.const(w, hint="align")
        rows = b.const(w.sum(1), hint="align_rows")
        cross = b.reduce_sum(b.mul(flat, b.op("MatMul", [wc, flat])), [1], keepdims=False)
        wsq = b.op("MatMul", [wc, sq])
        dist = b.op(
            "Add", [b.op("Sub", [b.mul(sq, rows), b.mul(cross, b.scalar(2.0, cross))]), wsq]
        )
        size = b.scalar(
            1.0 / max(1, int(np.prod([d for d in ctx.shape(t)[1:] if isinstance(d, int)]))), dist
        )
        del rank
        return b.neg(b.mul(dist, size))

    @property
    def layers(self) -> list[str]:
        return [self.layer]

    def __repr__(self) -> str:
        return f"alignment({self.layer!r}, decay_ratio={self.decay_ratio})"


# -- the lucid-style constructors ---------------------------------------------------------------


def channel(layer: str, n_channel: int) -> Objective:
    """Mean activation of channel `n_channel` of `layer` over all positions."""
    return Channel(layer, int(n_channel))


def neuron(layer: str, n_channel: int, y: int | None = None, x: int | None = None) -> Objective:
    """One unit: channel `n_channel` at position (y, x) of `layer`, the centre by default."""
    return Neuron(layer, int(n_channel), y, x)


def class_logit(index: int, output: str | None = None, pre_activation: bool = True) -> Objective:
    """Class `index` of `output` (default: the first output). When the output is a Softmax,
    LogSoftmax or Sigmoid, its input (the logit) is used unless `pre_activation=False`:
    maximising a probability mostly suppresses the other classes (keras-vis' "swap softmax for
    linear")."""
    return ClassLogit(int(index), output, pre_activation)


def deepdream(layer: str) -> Objective:
    """Mean squared activation of `layer` (Mordvintsev's deep dream objective)."""
    return DeepDream(layer)


def direction(
    layer: str, vector: Sequence[float] | np.ndarray, cossim_pow: float = 0.0
) -> Objective:
    """Mean over positions of <activation, vector>, times max(0.1, cosine)^cossim_pow."""
    return Direction(layer, np.asarray(vector, np.float32), float(cossim_pow))


def diversity(layer: str) -> Objective:
    """Batch diversity on `layer`'s Gram matrices (add it, weighted, to another objective)."""
    return Diversity(layer)


def alignment(layer: str, decay_ratio: float = 2.0) -> Objective:
    """Smoothness across batch rows on `layer` (interpolations)."""
    return Alignment(layer, float(decay_ratio))


def as_objective(spec: Objective | str) -> Objective:
    """An Objective from an Objective or lucid's string shorthand "layer:channel"."""
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, str) and ":" in spec:
        layer, _, idx = spec.rpartition(":")
        try:
            return channel(layer, int(idx))
        except ValueError:
            pass
    raise ConfigurationError(
        f"cannot make an objective of {spec!r}; pass an Objective (e.g. "
        "onnxlens.synthesis.channel('layer', 3)) or 'layer:channel'."
    )
