"""The runtime inputs of a model: name, shape, dtype and the image layout they are taken in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from .layers import Shape, value_dims


@dataclass(frozen=True)
class InputInfo:
    name: str
    shape: Shape
    dtype: np.dtype
    layout: str  # "NCHW", "NHWC" or "other"

    @property
    def batch(self) -> int | None:
        """The static batch size, or None when the batch dim is dynamic."""
        if not self.shape:
            return None
        d = self.shape[0]
        return d if isinstance(d, int) and d > 0 else None

    @property
    def size(self) -> tuple[int, int] | None:
        """(H, W) when static."""
        if self.layout == "NCHW" and self.shape is not None:
            h, w = self.shape[2], self.shape[3]
        elif self.layout == "NHWC" and self.shape is not None:
            h, w = self.shape[1], self.shape[2]
        else:
            return None
        return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None

    @property
    def channels(self) -> int | None:
        if self.shape is None or self.layout == "other":
            return None
        c = self.shape[1] if self.layout == "NCHW" else self.shape[3]
        return c if isinstance(c, int) and c > 0 else None


def _layout(shape: Shape) -> str:
    if shape is None or len(shape) != 4:
        return "other"
    c1, c3 = shape[1], shape[3]
    if isinstance(c1, int) and c1 in (1, 3, 4):
        return "NCHW"
    if isinstance(c3, int) and c3 in (1, 3, 4):
        return "NHWC"
    return "NCHW"


def input_infos(proto: onnx.ModelProto) -> list[InputInfo]:
    """The runtime inputs (IR < 4 lists initializers as graph inputs too; they are skipped)."""
    inits = {t.name for t in proto.graph.initializer}
    return [
        InputInfo(
            v.name,
            value_dims(v),
            np.dtype(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)),
            _layout(value_dims(v)),
        )
        for v in proto.graph.input
        if v.name not in inits
    ]
