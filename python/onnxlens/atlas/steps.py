"""The atlas' cached steps. Each writes its files atomically and a marker last, so a killed run
redoes at most the step (or the visualisation batch) it was in, and writes the same bytes.

Every array a step computes depends only on the run's identity (`AtlasConfig`): batches are
fixed chunks of fixed indices, seeds are per batch (`batch_seed`), and nothing records a time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import ConfigurationError
from ..graph.layout import to_nchw_perm
from ..methods.activations import to_nchw
from ..mining.dataset import Dataset
from ..mining.files import atomic_save_npz, atomic_write
from ..mining.runner import iter_batches
from ..model import Model
from ..render import filter_grid
from .config import AtlasConfig, layer_file

log = logging.getLogger("onnxlens")

HIST_BINS = 32
STATS_BATCH = 16
LINK_BATCH = 16  # (channel, image) pairs per VJP run of the connections step
THUMB = 160  # side of the full-image thumbnails with receptive-field boxes


def write_json(path: Path, obj: object) -> None:
    # sort_keys and a fixed float repr: the same object always gives the same bytes.
    atomic_write(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def write_png(path: Path, rgb: np.ndarray) -> None:
    img = np.asarray(rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ConfigurationError(
            f"expected uint8 RGB (H, W, 3) for {path.name}, got {img.dtype} {img.shape}."
        )
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB array
        raise ConfigurationError(f"could not encode {path.name} as PNG.")
    atomic_write(path, buf.tobytes())


def write_jpeg(path: Path, rgb: np.ndarray, quality: int = 88) -> None:
    ok, buf = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB array
        raise ConfigurationError(f"could not encode {path.name} as JPEG.")
    atomic_write(path, buf.tobytes())


def _npz(path: Path, **arrays: np.ndarray) -> None:
    atomic_save_npz(path, **arrays)


# -- statistics -----------------------------------------------------------------------------
def _as_nchw(model: Model, layer: str, a: np.ndarray) -> np.ndarray:
    la = model.layer(layer)
    a = to_nchw(np.asarray(a, np.float32), la.layout if a.ndim == 4 else None)
    return a[:, :, None, None] if a.ndim == 2 else a


def stats_step(
    model: Model, dataset: Dataset, config: AtlasConfig, sample: Sequence[int], out: Path,
    n_classes: int | None, progress: Callable[[int], None] | None = None,
) -> None:  # fmt: skip
    """Per-channel statistics of every atlas layer over a deterministic sample of DATA.

    Two passes over the sample: the first gives per image and channel the spatial max, mean,
    min and fraction of positive units (and the logits of a classifier), the second the
    histogram of every activation value between each channel's sample min and max (fixed
    edges, so counts are exact integers whatever the batch size)."""
    marker = out / "data" / "stats" / "stats.json"
    if marker.exists():
        return
    layers = list(config.layers)
    fetch = layers + ([model.output_names[0]] if n_classes else [])
    chunks = [list(sample[s : s + STATS_BATCH]) for s in range(0, len(sample), STATS_BATCH)]
    per: dict[str, dict[str, list[np.ndarray]]] = {n: {"max": [], "mean": [], "min": [], "pos": []} for n in layers}  # fmt: skip
    logits: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    for chunk in chunks:
        for batch in iter_batches(dataset, chunk, len(chunk), model.preprocess.fit):
            if not len(batch.ids):
                continue
            acts = model.activations(model.preprocess.to_tensor(batch.fitted), fetch)
            for n in layers:
                a = _as_nchw(model, n, acts[n])
                flat = a.reshape(a.shape[0], a.shape[1], -1)
                per[n]["max"].append(flat.max(2))
                per[n]["min"].append(flat.min(2))
                per[n]["mean"].append(flat.mean(2, dtype=np.float64).astype(np.float32))
                per[n]["pos"].append((flat > 0).mean(2, dtype=np.float64).astype(np.float32))
            if n_classes:
                logits.append(np.asarray(acts[fetch[-1]], np.float32).reshape(len(batch.ids), -1))
            ids.append(batch.ids)
        if progress is not None:
            progress(len(chunk))
    if not ids:
        raise ConfigurationError(
            f"none of the {len(sample)} sampled items of DATA could be read; check DATA."
        )
    idx = np.concatenate(ids)
    first = {n: {k: np.concatenate(v) for k, v in d.items()} for n, d in per.items()}
    lo = {n: first[n]["min"].min(0) for n in layers}
    hi = {n: first[n]["max"].max(0) for n in layers}
    hist = {n: np.zeros((lo[n].shape[0], HIST_BINS), np.int64) for n in layers}
    for chunk in chunks:  # second pass: the histograms
        for batch in iter_batches(dataset, chunk, len(chunk), model.preprocess.fit):
            if not len(batch.ids):
                continue
            acts = model.activations(model.preprocess.to_tensor(batch.fitted), layers)
            for n in layers:
                a = _as_nchw(model, n, acts[n])
                hist[n] += channel_histograms(a, lo[n], hi[n], HIST_BINS)
        if progress is not None:
            progress(len(chunk))
    (out / "data" / "stats").mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"images": len(idx), "bins": HIST_BINS, "layers": {}}
    for n in layers:
        f = first[n]
        dead = (f["max"].max(0) <= 0) | (f["max"].max(0) == f["min"].min(0))
        _npz(
            out / "data" / "stats" / f"{layer_file(n)}.npz",
            ids=idx, max=f["max"], mean=f["mean"], min=f["min"], positive=f["pos"],
            hist=hist[n], lo=lo[n], hi=hi[n], sparsity=(1 - f["pos"].mean(0, dtype=np.float64)),
            dead=dead,
        )  # fmt: skip
        summary["layers"][n] = {"channels": int(dead.size), "dead": int(dead.sum())}
    if n_classes:
        lg = np.concatenate(logits)
        _npz(out / "data" / "stats" / "logits.npz", ids=idx, logits=lg)
    write_json(marker, summary)


def channel_histograms(a: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """int64 (C, bins): per channel, counts of the values of (N, C, h, w) `a` in `bins` equal
    bins from lo[c] to hi[c] (the last bin closed, as numpy.histogram; a constant channel puts
    everything in bin 0)."""
    _n, c = a.shape[:2]
    v = np.moveaxis(a, 1, 0).reshape(c, -1).astype(np.float64)
    width = (hi - lo).astype(np.float64)
    scale = np.where(width > 0, bins / np.where(width > 0, width, 1), 0)
    b = np.floor((v - lo[:, None]) * scale[:, None]).astype(np.int64)
    np.clip(b, 0, bins - 1, out=b)
    b += (np.arange(c) * bins)[:, None]
    return np.bincount(b.ravel(), minlength=c * bins).reshape(c, bins)


# -- first-layer filters --------------------------------------------------------------------
def filters_step(model: Model, out: Path) -> None:
    marker = out / "data" / "filters.json"
    if marker.exists():
        return
    try:
        layer, w = model.filters()
    except ConfigurationError:
        write_json(marker, {"layer": None})
        return
    write_png(out / "data" / "filters.png", filter_grid(w))
    write_json(marker, {"layer": layer, "shape": list(w.shape)})


# -- visualisations -------------------------------------------------------------------------
def vis_batches(config: AtlasConfig) -> list[tuple[str, int, list[int]]]:
    """(layer, batch index, channels) of every visualisation batch, in a fixed order."""
    b = config.vis_batch
    out = []
    for name in config.layers:
        chans = config.channels[name]
        for i, s in enumerate(range(0, len(chans), b)):
            out.append((name, i, chans[s : s + b]))
    return out


def vis_dir(out: Path, layer: str) -> Path:
    return out / "data" / "vis" / layer_file(layer)


def batch_marker(out: Path, layer: str, batch: int) -> Path:
    return vis_dir(out, layer) / f"batch-{batch:04d}.json"


def save_vis_batch(
    out: Path, layer: str, batch: int, channels: Sequence[int], images: np.ndarray,
    final: np.ndarray, scores: np.ndarray, score: str,
) -> None:  # fmt: skip
    """One batch: its PNGs, then its JSON (the marker) last."""
    d = vis_dir(out, layer)
    for c, img in zip(channels, images, strict=True):
        write_png(d / f"c{c:04d}.png", img)
    write_json(
        batch_marker(out, layer, batch),
        {
            "layer": layer, "batch": batch, "channels": [int(c) for c in channels],
            "objective": [float(v) for v in final], "score": score,
            "dataset_score": [float(v) for v in scores],
        },
    )  # fmt: skip


def class_marker(out: Path, batch: int) -> Path:
    return out / "data" / "classes" / f"batch-{batch:04d}.json"


def save_class_batch(
    out: Path, batch: int, classes: Sequence[int], images: np.ndarray, final: np.ndarray,
    probs: np.ndarray,
) -> None:  # fmt: skip
    d = out / "data" / "classes"
    for k, img in zip(classes, images, strict=True):
        write_png(d / f"class{k:05d}.png", img)
    write_json(
        class_marker(out, batch),
        {
            "batch": batch, "classes": [int(k) for k in classes],
            "objective": [float(v) for v in final],
            "probability": [float(p[k]) for p, k in zip(probs, classes, strict=True)],
        },
    )  # fmt: skip


# -- connections to the previous layer ------------------------------------------------------
def links_step(
    model: Model, dataset: Dataset, config: AtlasConfig, mined: dict, out: Path, images: int,
) -> None:  # fmt: skip
    """For every visualised channel c of layer L and every channel i of the previous atlas layer
    P: the mean over c's top dataset images of sum_{h,w} A_P[i] * dA_L[c, p*]/dA_P[i], where p*
    is the unit of c that won the image (mining's arg-max). That is gradient x activation of
    the winning unit, taken through every path of the graph from P to L (Olah et al.'s
    "attribution to the previous layer"; for a direct linear Conv it is exactly the weights times
    the input patch). Saved as float32 (len(channels), C_P) per layer."""
    for j in range(1, len(config.layers)):
        layer, prev = config.layers[j], config.layers[j - 1]
        path = out / "data" / "links" / f"{layer_file(layer)}.npz"
        if path.exists():
            continue
        chans = config.channels[layer]
        arr = mined[layer]
        la = model.layer(layer)
        # (row of `rows`, channel, image id, winning position) of every pair, in a fixed order.
        pairs = [
            (ci, c, int(arr["ids"][c, r]), arr["positions"][c, r])
            for ci, c in enumerate(chans)
            for r in range(int(min(images, arr["counts"][c])))
        ]
        fitted: dict[int, np.ndarray] = {}
        for batch in iter_batches(dataset, sorted({p[2] for p in pairs}), 16, model.preprocess.fit):
            fitted.update({int(i): img for i, img in zip(batch.ids, batch.fitted, strict=True)})
        pairs = [p for p in pairs if p[2] in fitted]  # unreadable since mining: left out
        rows = np.zeros((len(chans), config.layer_channels[prev]), np.float64)
        used = np.zeros(len(chans), np.int64)
        if not pairs:
            _npz(path, channels=np.asarray(chans, np.int64), previous=np.asarray([prev]),
                 scores=rows.astype(np.float32), images=used)  # fmt: skip
            continue
        # One compiled VJP per layer pair, pinned to LINK_BATCH (chunks are padded to it): the
        # same run gives the gradient w.r.t. P and P's activations (`keep`).
        nb = model.input.batch or LINK_BATCH  # a fixed-batch model runs at its own batch
        f = model.vjp_function([layer], wrt=[prev], keep=[prev], batch=nb)
        shape: tuple[int, ...] | None = None
        for s in range(0, len(pairs), nb):
            chunk = pairs[s : s + nb]
            x = model.preprocess.to_tensor(np.stack([fitted[p[2]] for p in chunk]))
            pad = nb - len(chunk)
            if pad:
                x = np.concatenate([x, np.repeat(x[-1:], pad, 0)])
            if shape is None:
                shape = np.asarray(model.activations(x[:1], [layer])[layer]).shape[1:]
            cot = np.zeros((nb, *shape), np.float32)
            for r, (_, c, _, pos) in enumerate(chunk):
                _one_hot(cot, r, c, pos, la.layout if len(shape) == 3 else None)
            res = f({model.input_name: x}, {layer: cot})
            g, a = res.gradients[prev], res.activations[prev]
            contrib = _as_nchw(model, prev, np.asarray(a) * np.asarray(g))
            per = contrib.sum((2, 3), dtype=np.float64)
            for r, (ci, *_rest) in enumerate(chunk):
                rows[ci] += per[r]
                used[ci] += 1
        rows /= np.maximum(used, 1)[:, None]
        _npz(
            path,
            channels=np.asarray(chans, np.int64),
            previous=np.asarray([prev]),
            scores=rows.astype(np.float32),
            images=used,
        )


def _one_hot(cot: np.ndarray, r: int, c: int, pos: np.ndarray, layout: str | None) -> None:
    """Set the cotangent of unit (c, pos) of sample r, in the layer's own axis order."""
    if cot.ndim == 2:
        cot[r, c] = 1.0
        return
    y, x = (int(v) for v in pos)
    if y < 0:
        return
    if layout and layout != "NCHW":
        perm = to_nchw_perm(layout)  # nchw axis i is native axis perm[i]
        idx = [0, 0, 0, 0]
        for nchw_axis, value in zip(range(1, 4), (c, y, x), strict=True):
            idx[perm[nchw_axis]] = value
        idx[0] = r
        cot[tuple(idx)] = 1.0
    else:
        cot[r, c, y, x] = 1.0


# -- top images with their receptive-field boxes --------------------------------------------
def patches_step(
    model: Model, dataset: Dataset, config: AtlasConfig, mined: dict, out: Path
) -> None:
    """Per visualised channel, its top-k images as thumbnails with the winning unit's
    receptive-field box drawn (yellow), each image decoded once."""
    marker = out / "data" / "patches" / "patches.json"
    if marker.exists():
        return
    wins: dict[int, list[tuple[str, int, int]]] = {}
    for name in config.layers:
        arr = mined[name]
        for c in config.channels[name]:
            for r in range(int(arr["counts"][c])):
                wins.setdefault(int(arr["ids"][c, r]), []).append((name, c, r))
    h, w = model.preprocess.size
    s = THUMB / max(h, w)
    for batch in iter_batches(dataset, sorted(wins), 16, model.preprocess.fit):
        for i, img in zip(batch.ids, batch.fitted, strict=True):
            small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
            for name, c, r in wins[int(i)]:
                y0, x0, y1, x1 = (int(v) for v in mined[name]["boxes"][c, r])
                t = small.copy()
                p0 = (round(x0 * s), round(y0 * s))
                p1 = (max(round(x1 * s) - 1, p0[0]), max(round(y1 * s) - 1, p0[1]))
                cv2.rectangle(t, p0, p1, (0, 0, 0), 3)
                cv2.rectangle(t, p0, p1, (255, 220, 0), 1)
                write_jpeg(out / "data" / "patches" / layer_file(name) / f"c{c:04d}-{r:02d}.jpg", t)
    write_json(marker, {"images": len(wins), "thumb": THUMB})
