"""The demo's feature-visualisation section: class visualisations of the photos' top classes, and
channels of a late layer beside the crops of the photos that excite them most."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from .. import synthesis as S
from ..methods.explanation import softmax
from ..render.html import Page, figure, fmt
from ..render.labels import labelled_grid

if TYPE_CHECKING:
    from ..atlas.report import ReportContext as DemoContext

#: Kept short so the whole demo stays around two minutes on two cores; `onnxlens visualize`
#: defaults to 512 steps.
STEPS = 96
LAYER = "/_blocks.13/Add_output_0"
CHANNELS = 8
CROPS_PER_PHOTO = 24


def _crops(photos: list[np.ndarray], size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Random square crops (a third to all of the shorter side) of the fitted photos."""
    h, w = size
    out = []
    for img in photos:
        ih, iw = img.shape[:2]
        for _ in range(CROPS_PER_PHOTO):
            s = int(rng.integers(min(ih, iw) // 3, min(ih, iw) + 1))
            y, x = int(rng.integers(0, ih - s + 1)), int(rng.integers(0, iw - s + 1))
            out.append(cv2.resize(img[y : y + s, x : x + s], (w, h), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def page_visualisation(ctx: DemoContext, page: Page) -> None:
    sec = page.section("Feature visualisation")
    model = ctx.model
    assert ctx.logits is not None, "the demo model is a classifier"
    top = [int(k) for k in ctx.logits.argmax(1)]
    res = S.visualize(model, [S.class_logit(k) for k in top], steps=STEPS, progress=False)
    probs = softmax(model.predict(res.images))
    labels = [f"{ctx.cname(k)[:18]} {probs[i, k]:.0%}" for i, k in enumerate(top)]
    src = ctx.site.image("synthesis/classes.png", labelled_grid(res.images, labels, ncols=len(top)))
    sec.text(
        "Images synthesised from noise to maximise each photo's top class (FFT "
        "parameterisation, colour decorrelation, lucid's jitter/scale/rotate; {} steps), with "
        "the probability the model gives each. "
        "<code>onnxlens visualize MODEL --classes K ... --out DIR</code>",
        STEPS,
        note=True,
    )
    sec.add(figure(src, "class visualisations", 224 * len(top) // 2))

    # Channels of a late layer next to the real crops that excite them most.
    size = (int(ctx.x.shape[2]), int(ctx.x.shape[3]))
    crops = _crops(ctx.photos, size, np.random.default_rng(0))
    acts = model.activations(crops, [LAYER])[LAYER].mean((2, 3))  # (crops, C)
    chans = [int(c) for c in np.argsort(-acts.std(0))[:CHANNELS]]  # the most varied ones
    vis = S.visualize(model, [S.channel(LAYER, c) for c in chans], steps=STEPS, progress=False)
    vis_acts = model.activations(vis.images, [LAYER])[LAYER].mean((2, 3))
    tiles, labels = [], []
    for i, c in enumerate(chans):
        best = np.argsort(-acts[:, c])[:3]
        tiles += [vis.images[i], *crops[best]]
        ratio = vis_acts[i, c] / max(acts[best[0], c], 1e-6)
        labels += [f"ch {c}: {ratio:.1f}x"] + [f"{acts[b, c]:.2f}" for b in best]
    small = np.stack([cv2.resize(t, (112, 112), interpolation=cv2.INTER_AREA) for t in tiles])
    src = ctx.site.image("synthesis/channels.png", labelled_grid(small, labels, ncols=8))
    sec.text(
        "Channels of {} (the {} that vary most over {} crops of the photos): each visualisation, "
        "then the three crops that excite the channel most. The ratio is the visualisation's "
        "activation over the best crop's.",
        LAYER,
        CHANNELS,
        len(crops),
        note=True,
    )
    sec.add(figure(src, fmt("channel visualisations beside dataset crops"), 900))
