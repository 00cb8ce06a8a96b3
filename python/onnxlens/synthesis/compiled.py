"""ObjectiveFunction: a model with an objective appended, compiled into one VJP session.

``f = ObjectiveFunction(model, objective, batch=8, size=(128, 128))`` then ``values, grad = f(x)``
is one ONNX Runtime run: the forward pass, the objective's nodes and the backward pass to the
model input. Nothing is prepared per call beyond the feed dict.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper

from ..autodiff import Rules, VJPFunction
from ..errors import ConfigurationError, ShapeError
from ..graph.builder import GraphBuilder
from ..graph.layout import tensor_layouts
from ..graph.naming import NameGenerator
from ..graph.shapes import infer_shapes, pin_input_shape
from ..graph.walk import prune
from ..model import Model
from ..runtime.session import detached
from .objectives import EmitContext, Objective, Sum, as_objective

log = logging.getLogger("onnxlens")

OBJECTIVE_OUTPUT = "onnxlens/objective"


def model_input_shape(model: Model, batch: int, size: tuple[int, int]) -> tuple[int, ...]:
    """The model input's shape for `batch` images of `size` (H, W) in its own layout."""
    info = model.input
    c = info.channels or 3
    if info.size is not None and tuple(info.size) != tuple(size):
        raise ShapeError(
            f"the model takes {info.size[0]}x{info.size[1]} inputs; size {size} does not fit. "
            "Pass size=None to use the model's own size."
        )
    h, w = size
    return (batch, h, w, c) if model.layout == "NHWC" else (batch, c, h, w)


def _pinned(model: Model, batch: int, size: tuple[int, int]) -> onnx.ModelProto:
    """A copy of the model with its input pinned to (batch, size), shapes inferred."""
    proto = pin_input_shape(model.proto, model_input_shape(model, batch, size))
    dims = proto.graph.input[[v.name for v in proto.graph.input].index(model.input_name)]
    dims.type.tensor_type.shape.dim[0].Clear()
    dims.type.tensor_type.shape.dim[0].dim_value = batch
    return infer_shapes(proto)


def vjp_bytes_per_image(model: Model, size: tuple[int, int]) -> int:
    """Bytes one image of `size` costs a compiled VJP step (`Model.vjp_bytes_per_sample`)."""
    return model.vjp_bytes_per_sample(model_input_shape(model, 1, size))


def with_objective(
    model: Model,
    objective: Objective,
    batch: int,
    size: tuple[int, int],
    extra: dict[str, Objective] | None = None,
) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of the model graph, its input pinned to (batch, size), whose outputs are
    OBJECTIVE_OUTPUT, the objective per row, and each `extra` objective under its key (the
    model's own outputs are dropped, and with them every node the objectives do not need: an
    objective on a middle layer does not pay for the layers after it); and the notes emission
    made (to announce once)."""
    proto = _pinned(model, batch, size)
    names = NameGenerator(proto, prefix="onnxlens/objective/")
    b = GraphBuilder(proto, names)
    ctx = EmitContext(
        builder=b,
        resolve=model.resolve,
        layout=model.layout,
        batch=batch,
        producers={o: n for n in proto.graph.node for o in n.output},
        outputs=list(model.output_names),
        layouts=tensor_layouts(model.proto),
    )
    outputs = {OBJECTIVE_OUTPUT: objective, **(extra or {})}
    for out, obj in outputs.items():
        value = obj.emit(ctx)
        b.nodes.append(helper.make_node("Identity", [value], [out], name=names("out")))
    proto.graph.node.extend(b.nodes)
    proto.graph.initializer.extend(b.initializers)
    del proto.graph.output[:]
    proto.graph.output.extend(
        helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, [batch]) for out in outputs
    )
    prune(proto.graph)
    return infer_shapes(proto), ctx.notes


class ObjectiveFunction:
    """Objective values and their gradient w.r.t. the model input, in one run per call.

    `x` is in model space and layout, shape `input_shape`. Returns (values (N,) float32,
    gradient shaped like x). `rules` selects a backward rule set ("default", or e.g. a set with
    redirected ReLU gradients for the first steps of an optimisation).
    """

    def __init__(
        self,
        model: Model,
        objective: Objective | str,
        batch: int,
        size: tuple[int, int],
        rules: Rules = "default",
    ) -> None:
        self.model = model
        self.objective = as_objective(objective)
        self.batch = int(batch)
        self.size = (int(size[0]), int(size[1]))
        self.input_shape = model_input_shape(model, self.batch, self.size)
        proto, notes = with_objective(model, self.objective, self.batch, self.size)
        for note in notes:
            model.notice_once(("synthesis", note), "onnxlens: %s", note)
        self.function = VJPFunction.compile(
            proto,
            [OBJECTIVE_OUTPUT],
            [model.input_name],
            rules=rules,
            batch=self.batch,
            device=model.device,
            threads=model.threads,
            # the optimisation loop works between runs: spinning ORT workers would take its cores
            spinning=False,
            # its gradients decay towards zero, and denormal floats are slow (runtime.denormals)
            flush_denormals=True,
        )
        self._feed = model.input_name
        self._seed = {OBJECTIVE_OUTPUT: np.ones(self.batch, np.float32)}
        self._fetch = [OBJECTIVE_OUTPUT, self.function.graph.grad_outputs[model.input_name]]
        self._seed_feeds = self.function.seed_feeds(self._seed)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if x.shape != self.input_shape:
            raise ShapeError(f"expected an input of shape {self.input_shape}, got {x.shape}.")
        feeds = {self._feed: np.ascontiguousarray(x, dtype=np.float32), **self._seed_feeds}
        value, grad = self.function.run(feeds, self._fetch)
        return value, grad

    def values(self, x: np.ndarray) -> np.ndarray:
        """The objective alone (the same run; the gradient is discarded), as an array of its own
        (ORT's would keep the session's arena alive: `runtime.session.detached`)."""
        return detached([self(x)[0]])[0]

    def __repr__(self) -> str:
        return f"ObjectiveFunction({self.objective!r}, input={self.input_shape})"


def stack_targets(objectives: Sequence[Objective]) -> Objective:
    """One objective whose row i is objectives[i] (a batch of different targets, one run)."""
    rows = [o.restrict(i) for i, o in enumerate(objectives)]
    if not rows:
        raise ConfigurationError("no objectives to stack.")
    return rows[0] if len(rows) == 1 else Sum([(1.0, r) for r in rows])
