"""The demo's feature-visualisation section: class visualisations of the photos' top classes (the
channels, beside the dataset patches that excite them, are in the demo's atlas)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import synthesis as S
from ..methods.explanation import softmax
from ..render.html import Page, figure, link
from ..render.labels import labelled_grid

if TYPE_CHECKING:
    from ..atlas.report import ReportContext

#: Kept short so the whole demo stays around two minutes on two cores; `onnxlens visualize`
#: defaults to 512 steps.
STEPS = 96


def page_visualisation(ctx: ReportContext, page: Page) -> None:
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

    sec.text(
        "Channels of three layers, each visualised beside the dataset patches that excite it "
        "most, are in the demo's {}.",
        link("atlas/index.html", "atlas"),
        note=True,
    )
