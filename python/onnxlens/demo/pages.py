"""The demo report's context and its model pages: predictions, layers, activations, filters."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..methods.activations import default_layers, layer_stats, safe_name, select_channels, to_nchw
from ..methods.explanation import softmax
from ..model import Model
from ..render import channel_grid, filter_grid
from ..render.report import Report, esc, write_png


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


def page_predictions(ctx: DemoContext, report: Report) -> None:
    sec = report.section("Predictions")
    probs = softmax(ctx.logits)
    for i, name in enumerate(ctx.names):
        src = f"images/{name}.png"
        write_png(ctx.out / src, ctx.photos[i])
        top = np.argsort(-probs[i])[:5]
        rows = "".join(
            f"<tr><td>{k + 1}</td><td>{esc(ctx.classes[c])}</td><td class='num'>{c}</td>"
            f"<td><span class='bar' style='width:{int(200 * probs[i, c])}px'></span>{probs[i, c]:.1%}</td></tr>"
            for k, c in enumerate(top)
        )
        sec.parts.append(
            "<div>"
            + Report.figure(src, esc(name), 224)
            + f"<figure><table><tr><th>#</th><th>class</th><th>id</th><th>probability</th></tr>{rows}</table></figure></div>"
        )


def page_summary(ctx: DemoContext, report: Report) -> None:
    sec = report.section("Layers")
    text = ctx.model.summary()
    (ctx.out / "summary.txt").write_text(text)
    (ctx.out / "summary.json").write_text(json.dumps(ctx.model.to_dict(), indent=1))
    sec.parts.append(
        f"<p class='note'>{len(ctx.model.layers)} layers, {ctx.model.param_count:,} parameters. "
        "Also as <a href='summary.txt'>text</a> and <a href='summary.json'>JSON</a> "
        "(<code>onnxlens inspect MODEL [--json]</code>).</p>"
        f"<details><summary>layer table</summary><pre>{esc(text)}</pre></details>"
    )


def page_activations(ctx: DemoContext, report: Report) -> None:
    sec = report.section("Activations")
    layers = default_layers(ctx.model, 4)
    acts = ctx.model.activations(ctx.x, layers)
    sec.parts.append(
        f"<p class='note'>The {ctx.channels} most varied channels of {len(layers)} layers from early to late, "
        "each channel standardised on its own (blank channels drawn flat). "
        "<code>onnxlens activations MODEL IMAGE --layers ... --out DIR</code></p>"
    )
    stats = []
    for layer in layers:
        a = to_nchw(acts[layer], ctx.model.layout)
        stats.append(layer_stats(layer, a).row())
        sec.parts.append(
            f"<h3>{esc(layer)} <span class='note'>{'x'.join(map(str, a.shape[1:]))}</span></h3>"
        )
        for i, name in enumerate(ctx.names):
            chans = select_channels(a[i], ctx.channels)
            src = f"activations/{name}/{safe_name(layer)}.png"
            write_png(ctx.out / src, channel_grid(a[i][chans], ncols=8))
            sec.parts.append(Report.figure(src, esc(name), 270))
    sec.parts.append(
        "<h3>Statistics over the photos</h3>"
        + Report.table(
            ["layer", "C x H x W", "sparsity (<=0)", "blank channels", "mean", "max"],
            stats,
            {3, 4, 5},
        )
    )


def page_filters(ctx: DemoContext, report: Report) -> None:
    sec = report.section("First-layer filters")
    layer, w = ctx.model.filters()
    write_png(ctx.out / "filters.png", filter_grid(w))
    sec.parts.append(
        Report.figure(
            "filters.png",
            f"{esc(layer)}: {w.shape[0]} filters of {w.shape[1]}x{w.shape[2]}x{w.shape[3]}, min-max scaled per filter",
            480,
        )
    )
