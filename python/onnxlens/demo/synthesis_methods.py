"""The demo's synthesis-methods section: a deep dream of a photo, inversions of one photo from
three depths, a texture, a style transfer and a fooling pair (original, perturbation x10, result
with its new top-1). Sizes and step counts are kept small so the whole demo stays fast; the
commands' defaults run longer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .. import synthesis as S
from ..render.html import Page, figure, fmt, table
from ..synthesis.common import sheet, to_uint8, unit_images
from ..synthesis.fool import predict_images

if TYPE_CHECKING:
    from ..atlas.report import ReportContext

DREAM_LAYER = "/_blocks.4/Add_output_0"
INVERT_LAYERS = {
    "early": "/_blocks.1/_swish_1/Clip_output_0",
    "middle": "/_blocks.7/Add_output_0",
    "last spatial": "/_swish_1/Clip_output_0",
}
SMALL = (96, 96)
FOOL_TARGET = 948  # granny smith


def page_synthesis_methods(ctx: ReportContext, page: Page) -> None:
    sec = page.section("Dream, inversion, texture, style, fooling")
    model = ctx.model
    photo, other = ctx.photos[0], ctx.photos[1]
    names = [ctx.cname(k) for k in range(1000)]  # ImageNet: the demo model

    # Deep dream
    d = S.dream(model, photo, layer=DREAM_LAYER, octaves=3, steps=4, progress=False)
    curve = d.history["objective_by_octave"][:, 0]
    src = ctx.site.image(
        "synthesis_methods/dream.png", sheet([photo, d.images[0]], [ctx.names[0], "deep dream"])
    )
    sec.heading("Deep dream", fmt("<code>onnxlens dream MODEL IMAGE --layer L --out DIR</code>"))
    sec.text(
        "Mean squared activation of {} amplified over 3 octaves (scale 1.4, 4 steps each, "
        "random rolls, steps normalised by the mean |gradient|, 224x224 tiles). The objective "
        "after each octave: {}.",
        DREAM_LAYER, ", ".join(f"{v:.1f}" for v in curve), note=True,
    )  # fmt: skip
    sec.add(figure(src, "deep dream", 460))

    # Feature inversion from three depths
    inv = S.invert(
        model, photo, list(INVERT_LAYERS.values()), size=SMALL, steps=120, lr=0.1, progress=False
    )
    orig = to_uint8(unit_images(model, photo, SMALL))[0]
    labels = ["original", *list(INVERT_LAYERS)]
    src = ctx.site.image(
        "synthesis_methods/invert.png", sheet([orig, *inv.images], labels, height=160)
    )
    sec.heading(
        "Feature inversion",
        fmt("<code>onnxlens invert MODEL IMAGE --layers L1 L2 ... --out DIR</code>"),
    )
    sec.text(
        "The photo reconstructed from noise out of each layer's features alone (normalised "
        "feature loss + alpha-norm and TV priors, {} steps at {}x{}): the early layer gives the "
        "photo back; deeper layers keep less of its colours, texture and exact shapes (and need "
        "more steps: <code>onnxlens invert</code> runs 300).",
        120, SMALL[0], SMALL[1], note=True,
    )  # fmt: skip
    rows = [
        [name, layer, f"{e:.3f}", f"{p:.1f}"]
        for (name, layer), e, p in zip(
            INVERT_LAYERS.items(), inv.metrics["feature_error"], inv.metrics["psnr"], strict=True
        )
    ]
    sec.row(
        figure(src, "inversions by depth", 680),
        table(["depth", "layer", "feature error", "PSNR dB"], rows, {2, 3}),
    )

    # Texture and style transfer
    tex = S.texture(model, other, size=SMALL, steps=80, progress=False)
    st = S.style_transfer(model, photo, other, size=SMALL, steps=60, progress=False)
    tiles = [to_uint8(unit_images(model, other, SMALL))[0], tex.images[0], orig, st.images[0]]
    src = ctx.site.image(
        "synthesis_methods/style.png",
        sheet(tiles, [ctx.names[1], "texture", ctx.names[0], "style transfer"], height=160),
    )
    sec.heading(
        "Texture synthesis and style transfer",
        fmt(
            "<code>onnxlens texture MODEL TEXTURE --size H W --out DIR</code> · <code>onnxlens style MODEL CONTENT STYLE --out DIR</code>"
        ),
    )
    sec.text(
        "Gram matrices (normalised by C*H*W) of {} layers spread over the depth: the texture "
        "from noise (style loss {:.3f} -> {:.4f}, L-BFGS {} evaluations); the style transfer from "
        "the content image (content loss {:.3f}, against {:.3f} for the style image itself).",
        len(tex.settings["layers"]), tex.metrics["style_start"][0], tex.metrics["style"][0], 80,
        st.metrics["content"][0], st.metrics["content_of_style"][0], note=True,
    )  # fmt: skip
    sec.add(figure(src, "texture and style transfer", 680))

    # A fooling pair
    fool = S.fool(model, photo, target=FOOL_TARGET, eps=4 / 255, steps=10, progress=False)
    x0 = to_uint8(unit_images(model, photo, fool.images.shape[1:3]))[0]
    diff = fool.images[0].astype(np.float32) - x0.astype(np.float32)
    before = predict_images(model, unit_images(model, photo, fool.images.shape[1:3]))[0]
    k0, k1 = int(before.argmax()), int(fool.metrics["prediction"][0])
    labels = [
        f"{names[k0][:18]} {before[k0]:.0%}",
        "perturbation x10",
        f"{names[k1][:18]} {fool.metrics['prediction_prob'][0]:.0%}",
    ]
    tiles = [x0, np.clip(128 + 10 * diff, 0, 255).astype(np.uint8), fool.images[0]]
    src = ctx.site.image("synthesis_methods/fool.png", sheet(tiles, labels))
    sec.heading(
        "Fooling image",
        fmt("<code>onnxlens fool MODEL IMAGE --target K --eps 4/255 --out DIR</code>"),
    )
    sec.text(
        "Targeted PGD toward class {} ({}) within L-inf 4/255 (10 steps, rounded to 8 bits): "
        "the perturbation, magnified ten times, is invisible at its real size.",
        FOOL_TARGET, names[FOOL_TARGET], note=True,
    )  # fmt: skip
    sec.add(figure(src, "fooling pair", 680))
