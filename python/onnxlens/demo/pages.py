"""The demo report's context and its model pages: predictions, layers, activations, filters."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..methods.activations import default_layers, layer_stats, select_channels, to_nchw
from ..methods.explanation import softmax
from ..methods.layers import layer_layout
from ..model import Model
from ..render import channel_grid, filter_grid
from ..render.html import Markup, Page, Site, figure, fmt, link, table
from ..render.io import safe_filename


@dataclass
class DemoContext:
    model: Model
    out: Path
    names: list[str]
    photos: list[np.ndarray]  # fitted uint8 RGB at the model's input size
    x: np.ndarray
    classes: list[str]
    logits: np.ndarray
    channels: int = 32
    timings: dict[str, float] = field(default_factory=dict)
    site: Site = field(init=False)

    def __post_init__(self) -> None:
        self.site = Site(self.out)


def page_predictions(ctx: DemoContext, page: Page) -> None:
    sec = page.section("Predictions")
    probs = softmax(ctx.logits)
    for i, name in enumerate(ctx.names):
        src = ctx.site.image(f"images/{name}.png", ctx.photos[i])
        top = np.argsort(-probs[i])[:5]
        rows = [
            [
                k + 1,
                ctx.classes[c],
                c,
                fmt(
                    "<span class='bar' style='width:{:d}px'></span>{:.1%}",
                    int(200 * probs[i, c]),
                    probs[i, c],
                ),
            ]
            for k, c in enumerate(top)
        ]
        sec.row(
            figure(src, name, 224),
            fmt("<figure>{}</figure>", table(["#", "class", "id", "probability"], rows, {2})),
        )


def page_summary(ctx: DemoContext, page: Page) -> None:
    sec = page.section("Layers")
    text = ctx.model.summary()
    (ctx.out / "summary.txt").write_text(text)
    (ctx.out / "summary.json").write_text(json.dumps(ctx.model.to_dict(), indent=1))
    sec.text(
        "{n} layers, {p:,} parameters. Also as {txt} and {js} "
        "(<code>onnxlens inspect MODEL [--json]</code>).",
        n=len(ctx.model.layers),
        p=ctx.model.param_count,
        txt=link("summary.txt", "text"),
        js=link("summary.json", "JSON"),
        note=True,
    )
    sec.add(fmt("<details><summary>layer table</summary><pre>{}</pre></details>", text))


def page_activations(ctx: DemoContext, page: Page) -> None:
    sec = page.section("Activations")
    layers = default_layers(ctx.model, 4)
    acts = ctx.model.activations(ctx.x, layers)
    sec.text(
        "The {} most varied channels of {} layers from early to late, each channel standardised "
        "on its own (blank channels drawn flat). "
        "<code>onnxlens activations MODEL IMAGE --layers ... --out DIR</code>",
        ctx.channels,
        len(layers),
        note=True,
    )
    stats = []
    for layer in layers:
        a = to_nchw(acts[layer], layer_layout(ctx.model, layer))  # each tensor its own layout
        stats.append(layer_stats(layer, a).row())
        sec.heading(layer, "x".join(map(str, a.shape[1:])))
        for i, name in enumerate(ctx.names):
            chans = select_channels(a[i], ctx.channels)
            src = ctx.site.image(
                f"activations/{name}/{safe_filename(layer)}.png",
                channel_grid(a[i][chans], ncols=8),
            )
            sec.add(figure(src, name, 270))
    sec.add(
        Markup("<h3>Statistics over the photos</h3>"),
        table(
            ["layer", "C x H x W", "sparsity (<=0)", "blank channels", "mean", "max"],
            stats,
            {3, 4, 5},
        ),
    )


def page_filters(ctx: DemoContext, page: Page) -> None:
    sec = page.section("First-layer filters")
    layer, w = ctx.model.filters()
    src = ctx.site.image("filters.png", filter_grid(w))
    sec.add(
        figure(
            src,
            f"{layer}: {w.shape[0]} filters of {w.shape[1]}x{w.shape[2]}x{w.shape[3]}, "
            "min-max scaled per filter",
            480,
        )
    )
