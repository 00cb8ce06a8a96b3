"""Channel scores of given images exactly as mining computes them (same reduced graph, same
spatial "max" or "mean"), so a synthesised image can be compared with a mining result's values."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.images import load_image
from ..model import Model
from .config import MiningJob
from .result import MiningResult
from .runner import ShardRunner


def channel_scores(
    model: Model, fitted: np.ndarray, layers: Sequence[str], score: str = "max"
) -> dict[str, np.ndarray]:
    """Per layer (tensor names), float32 (N, C): each image's spatial `score` of every channel,
    for uint8 RGB images (N, H, W, 3) already at the model's input size."""
    job = MiningJob(layers=tuple(layers), top_k=1, score=score)
    runner = ShardRunner(model, job, decode_threads=1)
    try:
        return {name: s for name, (s, _pos) in runner.forward(np.asarray(fitted)).items()}
    finally:
        runner.close()


def top_patches(
    model: Model, result: MiningResult, layer: str, channel: int, k: int, size: int
) -> tuple[list[np.ndarray], list[float]]:
    """The first `k` patches of `channel` in a mining result, cut from DATA's images as the
    result's boxes say and resized to `size` x `size`; with their values."""
    import cv2

    arrays = result[layer]
    data = Path(result.meta["data"])
    patches, values = [], []
    for r in range(min(k, arrays["ids"].shape[1])):
        if arrays["ids"][channel, r] < 0:
            break
        path = Path(str(arrays["paths"][channel, r]))
        img = model.preprocess.fit(load_image(path if path.is_absolute() else data / path))
        y0, x0, y1, x1 = (int(v) for v in arrays["boxes"][channel, r])
        patch = img[max(y0, 0) : max(y1, y0 + 1), max(x0, 0) : max(x1, x0 + 1)]
        patches.append(cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA))
        values.append(float(arrays["values"][channel, r]))
    return patches, values
