"""Fold the input-independent sub-graphs exporters leave behind into initializers.

PyTorch's TF-"same" padding, Paddle's shape arithmetic and friends compute pads, shapes and
scales from constants at run time. Until they are folded, shape inference cannot see through
them (every later shape is unknown), and the gradient pass would have to differentiate
arithmetic that is really a constant. Folding evaluates them once, exactly (integer and copy
ops), so the model's outputs are unchanged.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import numpy_helper

from .layers import input_dependent, subgraph_inputs

log = logging.getLogger("onnxlens")

# Constants bigger than this stay computed at run time (folding would bloat the model).
MAX_FOLDED_ELEMENTS = 1 << 16
_NEVER_FOLD = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with small input-independent node outputs replaced by initializers."""
    g = model.graph
    live = input_dependent(model)
    const_nodes = [
        n
        for n in g.node
        if not any(o in live for o in n.output)
        and n.domain in ("", "ai.onnx")
        and n.op_type not in _NEVER_FOLD
        and not any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute
        )
    ]
    if not const_nodes:
        return model
    folded = {id(n) for n in const_nodes}  # identity: `in` on a list compares whole protos
    produced = {o for n in const_nodes for o in n.output if o}
    # What the rest of the graph reads from the constant part.
    needed = [
        t
        for t in dict.fromkeys(
            [i for n in g.node if id(n) not in folded for i in n.input] + [o.name for o in g.output]
        )
        if t in produced
    ]
    if not needed:
        return model
    try:
        from onnx.reference import ReferenceEvaluator

        sub = onnx.helper.make_model(
            onnx.helper.make_graph(
                const_nodes,
                "fold",
                [],
                [onnx.helper.make_empty_tensor_value_info(t) for t in needed],
                initializer=list(g.initializer),
            ),
            opset_imports=list(model.opset_import),
            ir_version=model.ir_version,
        )
        values = ReferenceEvaluator(sub).run(None, {})
    except Exception as exc:  # folding is an optimisation; an evaluator gap must not block loading
        log.debug("constant folding skipped: %s", exc)
        return model
    if any(np.asarray(v).size > MAX_FOLDED_ELEMENTS for v in values):
        return model  # a huge folded tensor: keep the exporter's graph as it is
    pairs = list(zip(needed, values, strict=True))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend([n for n in g.node if id(n) not in folded])
    out.graph.initializer.extend([numpy_helper.from_array(np.asarray(v), name=t) for t, v in pairs])
    # Drop initializers only the folded nodes used (If/Loop bodies read outer tensors too).
    used = {i for n in out.graph.node for i in [*n.input, *subgraph_inputs(n)]}
    used |= {o.name for o in out.graph.output}
    kept = [t for t in out.graph.initializer if t.name in used]
    dropped = {t.name for t in out.graph.initializer} - {t.name for t in kept}
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept)
    if model.ir_version < 4:
        # IR < 4 lists every initializer as a graph input too: a dropped one must leave the
        # inputs (or it becomes a required feed), a new one must join them.
        listed = {v.name for v in out.graph.input}
        inputs = [v for v in out.graph.input if v.name not in dropped]
        for t, v in pairs:
            if t not in listed:
                arr = np.asarray(v)
                inputs.append(
                    onnx.helper.make_tensor_value_info(
                        t, onnx.helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape)
                    )
                )
        del out.graph.input[:]
        out.graph.input.extend(inputs)
    del out.graph.value_info[:]
    return out
