"""The atlas' static site, written by the one HTML layer (`render.html`) from the data in OUT.

Pages: index.html (model card, layer table, links), layers/<layer>[-p<n>].html (every channel's
visualisation beside its top dataset patches, paged), channels/<layer>/c<c>.html (one channel
in full), classes/class<k>.html, embedding.html (the map; hovering a point shows its image).
Every link is relative and every picture a file beside the pages, so the folder works from
file:// and any static host. What the pages show per channel is also saved as data
(data/layers/<layer>.json), so a test or a script can read the numbers without scraping.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..data.classes import class_names_for
from ..methods.explanation import softmax
from ..mining import MiningResult
from ..mining.dataset import Dataset
from ..mining.files import atomic_write
from ..mining.runner import iter_batches
from ..model import Model
from ..render.html import (
    Markup,
    Page,
    Site,
    code,
    figure,
    fmt,
    histogram_svg,
    join,
    link,
    pager,
    table,
    url,
)
from . import steps as st
from .config import AtlasConfig, classifier_classes, layer_file

TOP_INPUTS = 6  # strongest positive inputs shown per channel (and half as many negative)
CLASS_IMAGES = 6


def _rel(here: str, target: str) -> str:
    """`target` (relative to the site root) as a link from the page `here`."""
    return posixpath.relpath(target, posixpath.dirname(here) or ".")


def layer_page(layer: str, page: int = 0) -> str:
    return f"layers/{layer_file(layer)}{'' if page == 0 else f'-p{page + 1}'}.html"


def channel_page(layer: str, c: int) -> str:
    return f"channels/{layer_file(layer)}/c{c:04d}.html"


def class_page(k: int) -> str:
    return f"classes/class{k:05d}.html"


def vis_image(layer: str, c: int) -> str:
    return f"data/vis/{layer_file(layer)}/c{c:04d}.png"


def gallery_image(layer: str, c: int) -> str:
    return f"mining/galleries/{layer_file(layer)}/c{c:04d}.png"


def _fig_link(here: str, href: str, src: str, caption: object, width: int) -> Markup:
    return fmt(
        "<a href='{}'>{}</a>", url(_rel(here, href)), figure(_rel(here, src), caption, width)
    )


def layer_data(out: Path, config: AtlasConfig, mined: MiningResult) -> dict[str, dict]:
    """Per layer, what the pages show for each visualised channel (also saved as JSON):
    dataset max (mining's best score), the visualisation's score by the same reduction and
    their ratio, sparsity, dead flag, and the strongest inputs from the previous layer."""
    res: dict[str, dict] = {}
    for j, layer in enumerate(config.layers):
        vis: dict[int, tuple[float, float]] = {}
        d = st.vis_dir(out, layer)
        for p in sorted(d.glob("batch-*.json")):
            b = json.loads(p.read_text())
            for c, obj, sc in zip(b["channels"], b["objective"], b["dataset_score"], strict=True):
                vis[int(c)] = (float(obj), float(sc))
        with np.load(out / "data" / "stats" / f"{layer_file(layer)}.npz") as z:
            sparsity, dead = z["sparsity"], z["dead"]
        links = None
        lp = out / "data" / "links" / f"{layer_file(layer)}.npz"
        if j > 0 and lp.exists():
            with np.load(lp) as z:
                links = {int(c): z["scores"][i] for i, c in enumerate(z["channels"])}
        values = mined[layer]["values"]
        channels = []
        for c in config.channels[layer]:
            best = float(values[c, 0])
            obj, sc = vis.get(c, (float("nan"), float("nan")))
            ratio = sc / best if np.isfinite(best) and best > 0 and np.isfinite(sc) else None
            entry: dict = {
                "channel": c,
                "dataset_max": best if np.isfinite(best) else None,
                "visualisation_score": sc if np.isfinite(sc) else None,
                "objective": obj if np.isfinite(obj) else None,
                "ratio": ratio,
                "sparsity": float(sparsity[c]),
                "dead": bool(dead[c]),
            }
            if links is not None and c in links:
                row = links[c]
                order = np.argsort(-row, kind="stable")
                entry["top_inputs"] = [
                    [int(i), float(row[i])] for i in order[:TOP_INPUTS] if row[i] > 0
                ]
                neg = np.argsort(row, kind="stable")[: TOP_INPUTS // 2]
                entry["top_negative_inputs"] = [[int(i), float(row[i])] for i in neg if row[i] < 0]
            channels.append(entry)
        res[layer] = {
            "layer": layer,
            "previous": config.layers[j - 1] if j > 0 else None,
            "channels_total": config.layer_channels[layer],
            "score": str(mined.meta.get("score", "max")),
            "channels": channels,
        }
        st.write_json(out / "data" / "layers" / f"{layer_file(layer)}.json", res[layer])
    return res


def _fmt_num(v: float | None, spec: str = ".3g") -> str:
    return "–" if v is None else format(v, spec)


def _ratio(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}x"


def write_site(
    model: Model, dataset: Dataset, out: Path, config: AtlasConfig, mined: MiningResult,
    page_size: int = 64,
) -> Path:  # fmt: skip
    site = Site(out, writer=atomic_write)
    data = layer_data(out, config, mined)
    classes = json.loads((out / "data" / "classes" / "classes.json").read_text())["classes"]
    n_cls = classifier_classes(model)
    names = class_names_for(n_cls) if n_cls else None
    cname = (lambda k: f"{k}: {names[k]}") if names else (lambda k: f"class {k}")
    has_embedding = (out / "data" / "embedding" / "embedding.json").exists()
    _index(site, model, out, config, mined, data, classes, cname, has_embedding)
    for layer in config.layers:
        _layer_pages(site, config, data[layer], layer, page_size)
        _channel_pages(site, out, config, mined, data, layer, page_size)
    if classes:
        _class_pages(site, model, dataset, out, classes, cname)
    if has_embedding:
        _embedding_page(site, model, dataset, out, names)
    return out / "index.html"


def _nav(here: str, has_embedding: bool, has_classes: bool) -> Markup:
    links = [link(_rel(here, "index.html"), "atlas index")]
    if has_classes:
        links.append(link(_rel(here, "index.html"), "classes", anchor="classes"))
    if has_embedding:
        links.append(link(_rel(here, "embedding.html"), "embedding map"))
    return fmt("<p>{}</p>", join(links, sep=" · "))


def _index(
    site: Site, model: Model, out: Path, config: AtlasConfig, mined: MiningResult,
    data: dict[str, dict], classes: Sequence[int], cname, has_embedding: bool,
) -> None:  # fmt: skip
    page = Page(
        f"Atlas of {model.name}",
        fmt("{} layers charted over {} images of {}", len(config.layers), mined.meta["images_mined"], code(config.data)),
    )  # fmt: skip
    card = page.section("Model", "model")
    io_rows = [["input", i.name, "x".join(map(str, i.shape or ())), i.layout] for i in model.inputs]
    for o in model.proto.graph.output:
        dims = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in o.type.tensor_type.shape.dim
        ]
        io_rows.append(["output", o.name, "x".join(map(str, dims)), ""])
    card.add(table(["", "name", "shape", "layout"], io_rows))
    card.text(
        "Preprocessing: {}. {} parameters, opset {}, sha256 {}…",
        model.preprocess.describe(), f"{model.param_count:,}", model.opset, config.model_sha256[:12],
    )  # fmt: skip
    links = []
    if classes:
        links.append(fmt("<a href='#classes'>{}</a>", f"{len(classes)} class visualisations"))
    if has_embedding:
        links.append(link("embedding.html", "embedding map"))
    links.append(link("mining/index.html", "mining gallery"))
    card.text("{}", join(links, sep=" · "))

    sec = page.section("Layers of the atlas", "layers")
    rows = []
    by_name = {la.name: la for la in model.layers}
    for layer in config.layers:
        d = data[layer]
        la = by_name.get(layer)
        dead = sum(1 for c in d["channels"] if c["dead"])
        ratios = [c["ratio"] for c in d["channels"] if c["ratio"] is not None]
        with np.load(out / "data" / "stats" / f"{layer_file(layer)}.npz") as z:
            layer_dead, layer_sparsity = int(z["dead"].sum()), float(z["sparsity"].mean())
        rows.append([
            link(layer_page(layer), layer),
            la.op if la else "",
            "x".join(map(str, la.shape[1:])) if la and la.shape else "",
            f"{len(d['channels'])} / {d['channels_total']}",
            f"{layer_dead} ({dead} shown)",
            f"{layer_sparsity:.1%}",
            _ratio(float(np.median(ratios))) if ratios else "–",
        ])  # fmt: skip
    sec.add(table(["layer", "op", "C x H x W", "channels shown", "dead channels", "sparsity (<= 0)",
                   "median visualisation / dataset max"], rows, {3, 4, 5, 6}))  # fmt: skip
    sec.text(
        "Dead: never positive (or constant) over the {} sampled images. Each visualisation is "
        "scored by mining's spatial {} and divided by the best dataset image's score.",
        json.loads((out / "data" / "stats" / "stats.json").read_text())["images"],
        mined.meta["score"],
        note=True,
    )
    if classes:
        sec = page.section("Classes", "classes")
        parts = [_fig_link("index.html", class_page(k), f"data/classes/class{k:05d}.png", cname(k), 128) for k in classes]  # fmt: skip
        sec.row(*parts)
    fl = json.loads((out / "data" / "filters.json").read_text())
    if fl.get("layer"):
        sec = page.section("First-layer filters", "filters")
        sec.add(figure("data/filters.png", fmt("{}: {} filters of {}", fl["layer"], fl["shape"][0], "x".join(map(str, fl["shape"][1:]))), 480))  # fmt: skip
    sec = page.section("All layers", "all")
    charted = set(config.layers)
    sec.add(fmt(
        "<details><summary>{} layers ({} charted)</summary>{}</details>",
        len(model.layers), len(charted),
        table(["layer", "op", "shape", "params"], [
            [link(layer_page(la.name), la.name) if la.name in charted else la.name, la.op,
             "x".join(map(str, la.shape)) if la.shape is not None else "?", la.params]
            for la in model.layers
        ], {3}),
    ))  # fmt: skip
    sec = page.section("Settings", "settings")
    sec.text(
        "{} steps of feature visualisation at {}x{} (FFT parameterisation, lucid's transforms, "
        "seed {}), top {} images per channel, {} of {} channels per layer shown. Rebuild: {}",
        config.steps, config.size[0], config.size[1], config.seed, config.top_k,
        ", ".join(str(len(config.channels[n])) for n in config.layers),
        ", ".join(str(config.layer_channels[n]) for n in config.layers),
        code(rebuild_command(model, config)),
        note=True,
    )  # fmt: skip
    site.write(page, "index.html")


def rebuild_command(model: Model, config: AtlasConfig) -> str:
    """The `onnxlens atlas` command line of this atlas' settings (what a rerun must match)."""
    import shlex

    counts = {len(v) for v in config.channels.values()}
    firsts = all(v == list(range(len(v))) for v in config.channels.values())
    chans = (
        f"--channels {counts.pop()}"
        if len(counts) == 1 and firsts
        else "--channels (see atlas.json)"
    )
    classes = config.classes
    cls = "--no-classes" if classes == "none" else "" if classes == "auto" else "--classes " + " ".join(map(str, classes))  # fmt: skip
    parts = [
        "onnxlens atlas", shlex.quote(str(model.path or model.name)), shlex.quote(config.data),
        "--out SITE --layers", " ".join(shlex.quote(n) for n in config.layers), chans,
        f"--steps {config.steps} --vis-size {config.size[0]} {config.size[1]} --top-k {config.top_k}",
        f"--seed {config.seed} --vis-batch {config.vis_batch} --stats-images {config.stats_images}",
        f"--link-images {config.link_images}", cls, "" if config.embed_layer else "--no-embedding",
    ]  # fmt: skip
    return " ".join(p for p in parts if p)


def _pager_href(here: str, layer: str) -> Callable[[int], str]:
    return lambda i: _rel(here, layer_page(layer, i))


def _layer_pages(site: Site, config: AtlasConfig, d: dict, layer: str, page_size: int) -> None:
    chans = d["channels"]
    pages = max(1, -(-len(chans) // page_size))
    for p in range(pages):
        here = layer_page(layer, p)
        page = Page(f"{layer}", fmt("{} of {} channels · page {} of {}", len(chans), d["channels_total"], p + 1, pages))  # fmt: skip
        sec = page.section()
        sec.add(_nav(here, False, False))
        sec.text(
            "Each channel: its feature visualisation (with the visualisation's score over the "
            "best dataset image's, by spatial {}), beside the top {} dataset patches (receptive "
            "fields of the winning unit). Click a channel for its page.",
            d["score"], config.top_k, note=True,
        )  # fmt: skip
        nav = pager(p, pages, _pager_href(here, layer))
        sec.add(nav)
        cards = []
        for e in chans[p * page_size : (p + 1) * page_size]:
            c = e["channel"]
            cap = fmt("ch {} · {}{}", c, _ratio(e["ratio"]), Markup(" · <span class='dead'>dead</span>") if e["dead"] else "")  # fmt: skip
            cards.append(fmt(
                "<div class='card' id='c{}'>{}{}</div>", c,
                _fig_link(here, channel_page(layer, c), vis_image(layer, c), cap, 128),
                fmt("<a href='{}'>{}</a>", url(_rel(here, channel_page(layer, c))),
                    figure(_rel(here, gallery_image(layer, c)), fmt("top {} · max {}", config.top_k, _fmt_num(e["dataset_max"]))),
                ),
            ))  # fmt: skip
        sec.add(join(cards))
        sec.add(nav)
        site.write(page, here)


def _channel_pages(
    site: Site, out: Path, config: AtlasConfig, mined: MiningResult, data: dict[str, dict],
    layer: str, page_size: int,
) -> None:  # fmt: skip
    d = data[layer]
    arr = mined[layer]
    with np.load(out / "data" / "stats" / f"{layer_file(layer)}.npz") as z:
        hist, lo, hi, smax = z["hist"], z["lo"], z["hi"], z["max"]
    prev = d["previous"]
    prev_vis = set(config.channels[prev]) if prev else set()
    chans = [e["channel"] for e in d["channels"]]
    for i, e in enumerate(d["channels"]):
        c = e["channel"]
        here = channel_page(layer, c)
        page = Page(f"{layer} · channel {c}", fmt("{} · {} channels", layer, d["channels_total"]))
        top = page.section()
        nav = [link(_rel(here, layer_page(layer, i // page_size)), "layer page", anchor=f"c{c}")]
        if i > 0:
            nav.append(
                link(_rel(here, channel_page(layer, chans[i - 1])), f"« channel {chans[i - 1]}")
            )
        if i + 1 < len(chans):
            nav.append(
                link(_rel(here, channel_page(layer, chans[i + 1])), f"channel {chans[i + 1]} »")
            )
        top.add(_nav(here, False, False), fmt("<p>{}</p>", join(nav, sep=" · ")))
        stats = table(["", ""], [
            ["dataset max (spatial " + d["score"] + ")", _fmt_num(e["dataset_max"])],
            ["visualisation's score", _fmt_num(e["visualisation_score"])],
            ["visualisation / dataset max", _ratio(e["ratio"])],
            ["objective at the end", _fmt_num(e["objective"])],
            ["sparsity (units <= 0)", f"{e['sparsity']:.1%}"],
            ["dead", "yes" if e["dead"] else "no"],
        ])  # fmt: skip
        top.row(
            figure(_rel(here, vis_image(layer, c)), "feature visualisation", 384),
            fmt("<figure>{}{}</figure>", stats, fmt(
                "<p>{}</p><p class='note'>Histogram of every activation value of the channel over "
                "the stats sample; and of its per-image spatial max: {}</p>",
                histogram_svg(hist[c], float(lo[c]), float(hi[c]), label="all units"),
                histogram_svg(np.histogram(smax[:, c], bins=16)[0], float(smax[:, c].min()), float(smax[:, c].max()), 200, 60, "per-image max"),
            )),
        )  # fmt: skip
        sec = page.section("Top dataset images", "top")
        sec.text(
            "The {} images of DATA with the highest spatial {} of this channel; the yellow box is "
            "the receptive field of the unit that won each.", int(arr["counts"][c]), d["score"], note=True,
        )  # fmt: skip
        figs = []
        for r in range(int(arr["counts"][c])):
            src = f"data/patches/{layer_file(layer)}/c{c:04d}-{r:02d}.jpg"
            figs.append(figure(_rel(here, src), fmt("{} · {}", f"{arr['values'][c, r]:.3g}", str(arr["paths"][c, r])), 160))  # fmt: skip
        sec.row(*figs)
        sec.add(figure(_rel(here, gallery_image(layer, c)), "the patches, cut and scaled"))
        if prev:
            sec = page.section("Strongest inputs from the previous layer", "inputs")
            sec.text(
                "Channels of {} by gradient x activation of this channel's winning unit, "
                "summed over positions and averaged over its top images (through every path of "
                "the graph between the two layers).", prev, note=True,
            )  # fmt: skip
            for title, key in (("excite", "top_inputs"), ("inhibit", "top_negative_inputs")):
                items = e.get(key, [])
                if not items:
                    continue
                figs = []
                for ch, score in items:
                    cap = fmt("ch {} · {}", ch, f"{score:+.3g}")
                    if ch in prev_vis:
                        figs.append(
                            _fig_link(here, channel_page(prev, ch), vis_image(prev, ch), cap, 128)
                        )
                    else:  # not visualised: its dataset patches stand in
                        figs.append(
                            figure(
                                _rel(here, gallery_image(prev, ch)), fmt("{} (patches)", cap), 260
                            )
                        )
                sec.heading(title)
                sec.row(*figs)
        site.write(page, here)


def _thumbs(model: Model, dataset: Dataset, ids: Sequence[int], folder: Path, side: int) -> None:
    """JPEG thumbnails `<id>.jpg` (longer side `side`) of DATA items, each decoded once."""
    todo = [i for i in sorted(set(ids)) if not (folder / f"{i:08d}.jpg").exists()]
    for batch in iter_batches(dataset, todo, 16, model.preprocess.fit):
        for i, img in zip(batch.ids, batch.fitted, strict=True):
            h, w = img.shape[:2]
            s = side / max(h, w)
            small = cv2.resize(
                img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
            )
            st.write_jpeg(folder / f"{int(i):08d}.jpg", small)


def _class_pages(
    site: Site, model: Model, dataset: Dataset, out: Path, classes: Sequence[int], cname
) -> None:  # fmt: skip
    with np.load(out / "data" / "stats" / "logits.npz") as z:
        ids, logits = z["ids"], z["logits"]
    probs = softmax(logits)
    info: dict[int, tuple[float, float]] = {}
    for p in sorted((out / "data" / "classes").glob("batch-*.json")):
        b = json.loads(p.read_text())
        for k, obj, pr in zip(b["classes"], b["objective"], b["probability"], strict=True):
            info[int(k)] = (float(obj), float(pr))
    tops = {k: np.argsort(-logits[:, k], kind="stable")[:CLASS_IMAGES] for k in classes}
    folder = out / "data" / "thumbs"
    _thumbs(model, dataset, [int(ids[r]) for t in tops.values() for r in t], folder, 160)
    for j, k in enumerate(classes):
        here = class_page(k)
        page = Page(f"Class {cname(k)}", model.name)
        sec = page.section()
        sec.add(_nav(here, False, True))
        obj, pr = info.get(k, (float("nan"), float("nan")))
        sec.row(
            figure(_rel(here, f"data/classes/class{k:05d}.png"), fmt("visualisation: logit {} · the model gives it {}", f"{obj:.3g}", f"{pr:.1%}"), 320),
        )  # fmt: skip
        sec.heading("Sampled DATA images with the highest logit")
        figs = [
            figure(_rel(here, f"data/thumbs/{int(ids[r]):08d}.jpg"), fmt("{} · p {}", dataset.names[int(ids[r])], f"{probs[r, k]:.1%}"), 160)
            for r in tops[k]
        ]  # fmt: skip
        sec.row(*figs)
        nav = []
        if j > 0:
            nav.append(link(_rel(here, class_page(classes[j - 1])), f"« {cname(classes[j - 1])}"))
        if j + 1 < len(classes):
            nav.append(link(_rel(here, class_page(classes[j + 1])), f"{cname(classes[j + 1])} »"))
        sec.add(fmt("<p>{}</p>", join(nav, sep=" · ")))
        site.write(page, here)


MAP = 800  # side of the embedding map in CSS pixels


def _embedding_page(
    site: Site, model: Model, dataset: Dataset, out: Path, names: list[str] | None
) -> None:
    d = out / "data" / "embedding"
    meta = json.loads((d / "embedding.json").read_text())
    coords = np.load(d / "coords.npy")
    paths = (d / "paths.txt").read_text().splitlines()
    labels = (d / "labels.txt").read_text().splitlines()
    if names:  # "class 285" (the embedding's predicted colouring) -> "285: Egyptian cat"
        labels = [
            f"{lab[6:]}: {names[int(lab[6:])]}" if lab.startswith("class ") and lab[6:].isdigit() and int(lab[6:]) < len(names) else lab
            for lab in labels
        ]  # fmt: skip
    index = {n: i for i, n in enumerate(dataset.names)}
    ids = [index[p] for p in paths]
    shown = ids[:2000]
    _thumbs(model, dataset, shown, out / "data" / "thumbs", 160)
    from ..mining.embed import label_colors

    color = label_colors(labels)
    lo, hi = coords.min(0), coords.max(0)
    xy = (coords - lo) / np.where(hi > lo, hi - lo, 1) * (MAP - 12) + 6
    page = Page(f"Embedding map of {model.name}", fmt("{} of {} images, {} ({})", len(ids), len(dataset), code(meta["layer"]), meta["method"]), script=True)  # fmt: skip
    sec = page.section()
    sec.add(_nav("embedding.html", False, False))
    sec.text(
        "Each dot is an image of DATA, placed by {} of its {} vector; colours: {}. Hover a dot to "
        "see the image.", meta["method"], meta["layer"],
        join((fmt("<b style='color:{}'>{}</b>", color[c], c or "-") for c in list(color)[:30]), sep=", "),
    )  # fmt: skip
    first = f"data/thumbs/{shown[0]:08d}.jpg"
    sec.add(fmt(
        "<div class='preview'><img id='tipimg' src='{}' alt='{}'><p id='tip' class='note'>{}</p></div>",
        url(first), paths[0], "hover a point",
    ))  # fmt: skip
    points = []
    for r, i in enumerate(ids):
        x, y = xy[r]
        tip = f"{paths[r]} [{labels[r]}]"
        img = url(f"data/thumbs/{i:08d}.jpg") if r < len(shown) else Markup("")
        points.append(fmt(
            "<i data-tip='{}' data-img='{}' title='{}' style='left:{:.0f}px;top:{:.0f}px;background:{};width:12px;height:12px;border-radius:6px'></i>",
            tip, img, tip, x - 6, y - 6, color[labels[r]],
        ))  # fmt: skip
    sec.add(
        fmt(
            "<div class='map' style='width:{0:d}px;height:{0:d}px'>{1}</div>",
            MAP,
            join(points, sep="\n"),
        )
    )
    site.write(page, "embedding.html")
