"""Targets: which score of an output is explained or differentiated. The one place they are checked.

A target is None (each sample's top class), a class index, one index per sample, or a float
cotangent array shaped like the output (dense outputs: segmentation maps, detection heads). The
output itself is chosen separately (`output=`), never through the target.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import onnx

from ..errors import ConfigurationError, ShapeError

#: What `target=` accepts across onnxlens (captum's name and meaning).
Target = int | Sequence[int] | np.ndarray | None


def is_cotangent(target: object) -> bool:
    """True for an explicit float cotangent array (as opposed to class indices)."""
    return isinstance(target, np.ndarray) and target.dtype.kind == "f"


def split_output_target(target: object, output: str | None) -> tuple[object, str | None]:
    """(target, output) with the old spelling `target="output_name"` moved to `output=`.

    The old spelling keeps working for one release, with a DeprecationWarning."""
    if isinstance(target, str):
        warnings.warn(
            f"target={target!r} (an output name) is deprecated; pass output={target!r} and "
            "target=None for its top class.",
            DeprecationWarning,
            stacklevel=3,
        )
        return None, target
    return target, output


def resolve_target(target: object, n: int, output_shape: Sequence[int] | None) -> np.ndarray:
    """int64 (N,) class indices or a float32 cotangent, checked against the output.

    `output_shape` is the explained output's shape for these `n` samples (batch first); None when
    unknown, which only a cotangent target allows (it is then checked for its batch alone).
    """
    if is_cotangent(target):
        arr = np.ascontiguousarray(target, dtype=np.float32)
        if arr.shape[0] != n:
            raise ShapeError(f"the target cotangent has batch {arr.shape[0]}, the input has {n}.")
        if output_shape is not None and tuple(arr.shape) != tuple(output_shape):
            raise ShapeError(
                f"a cotangent target must have the output's shape {tuple(output_shape)}, got "
                f"{arr.shape}."
            )
        return arr
    if output_shape is None:
        raise ConfigurationError("internal: the output shape is needed for a class-index target")
    k = int(np.prod(output_shape[1:]))
    if target is None:
        raise ConfigurationError(
            "internal: a None target (top class) needs the scores; use top_class(scores)"
        )
    try:
        idx = np.asarray(target, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigurationError(
            "target must be a class index, one index per input, or a float cotangent array "
            f"shaped like the output; got {target!r}."
        ) from None
    if idx.size == 1:
        idx = np.repeat(idx, n)
    if idx.size != n:
        raise ShapeError(
            f"target has {idx.size} class indices for {n} inputs; give one, or one per input."
        )
    if (idx < 0).any() or (idx >= k).any():
        raise ConfigurationError(
            f"class index out of range: the output has {k} values per sample; got {idx.tolist()}."
        )
    return idx


def top_class(scores: np.ndarray) -> np.ndarray:
    """int64 (N,): each sample's highest-scoring position of the flattened output."""
    return scores.reshape(scores.shape[0], -1).argmax(1).astype(np.int64)


def target_from_scores(target: object, scores: np.ndarray) -> np.ndarray:
    """Resolve `target` against computed `scores` (None: the top class)."""
    if target is None:
        return top_class(scores)
    return resolve_target(target, scores.shape[0], scores.shape)


def cotangent_for(target: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A float32 cotangent of `shape` for resolved class indices (one-hot) or a cotangent as is."""
    if target.dtype.kind == "f":
        return target.astype(np.float32, copy=False)
    shape = tuple(int(d) for d in shape)
    c = np.zeros((shape[0], int(np.prod(shape[1:]))), np.float32)
    c[np.arange(shape[0]), target] = 1
    return c.reshape(shape)


def target_score(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-sample score of a resolved target: scores[i, target[i]] or sum(cotangent * scores)."""
    if target.dtype.kind == "f":
        return (target.reshape(target.shape[0], -1) * scores.reshape(scores.shape[0], -1)).sum(1)
    flat = scores.reshape(scores.shape[0], -1)
    return flat[np.arange(flat.shape[0]), target]


#: Output activations whose input is the logit a class score is explained by ("swap softmax for
#: linear", keras-vis/tf-keras-vis): a probability's gradient mostly says how to suppress the
#: other classes, and saturates.
SQUASHING = ("Softmax", "LogSoftmax", "Sigmoid")
# Ops exporters leave between the logit and the squashing op that do not change its value.
_VALUE_COPIES = ("Identity", "Cast")


def logit_of(proto: onnx.ModelProto, output: str) -> tuple[str, str] | None:
    """(logit tensor, squashing op) when `output` is produced by a Softmax, LogSoftmax or Sigmoid
    (through Identity/no-op copies exporters leave after it, as tf2onnx's "Identity:0"); the
    logit is that op's input. None when `output` is not a squashed score."""
    producer = {o: n for n in proto.graph.node for o in n.output if o}
    node = producer.get(output)
    while node is not None and node.op_type in _VALUE_COPIES and node.input:
        node = producer.get(node.input[0])
    if node is None or node.op_type not in SQUASHING or not node.input:
        return None
    return node.input[0], node.op_type


def explained_output(
    proto: onnx.ModelProto, outputs: Sequence[str], output: str | None, probability: bool = False
) -> tuple[str | None, str | None]:
    """(the tensor to explain, a note for the user or None) for `output` (None: the first of
    `outputs`): its pre-softmax logit when it is a Softmax/LogSoftmax/Sigmoid output, unless
    `probability`. Returns (None, None) when `output` stays as given and None was given."""
    name = output if output is not None else (outputs[0] if outputs else None)
    if name is None or probability:
        return output, None
    found = logit_of(proto, name)
    if found is None:
        return output, None
    logit, op = found
    return logit, (
        f"explaining the logit {logit!r} (the input of {op} {name!r}), not the probability; "
        "pass --probability to explain the probability"
    )
