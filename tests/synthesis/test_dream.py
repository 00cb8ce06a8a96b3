"""Deep dream: tiles own each pixel once, the tiled gradient against central differences of the
sum of tile objectives, the guided objective against numpy, and on EfficientNet-Lite0 with its
real weights: the objective rises across octaves, the pixel range is kept, and a 2000x1500
dream runs within a stated memory bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import onnxlens
from onnxlens import synthesis as S
from onnxlens.errors import ConfigurationError
from onnxlens.synthesis.dream import GuideMatch, TiledGradient, _starts
from onnxlens.synthesis.space import ModelSpace
from synthetic import tiny_cnn


@pytest.fixture(scope="module")
def tiny():
    return onnxlens.Model(tiny_cnn(size=12), device="cpu")


@pytest.mark.parametrize("length,tile", [(5, 8), (24, 8), (30, 8), (224, 224), (1500, 224)])
def test_tiles_own_each_pixel_once(length, tile) -> None:
    owned = np.zeros(length, int)
    for start, a, b in _starts(length, tile):
        assert start <= a <= b <= start + min(tile, length) and start + min(tile, length) <= length
        owned[a:b] += 1
    assert (owned == 1).all()


def _tile_sum(model, img, tile, layer):
    """Sum over non-overlapping tiles of mean(A^2) of each tile, in numpy from activations."""
    model = S.model_at_size(model, (tile, tile))
    space = ModelSpace(model.preprocess.with_overrides(size=(tile, tile)))
    total = 0.0
    for y in range(0, img.shape[1], tile):
        for x in range(0, img.shape[2], tile):
            crop = img[None, :, y : y + tile, x : x + tile]
            a = model.activations(space.to_model(crop), [layer])[layer].astype(np.float64)
            total += float((a**2).mean())
    return total


def test_tiled_gradient_is_the_gradient_of_the_tile_sum(tiny) -> None:
    rng = np.random.default_rng(0)
    img = rng.random((3, 24, 36)).astype(np.float32)
    fn = TiledGradient(tiny, S.deepdream("relu_out"), tile=12, batch=4)  # 6 tiles, 2 runs
    value, grad = fn(img)
    np.testing.assert_allclose(value, _tile_sum(tiny, img, 12, "relu_out") / 6, rtol=1e-4)
    for _ in range(2):
        t = rng.standard_normal(img.shape)
        eps = 1e-3
        fd = (
            _tile_sum(tiny, (img + eps * t).astype(np.float32), 12, "relu_out")
            - _tile_sum(tiny, (img - eps * t).astype(np.float32), 12, "relu_out")
        ) / (2 * eps)
        np.testing.assert_allclose((grad.astype(np.float64) * t).sum(), fd, rtol=2e-2, atol=1e-4)


def test_tiled_value_is_the_forward_only_mean(tiny) -> None:
    """`value` (forward runs only, what the octave curve records) equals the gradient call's
    value, a short last chunk included (10 tiles at batch 4: the third run padded)."""
    img = np.random.default_rng(4).random((3, 24, 60)).astype(np.float32)
    fn = TiledGradient(tiny, S.deepdream("relu_out"), tile=12, batch=4)
    np.testing.assert_allclose(fn.value(img), fn(img)[0], rtol=1e-5)
    np.testing.assert_allclose(fn.value(img), _tile_sum(tiny, img, 12, "relu_out") / 10, rtol=1e-4)


def test_gradient_tiles_shrink_to_cover_without_overlap(tiny) -> None:
    """A 14x14 image with 12-pixel tiles: 4 tiles of 7 (196 pixels), not 4 overlapping tiles of
    12 (576); the gradient is still that of the sum over its tiles."""
    rng = np.random.default_rng(5)
    img = rng.random((3, 14, 14)).astype(np.float32)
    fn = TiledGradient(tiny, S.deepdream("relu_out"), tile=12, batch=4)
    value, grad = fn(img)
    np.testing.assert_allclose(value, _tile_sum(tiny, img, 7, "relu_out") / 4, rtol=1e-4)
    t = rng.standard_normal(img.shape)
    eps = 1e-3
    fd = (
        _tile_sum(tiny, (img + eps * t).astype(np.float32), 7, "relu_out")
        - _tile_sum(tiny, (img - eps * t).astype(np.float32), 7, "relu_out")
    ) / (2 * eps)
    np.testing.assert_allclose((grad.astype(np.float64) * t).sum(), fd, rtol=2e-2, atol=1e-4)


def test_guide_objective_against_numpy(tiny) -> None:
    rng = np.random.default_rng(1)
    guide = rng.standard_normal((4, 30)).astype(np.float32)
    f = S.ObjectiveFunction(tiny, GuideMatch("conv_out", guide), 2, (12, 12))
    x = rng.standard_normal(f.input_shape).astype(np.float32)
    a = tiny.activations(x, ["conv_out"])["conv_out"].astype(np.float64).reshape(2, 4, -1)
    ref = np.einsum("ncp,cq->npq", a, guide).max(2).mean(1)
    v, g = f(x)
    np.testing.assert_allclose(v, ref, rtol=1e-4)
    t = rng.standard_normal(x.shape)
    eps = 1e-3

    def val(z):
        b = tiny.activations(z.astype(np.float32), ["conv_out"])["conv_out"].astype(np.float64)
        return np.einsum("ncp,cq->npq", b.reshape(2, 4, -1), guide).max(2).mean(1).sum()

    fd = (val(x + eps * t) - val(x - eps * t)) / (2 * eps)
    np.testing.assert_allclose((g.astype(np.float64) * t).sum(), fd, rtol=2e-2, atol=1e-4)


def test_dream_on_tiny_keeps_range_and_size(tiny) -> None:
    photo = (np.random.default_rng(2).random((40, 50, 3)) * 255).astype(np.uint8)
    res = S.dream(
        tiny, photo, layer="relu_out", octaves=3, steps=4, tile=16, jitter=4, progress=False
    )
    assert res.images.shape == (1, 40, 50, 3)
    assert res.images_float.min() >= 0 and res.images_float.max() <= 1
    assert res.history["objective"].shape == (12, 1)
    assert res.history["objective_by_octave"].shape == (4, 1)
    guided = S.dream(tiny, photo, layer="conv_out", guide=photo[::-1], octaves=2, steps=3, tile=16, progress=False)  # fmt: skip
    assert guided.settings["objective"].startswith("guide(")
    with pytest.raises(ConfigurationError, match="what to dream"):
        S.dream(tiny, photo, progress=False)
    with pytest.raises(ConfigurationError, match="octave_scale"):
        S.dream(tiny, photo, layer="relu_out", octave_scale=1.0, progress=False)


LAYER = "/_blocks.4/Add_output_0"


@pytest.mark.slow
def test_dream_rises_across_octaves_on_lite0(efficientnet_path, photos) -> None:
    model = onnxlens.Model(efficientnet_path, device="cpu", threads=2)
    res = S.dream(
        model, photos[0], layer=LAYER, size=(224, 288), octaves=3, steps=5, progress=False
    )
    curve = res.history["objective_by_octave"][:, 0]
    print(
        f"\ndeep dream of chelsea at {LAYER} (224x288, 3 octaves x 5 steps): objective {curve.round(2).tolist()}"
    )
    assert (np.diff(curve) > 0).all(), curve
    assert res.images_float.min() >= 0 and res.images_float.max() <= 1
    # independent check of the final value: a plain forward pass on the tiles of the result
    m224 = S.model_at_size(model, (224, 224))
    space = ModelSpace(m224.preprocess.with_overrides(size=(224, 224)))
    img = res.images_float[0]
    tiles = [img[None, :, :, 0:224], img[None, :, :, 64:288]]  # the two tiles of 224x288
    acts = [m224.activations(space.to_model(t), [LAYER])[LAYER].astype(np.float64) for t in tiles]
    np.testing.assert_allclose(curve[-1], np.mean([(a**2).mean() for a in acts]), rtol=1e-4)


@pytest.mark.slow
def test_large_dream_within_memory_bound(efficientnet_path) -> None:
    """A 2000x1500 dream (octave 1, 1 step, 224x224 tiles, 2 per run) in a fresh process: its
    peak resident memory stays under 1 GiB (the model, one batch of tiles, the image)."""
    code = textwrap.dedent(
        f"""
        import json, numpy as np, onnxlens, onnxlens.synthesis, skimage.data as sk, cv2
        def hwm_kib():  # this process image's peak (ru_maxrss would include the parent's)
            return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1])
        m = onnxlens.Model({str(efficientnet_path)!r}, device="cpu", threads=2)
        img = cv2.resize(sk.astronaut(), (2000, 1500))
        r = onnxlens.synthesis.dream(m, img, layer={LAYER!r}, octaves=1, steps=1, tile_batch=2, progress=False)
        print(json.dumps({{"shape": list(r.images.shape), "min": float(r.images_float.min()),
                          "max": float(r.images_float.max()),
                          "curve": r.history["objective_by_octave"][:, 0].tolist(),
                          "peak_mib": hwm_kib() / 1024}}))
        """
    )
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\n2000x1500 dream: peak RSS {rec['peak_mib']:.0f} MiB, objective {rec['curve']}")
    assert rec["shape"] == [1, 1500, 2000, 3]
    assert 0 <= rec["min"] and rec["max"] <= 1
    assert rec["curve"][1] > rec["curve"][0]
    assert rec["peak_mib"] < 1024
