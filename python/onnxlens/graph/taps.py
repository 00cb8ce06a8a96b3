"""Taps: the same graph with chosen intermediate tensors added as outputs."""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from .layers import value_infos


def add_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of `model` whose outputs are its original outputs (unchanged, in order) followed by
    `names` that are not outputs already. Element types come from shape inference where known."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    existing = {o.name for o in g.output}
    infos = value_infos(model)
    for name in names:
        if name in existing:
            continue
        existing.add(name)
        vi = infos.get(name)
        if vi is not None and vi.type.tensor_type.elem_type:
            # Element type only: ORT checks outputs against declared shapes, and shape inference
            # can pin a batch size that a dynamic-batch run does not have.
            g.output.append(
                onnx.helper.make_tensor_value_info(name, vi.type.tensor_type.elem_type, None)
            )
        else:
            g.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return out
