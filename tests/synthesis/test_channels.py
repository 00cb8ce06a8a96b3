"""Channel visualisations of EfficientNet-Lite0 (real weights) against real data: each image
excites its channel more than any of 200+ crops of real photos, and its channel stands out
among the layer's channels once each channel is z-scored over that data."""

from __future__ import annotations

import numpy as np
import pytest

import onnxlens
from onnxlens import synthesis as S

LAYERS = ["/_blocks.6/Add_output_0", "/_blocks.13/Add_output_0"]  # middle (14x14), late (7x7)
CHANNELS = 16  # per layer: 32 visualisations in all, within the CI budget on 2 cores


def _crops(n_per_photo: int = 52) -> np.ndarray:
    """Random square crops (1/4 to all of the shorter side) of the bundled scikit-image photos,
    at 224x224: 208 real images."""
    import cv2

    from onnxlens.demo import demo_photos

    rng = np.random.default_rng(0)
    out = []
    for _, img in demo_photos():
        h, w = img.shape[:2]
        for _ in range(n_per_photo):
            s = int(rng.integers(min(h, w) // 4, min(h, w) + 1))
            y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            out.append(
                cv2.resize(img[y : y + s, x : x + s], (224, 224), interpolation=cv2.INTER_AREA)
            )
    return np.stack(out)


@pytest.mark.slow
def test_channel_visualisations_beat_real_crops(efficientnet_path) -> None:
    pytest.importorskip(
        "skimage", reason="the bundled photos come from scikit-image (onnxlens[demo])"
    )
    model = onnxlens.Model(efficientnet_path, device="cpu")
    crops = _crops()
    assert len(crops) >= 200
    data = model.activations(crops, LAYERS)
    hits, total = 0, 0
    for layer in LAYERS:
        means = data[layer].mean((2, 3))  # (crops, C): each channel's objective on each crop
        mu, sd = means.mean(0), means.std(0) + 1e-6
        res = S.visualize(
            model, [S.channel(layer, c) for c in range(CHANNELS)], steps=128, progress=False
        )
        acts = model.activations(res.images, [layer])[layer].mean((2, 3))  # (CHANNELS, C)
        for c in range(CHANNELS):
            assert acts[c, c] >= means[:, c].max(), (layer, c, acts[c, c], means[:, c].max())
            z = (acts[c] - mu) / sd
            hits += int(z.argmax() == c)
            total += 1
    assert hits >= 0.8 * total, (
        f"{hits} of {total} visualisations have their channel as the z-score argmax"
    )
