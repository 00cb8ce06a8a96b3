"""Grids of RGB images with a caption under each tile (visualisations, dataset patches)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from ..errors import ShapeError


def labelled_grid(
    images: np.ndarray,
    labels: Sequence[str] | None = None,
    ncols: int | None = None,
    pad: int = 4,
    caption: int = 16,
) -> np.ndarray:
    """uint8 RGB mosaic of `images` (N, H, W, 3), each with `labels[i]` written below it.

    `ncols` defaults to a near-square layout; captions are clipped to the tile width."""
    imgs = np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[3] != 3 or imgs.dtype != np.uint8:
        raise ShapeError(f"expected uint8 RGB images (N, H, W, 3), got {imgs.dtype} {imgs.shape}.")
    n, h, w, _ = imgs.shape
    if labels is not None and len(labels) != n:
        raise ShapeError(f"{len(labels)} labels for {n} images.")
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncols)
    cap = caption if labels is not None else 0
    th = h + cap
    grid = np.full(
        (nrows * th + (nrows + 1) * pad, ncols * w + (ncols + 1) * pad, 3), 255, np.uint8
    )
    scale = max(0.3, min(0.5, cap / 32))
    for i in range(n):
        r, c = divmod(i, ncols)
        y, x = pad + r * (th + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = imgs[i]
        if labels is not None:
            text = str(labels[i])
            while text and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > w:
                text = text[:-1]
            cv2.putText(
                grid, text, (x, y + h + cap - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                cv2.LINE_AA,
            )  # fmt: skip
    return grid
