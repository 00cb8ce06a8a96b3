"""`build_atlas`: a browsable atlas of a model's channels over a dataset, as a static site.

Layout of OUT::

    atlas.json                 the run's identity (`AtlasConfig`); a rerun must match it
    mining/                    `onnxlens.mining` result of the atlas layers (every channel)
    data/stats/<layer>.npz     per image of the stats sample and channel: max, mean, min,
                               positive fraction; per channel: histogram (32 bins, lo..hi),
                               sparsity, dead; logits.npz for a classifier; stats.json (marker)
    data/filters.png, .json    first-layer filters
    data/vis/<layer>/c<c>.png  feature visualisations; batch-<b>.json per batch (marker, last)
    data/classes/              class visualisations and their batch JSONs; classes.json
    data/links/<layer>.npz     attribution of each visualised channel to the previous layer's
    data/patches/<layer>/      each channel's top images with receptive-field boxes
    data/embedding/            `onnxlens.mining.embed` output (vectors, 2-D map)
    data/layers/<layer>.json   what the pages show per channel: dataset max, visualisation
                               score and ratio, sparsity, dead, strongest inputs
    index.html, layers/, channels/, classes/, embedding.html, onnxlens.css, onnxlens.js

<layer> is `render.io.safe_filename` of the tensor name, as in the mining result. Nothing in
OUT records a time or the engine, so a killed-and-resumed run, an uninterrupted run and a Ray
run write the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigurationError
from ..mining import MiningResult, channel_scores, load, mine, open_dataset
from ..mining.config import RayOptions, model_sha256
from ..mining.dataset import Dataset
from ..mining.lock import RunLock
from ..model import Model
from . import engines
from . import steps as st
from .config import (
    DEFAULT_CHANNELS,
    AtlasConfig,
    ChannelSpec,
    channel_count,
    check_count,
    choose_channels,
    choose_layers,
    classifier_classes,
    embed_layer_for,
    layer_file,
    read_saved,
    sample_indices,
)

log = logging.getLogger("onnxlens")

ENGINES = ("local", "ray")
DEFAULT_STEPS = 256
DEFAULT_SIZE = (128, 128)
EMBED_MAX = 5000  # images up to which the embedding map is "cheap" (one forward pass + t-SNE)


@dataclass
class Atlas:
    """What `build_atlas` returns: the site's index, the config and where everything is."""

    out: Path
    index: Path
    config: AtlasConfig
    mining: MiningResult

    def __repr__(self) -> str:
        return f"Atlas({str(self.index)!r}, {len(self.config.layers)} layers)"


def _vis_size(model: Model, size: tuple[int, int] | None) -> tuple[int, int]:
    """The visualisation size: `size`, else 128x128 when the graph runs there (fully
    convolutional models), else the model's own."""
    from ..synthesis import model_at_size

    own = model.input.size
    if size is not None:
        size = (check_count(size[0], "--size H"), check_count(size[1], "--size W"))
        model_at_size(model, size)  # raises a ShapeError naming the size the model needs
        return size
    if own is None:
        return DEFAULT_SIZE
    if min(own) <= DEFAULT_SIZE[0]:
        return (int(own[0]), int(own[1]))
    try:
        model_at_size(model, DEFAULT_SIZE)
    except Exception:  # bound to its size (a Flatten before the classifier): use it
        return (int(own[0]), int(own[1]))
    return DEFAULT_SIZE


def _counts(model: Model, dataset: Dataset, layers: Sequence[str]) -> dict[str, int]:
    counts = {n: channel_count(model, n) for n in layers}
    unknown = [n for n, c in counts.items() if c is None]
    if unknown:  # a dynamic channel dim: one forward pass on the first readable item tells
        for i in range(len(dataset)):
            try:
                img = model.preprocess.fit(dataset.read(i))
            except Exception:
                continue
            acts = model.activations(model.preprocess.to_tensor(img[None]), unknown)
            for n in unknown:
                a = st._as_nchw(model, n, acts[n])
                counts[n] = int(a.shape[1])
            break
    missing = [n for n in unknown if counts[n] is None]
    if missing:
        raise ConfigurationError(f"no image of DATA could be read to size layers {missing}.")
    return {n: int(c) for n, c in counts.items()}  # type: ignore[arg-type]


def build_atlas(
    model: Model | str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    layers: Sequence[str] | str | None = None,
    channels: ChannelSpec = DEFAULT_CHANNELS,
    engine: str = "local",
    *,
    steps: int | None = None,
    size: tuple[int, int] | None = None,
    top_k: int = 8,
    seed: int = 0,
    vis_batch: int = 8,
    classes: str | Sequence[int] = "auto",
    n_classes: int = 8,
    stats_images: int = 256,
    link_images: int = 8,
    embedding: bool | None = None,
    page_size: int = 64,
    shard_size: int = 256,
    ray: RayOptions | None = None,
    restart: bool = False,
    progress: bool = True,
    device: str = "auto",
    threads: int | None = None,
) -> Atlas:
    """Build (or resume) the atlas of `model` over DATA in `out` and write its site.

    `layers`: tensor or node names (default: four spread over the depth, announced). `channels`:
    per layer the channels visualised and given pages: a count N (channels 0..N-1; default 16),
    "all"/None, a list, or {layer: list}. Mining covers every channel of the layers. `steps`,
    `size` (H, W; default 128x128 where the graph runs there), `seed`, `vis_batch` (channels per
    synthesis run): the feature visualisations. `classes`: "auto" (a classifier's most frequent
    predictions over the stats sample, up to `n_classes`), "none", or indices. `stats_images`:
    the sample of DATA the statistics use. `link_images`: each channel's top images the
    connections to the previous layer average over (one VJP each). `embedding`: the t-SNE map (default: when DATA has at
    most 5,000 images and scikit-learn is installed). `engine="ray"`: mining shards and
    visualisation batches on Ray (`ray=RayOptions(...)`), the same data as "local".

    Every step is cached in `out`; killed anywhere and rerun with the same arguments, it
    continues and writes the same bytes. Different arguments refuse to resume (`restart=True`
    starts over). Returns an `Atlas` whose `index` is the site's index.html.
    """
    t_start = time.perf_counter()
    n_steps = steps if steps is not None else DEFAULT_STEPS
    n_steps = check_count(n_steps, "--steps")
    top_k = check_count(top_k, "--top-k")
    vis_batch = check_count(vis_batch, "--vis-batch")
    stats_images = check_count(stats_images, "--stats-images")
    link_images = check_count(link_images, "--link-images")
    n_classes = check_count(n_classes, "--classes count", lo=0)
    page_size = check_count(page_size, "--page-size")
    if engine not in ENGINES:
        raise ConfigurationError(f"--engine must be one of {', '.join(ENGINES)}; got {engine!r}.")
    ray_opts = ray if ray is not None else RayOptions()
    if not isinstance(model, Model):
        model = Model(model, device=device, threads=threads)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {str(out)!r} is a file; pass a folder.")
    if not Path(data).exists():
        raise ConfigurationError(
            f"DATA {str(data)!r} does not exist; pass an image folder, a list file or a parquet file."
        )
    dataset = open_dataset(data)
    if len(dataset) == 0:
        raise ConfigurationError(f"DATA {str(data)!r} holds no images; pass a folder of images.")
    names = choose_layers(model, layers)
    counts = _counts(model, dataset, names)
    chosen = choose_channels(channels, names, counts)
    n_cls = classifier_classes(model)
    if isinstance(classes, str):
        if classes not in ("auto", "none"):
            raise ConfigurationError(f"classes must be 'auto', 'none' or indices; got {classes!r}.")
        class_spec: str | list[int] = classes if n_cls else "none"
    else:
        class_spec = sorted(dict.fromkeys(int(k) for k in classes))
        if not n_cls:
            raise ConfigurationError(
                f"{model.name}'s first output is not (N, classes), so it has no class "
                "visualisations; drop --classes."
            )
        bad = [k for k in class_spec if not 0 <= k < n_cls]
        if bad:
            raise ConfigurationError(f"classes {bad} are outside 0..{n_cls - 1}.")
    vsize = _vis_size(model, size)
    if embedding is None:
        embedding = len(dataset) <= EMBED_MAX and _has_embed_deps()
    elif embedding and not _has_embed_deps():
        raise ConfigurationError(
            "the embedding map needs scikit-learn and matplotlib: `pip install 'onnxlens[embed]'`."
        )
    emb_layer = embed_layer_for(model) if embedding and len(dataset) >= 4 else None
    config = AtlasConfig(
        model_sha256=model_sha256(model),
        model_name=model.name,
        data=str(Path(data).resolve()),
        data_fingerprint=dataset.fingerprint(),
        items=len(dataset),
        layers=tuple(names),
        channels=chosen,
        layer_channels=counts,
        steps=n_steps,
        size=vsize,
        top_k=top_k,
        seed=int(seed),
        vis_batch=vis_batch,
        classes=class_spec,
        stats_images=stats_images,
        embed_layer=emb_layer,
        link_images=min(link_images, top_k),
        preprocess=json.loads(json.dumps(model.preprocess.to_dict())),
    )
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        saved = read_saved(out)
        if saved is not None and not restart:
            diff = config.differences(saved)
            if diff:
                raise ConfigurationError(
                    f"{str(out)!r} holds an atlas of other settings ({'; '.join(diff)}); rerun "
                    "with the same arguments to resume it, pass --restart (restart=True) to "
                    "start over, or use another --out."
                )
        if restart:
            shutil.rmtree(out / "data", ignore_errors=True)
        st.write_json(out / "atlas.json", config.to_json())
        stop = engines.start_ray(ray_opts) if engine == "ray" else (lambda: None)
        try:
            mined = _build(model, dataset, data, out, config, engine, ray_opts, restart,
                           shard_size, n_classes, progress)  # fmt: skip
        finally:
            stop()
        from .site import write_site

        index = write_site(model, dataset, out, config, mined, page_size)
    log.info("onnxlens: atlas written to %s in %.1f s.", out, time.perf_counter() - t_start)
    return Atlas(out, index, config, mined)


def _has_embed_deps() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("sklearn", "matplotlib"))


class _Bar:
    """A tqdm bar when `progress`, else nothing."""

    def __init__(self, progress: bool, total: int, desc: str, unit: str) -> None:
        self.bar = None
        if progress and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _timed(name: str, t0: float) -> None:
    log.info("onnxlens: atlas step %s: %.1f s", name, time.perf_counter() - t0)


def _build(
    model: Model, dataset: Dataset, data: str | os.PathLike, out: Path, config: AtlasConfig,
    engine: str, ray_opts: RayOptions, restart: bool, shard_size: int, n_classes: int,
    progress: bool,
) -> MiningResult:  # fmt: skip
    t0 = time.perf_counter()
    if (out / "mining" / "result.json").exists() and not restart:
        mined = load(out / "mining")
    else:
        mined = mine(
            model, data, list(config.layers), out / "mining", top_k=config.top_k,
            engine=engine, ray=ray_opts, restart=restart, shard_size=shard_size,
            progress=progress,
        )  # fmt: skip
    _timed("mining", t0)
    # Each step runs graphs of its own (mining's reductions, the statistics' taps, the
    # visualisations' objectives, the connections' VJPs, the embedding's pooled taps); the next
    # needs none of them. All alive, the demo's Lite0 atlas peaked at 2.0 GB; freed step by
    # step, at 1.2 GB.
    model.clear_sessions()

    t0 = time.perf_counter()
    sample = sample_indices(len(dataset), config.stats_images)
    n_cls = classifier_classes(model)
    bar = _Bar(
        progress and not (out / "data/stats/stats.json").exists(),
        2 * len(sample),
        "atlas: statistics",
        "img",
    )
    try:
        st.stats_step(model, dataset, config, sample, out, n_cls, bar.update)
    finally:
        bar.close()
    st.filters_step(model, out)
    _timed("statistics", t0)
    model.clear_sessions()

    t0 = time.perf_counter()
    class_list = _classes(out, config, n_classes)
    batches = _pending(out, config, class_list)
    synth = engines.Synthesis(config.steps, config.size)
    score = str(mined.meta.get("score", "max"))
    bar = _Bar(progress, sum(len(b.items) for b in batches), "atlas: visualisations", "img")
    runs = (
        engines.run_ray(model, batches, synth, ray_opts)
        if engine == "ray"
        else engines.run_local(model, batches, synth)
    )
    try:
        for b, images, final in runs:
            fitted = np.stack([model.preprocess.fit(im) for im in images])
            if b.kind == "channel":
                sc = channel_scores(model, fitted, [b.layer], score)[b.layer]
                own = sc[np.arange(len(b.items)), list(b.items)]
                st.save_vis_batch(out, b.layer, b.index, b.items, images, final, own, score)
            else:
                logits = np.asarray(
                    model.predict(model.preprocess.to_tensor(fitted)), np.float64
                ).reshape(len(b.items), -1)
                e = np.exp(logits - logits.max(1, keepdims=True))
                st.save_class_batch(
                    out, b.index, b.items, images, final, e / e.sum(1, keepdims=True)
                )
            bar.update(len(b.items))
    finally:
        bar.close()
    _timed("visualisations", t0)
    model.clear_sessions()

    t0 = time.perf_counter()
    st.links_step(model, dataset, config, mined, out, images=config.link_images)
    st.patches_step(model, dataset, config, mined, out)
    _timed("connections and patches", t0)
    model.clear_sessions()
    if config.embed_layer and not (out / "data" / "embedding" / "embedding.json").exists():
        t0 = time.perf_counter()
        from ..mining import embed

        embed(
            model, data, config.embed_layer, out / "data" / "embedding",
            thumbnails=0, progress=progress,
        )  # fmt: skip
        _timed("embedding", t0)
        model.clear_sessions()
    return mined


def _classes(out: Path, config: AtlasConfig, n_classes: int) -> list[int]:
    """The classes to visualise, fixed once (data/classes/classes.json) so a rerun sees the same."""
    path = out / "data" / "classes" / "classes.json"
    if path.exists():
        return list(json.loads(path.read_text())["classes"])
    if config.classes == "none":
        chosen: list[int] = []
    elif isinstance(config.classes, list):
        chosen = list(config.classes)
    else:
        with np.load(out / "data" / "stats" / "logits.npz") as z:
            top = z["logits"].argmax(1)
        vals, freq = np.unique(top, return_counts=True)
        order = np.lexsort((vals, -freq))  # most frequent first, ties by class index
        chosen = [int(v) for v in vals[order][:n_classes]]
    st.write_json(
        path,
        {"classes": chosen, "how": config.classes if isinstance(config.classes, str) else "given"},
    )
    return chosen


def _pending(out: Path, config: AtlasConfig, class_list: Sequence[int]) -> list[engines.Batch]:
    from .config import batch_seed

    todo = [
        engines.Batch(
            "channel", layer, i, tuple(chans), batch_seed(config.seed, "channel", layer, i)
        )
        for layer, i, chans in st.vis_batches(config)
        if not st.batch_marker(out, layer, i).exists()
    ]
    b = config.vis_batch
    for i, s in enumerate(range(0, len(class_list), b)):
        if not st.class_marker(out, i).exists():
            todo.append(
                engines.Batch(
                    "class",
                    "",
                    i,
                    tuple(class_list[s : s + b]),
                    batch_seed(config.seed, "class", "", i),
                )
            )
    return todo


def layer_summary(out: Path, layer: str) -> dict:
    return json.loads((out / "data" / "layers" / f"{layer_file(layer)}.json").read_text())


__all__ = ["ENGINES", "Atlas", "build_atlas", "layer_summary"]
