"""The mining result in DIR: its stable format, `load`, the patch galleries and the HTML index.

Layout of DIR (format version 1)::

    result.json               run description: model, DATA, layers (channels, grid, stride,
                              receptive field), top_k, score, image_size, counts, files
    layers/<layer-file>.npz   per layer: values float32 (C, k) descending, ids int64 (C, k)
                              (index of the image in DATA's order), paths str (C, k) relative to
                              DATA, positions int32 (C, k, 2) (row, col in the layer grid),
                              boxes int32 (C, k, 4) (y0, x0, y1, x1) in model-input pixels,
                              half-open and clipped, counts int64 (C,) filled slots
    skipped.json              [{"path", "reason"}] items that could not be read
    galleries/<layer-file>/c<channel>.png   the k patches of each channel
    index.html, onnxlens.css  the gallery page (relative links only) and its stylesheet
    state/                    resume checkpoint (config.json, shard-*.npz) and run.lock, held
                              by the run writing DIR (see `mining.lock`)

<layer-file> is `render.io.safe_filename` of the layer name; result.json records it per layer.

Slots a channel could not fill (fewer readable images than k, or NaN scores) hold value NaN,
id -1, path "", positions and boxes -1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigurationError
from ..graph.receptive import Field
from ..render.html import Page, Site, code, fmt, link, table, url
from ..render.io import safe_filename
from .config import FORMAT_VERSION
from .dataset import Dataset
from .files import atomic_save_npz, atomic_write

TILE = 96  # gallery tile side in pixels
GALLERY_BUDGET = 512 << 20  # bytes of tiles held at once in the second pass


class MiningResult(dict):
    """`dict[layer, dict]` of arrays (see the module doc), plus `.skipped` [(path, reason)] and
    `.meta` (result.json) and `.dir`."""

    skipped: list[tuple[str, str]]
    meta: dict
    dir: Path


def layer_file(name: str) -> str:
    """The file stem of a layer's arrays and gallery folder: safe on every OS, and distinct for
    distinct tensor names (see `safe_filename`)."""
    return safe_filename(name)


def assemble(
    values: np.ndarray,
    ids: np.ndarray,
    positions: np.ndarray,
    counts: np.ndarray,
    dataset: Dataset,
    boxes: np.ndarray,
) -> dict[str, np.ndarray]:
    ids = np.asarray(ids, np.int64)
    names = np.array(["", *list(dataset.names)], dtype=str)
    return {
        "values": np.asarray(values, np.float32),
        "ids": ids,
        "paths": names[ids + 1],
        "positions": np.asarray(positions, np.int32),
        "boxes": boxes.astype(np.int32),
        "counts": np.asarray(counts, np.int64),
    }


def write_result(
    out: Path,
    meta: dict,
    layers: dict[str, dict[str, np.ndarray]],
    skipped: Sequence[tuple[str, str]],
) -> None:
    (out / "layers").mkdir(parents=True, exist_ok=True)
    for name, arrays in layers.items():
        atomic_save_npz(out / "layers" / f"{layer_file(name)}.npz", **arrays)
    atomic_write(
        out / "skipped.json",
        json.dumps([{"path": p, "reason": r} for p, r in skipped], indent=1).encode(),
    )
    # result.json last: its presence marks a complete result.
    atomic_write(out / "result.json", json.dumps(meta, indent=1).encode())


def load(out: str | Path) -> MiningResult:
    """Read a mining result: `{layer: {values, ids, paths, positions, boxes, counts}}` with
    `.skipped` and `.meta` (see the module doc for shapes and conventions)."""
    out = Path(out)
    meta_path = out / "result.json"
    if not meta_path.exists():
        hint = (
            " (a run was started there; re-run the same command to finish it)"
            if (out / "state").exists()
            else ""
        )
        raise ConfigurationError(
            f"{str(out)!r} holds no mining result{hint}; create one with `onnxlens mine`."
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ConfigurationError(
            f"{str(out)!r} has result format {meta.get('format_version')}, this onnxlens reads {FORMAT_VERSION}; "
            "re-run `onnxlens mine` with this version."
        )
    res = MiningResult()
    for la in meta["layers"]:
        with np.load(out / "layers" / f"{la['file']}.npz", allow_pickle=False) as z:
            res[la["name"]] = {k: z[k] for k in z.files}
    res.skipped = [(s["path"], s["reason"]) for s in json.loads((out / "skipped.json").read_text())]
    res.meta = meta
    res.dir = out
    return res


# -- galleries ----------------------------------------------------------------------------------
def _tile(fitted: np.ndarray, box: np.ndarray, pos: np.ndarray, f: Field, tile: int) -> np.ndarray:
    """The patch `box` of `fitted`, scaled into a tile, with the layer's stride grid drawn and the
    winning unit's cell outlined (Zeiler & Fergus-style patch figures)."""
    y0, x0, y1, x1 = (int(v) for v in box)
    patch = fitted[y0:y1, x0:x1]
    if patch.size == 0:
        return np.zeros((tile, tile, 3), np.uint8)
    ph, pw = patch.shape[:2]
    scale = tile / max(ph, pw)
    nh, nw = max(1, round(ph * scale)), max(1, round(pw * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST if scale >= 4 else cv2.INTER_LINEAR
    out = np.full((tile, tile, 3), 255, np.uint8)
    oy, ox = (tile - nh) // 2, (tile - nw) // 2
    out[oy : oy + nh, ox : ox + nw] = cv2.resize(patch, (nw, nh), interpolation=interp)
    if not f.whole:
        jy, jx = f.jump
        # Units' centres sit at i*jump + (lo+hi)/2; their cells are jump wide around that.
        cy = pos[0] * jy + (f.lo[0] + f.hi[0]) / 2
        cx = pos[1] * jx + (f.lo[1] + f.hi[1]) / 2
        grid = out.copy()
        if jy * scale >= 4:
            k0 = int(np.ceil((y0 - (cy - jy / 2)) / jy))
            while (yy := cy - jy / 2 + k0 * jy) < y1:
                r = oy + round((yy - y0) * scale)
                if 0 <= r < tile:
                    grid[r, ox : ox + nw] = (255, 255, 255)
                k0 += 1
        if jx * scale >= 4:
            k0 = int(np.ceil((x0 - (cx - jx / 2)) / jx))
            while (xx := cx - jx / 2 + k0 * jx) < x1:
                c = ox + round((xx - x0) * scale)
                if 0 <= c < tile:
                    grid[oy : oy + nh, c] = (255, 255, 255)
                k0 += 1
        out = np.asarray(cv2.addWeighted(out, 0.65, grid, 0.35, 0), np.uint8)
        r0 = oy + round((cy - jy / 2 - y0) * scale)
        c0 = ox + round((cx - jx / 2 - x0) * scale)
        r1 = oy + round((cy + jy / 2 - y0) * scale) - 1
        c1 = ox + round((cx + jx / 2 - x0) * scale) - 1
        cv2.rectangle(
            out, (max(c0, 0), max(r0, 0)), (min(c1, tile - 1), min(r1, tile - 1)), (255, 64, 0), 1
        )
    return out


def _sheet(tiles: np.ndarray, values: np.ndarray, cols: int) -> np.ndarray:
    k, t = tiles.shape[0], tiles.shape[1]
    rows = -(-k // cols)
    pad, label = 2, 12
    sheet = np.full((rows * (t + label + pad) + pad, cols * (t + pad) + pad, 3), 32, np.uint8)
    for i in range(k):
        r, c = divmod(i, cols)
        y, x = pad + r * (t + label + pad), pad + c * (t + pad)
        sheet[y : y + t, x : x + t] = tiles[i]
        if np.isfinite(values[i]):
            cv2.putText(
                sheet,
                f"{values[i]:.3g}",
                (x + 2, y + t + label - 3),
                cv2.FONT_HERSHEY_PLAIN,
                0.8,
                (230, 230, 230),
                1,
                cv2.LINE_AA,
            )
    return sheet


def write_galleries(
    out: Path,
    dataset: Dataset,
    fit: object,
    layers: dict[str, dict[str, np.ndarray]],
    fields: dict[str, Field],
    tile: int = TILE,
    decode: object = None,
) -> None:
    """Second pass over the winning images only: each is decoded once per group of layers whose
    tiles fit in GALLERY_BUDGET, and every patch it won is cut from it."""
    from ..render.io import save_png
    from .runner import iter_batches

    names = list(layers)
    groups: list[list[str]] = [[]]
    used = 0
    for name in names:
        size = layers[name]["ids"].size * tile * tile * 3
        if groups[-1] and used + size > GALLERY_BUDGET:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += size
    for group in groups:
        tiles = {n: np.zeros((*layers[n]["ids"].shape, tile, tile, 3), np.uint8) for n in group}
        wins: dict[int, list[tuple[str, int, int]]] = {}
        for n in group:
            for c, r in zip(*np.nonzero(layers[n]["ids"] >= 0), strict=True):
                wins.setdefault(int(layers[n]["ids"][c, r]), []).append((n, int(c), int(r)))
        for batch in iter_batches(dataset, sorted(wins), 16, fit):  # type: ignore[arg-type]
            for i, img in zip(batch.ids, batch.fitted, strict=True):
                for n, c, r in wins[int(i)]:
                    a = layers[n]
                    tiles[n][c, r] = _tile(
                        img, a["boxes"][c, r], a["positions"][c, r], fields[n], tile
                    )
        for n in group:
            d = out / "galleries" / layer_file(n)
            d.mkdir(parents=True, exist_ok=True)
            k = tiles[n].shape[1]
            cols = min(k, 8)
            for c in range(tiles[n].shape[0]):
                save_png(d / f"c{c:04d}.png", _sheet(tiles[n][c], layers[n]["values"][c], cols))


def write_index(
    out: Path, meta: dict, layers: dict[str, dict[str, np.ndarray]], galleries: bool
) -> None:
    page = Page(
        f"Top-{meta['top_k']} images per channel: {meta['model']}",
        fmt(
            "model {} (sha256 {}…) · DATA {}",
            code(meta["model"]),
            meta["model_sha256"][:12],
            code(meta["data"]),
        ),
    )
    page.section().text(
        "{n} images mined, {s} skipped (see {sk}). Score: spatial {score}; patches are receptive "
        "fields of the arg-max unit in the {h}x{w} model input, with the layer's stride grid and "
        "the unit's cell outlined.",
        n=meta["images_mined"],
        s=meta["skipped_count"],
        sk=link("skipped.json", "skipped.json"),
        score=meta["score"],
        h=meta["image_size"][0],
        w=meta["image_size"][1],
    )
    for la in meta["layers"]:
        a = layers[la["name"]]
        rf = la["receptive_field"]
        rf_text = (
            f"receptive field {rf['size'][0]:g}x{rf['size'][1]:g} px, "
            f"stride {rf['stride'][0]:g}x{rf['stride'][1]:g}"
            if not rf["whole"]
            else f"receptive field: whole image ({rf['reason']})"
        )
        sec = page.section(la["name"], anchor=la["file"])
        sec.text(
            "{c} channels, grid {gh}x{gw}, {rf}. Arrays: {npz}",
            c=la["channels"],
            gh=la["grid"][0],
            gw=la["grid"][1],
            rf=rf_text,
            npz=code(f"layers/{la['file']}.npz"),
        )
        rows = []
        for c in range(a["values"].shape[0]):
            vals = ", ".join(f"{v:.3g}" for v in a["values"][c][:4] if np.isfinite(v))
            top = str(a["paths"][c][0]) if a["paths"][c].size else ""
            img = (
                fmt(
                    "<img loading='lazy' src='{}' alt='channel {}'>",
                    url(f"galleries/{la['file']}/c{c:04d}.png"),
                    c,
                )
                if galleries
                else ""
            )
            rows.append([c, fmt("{}<br><small>{}</small>", vals, top), img])
        sec.add(table(["channel", "top values", "patches"], rows))
    Site(out, writer=atomic_write).write(page, "index.html")
