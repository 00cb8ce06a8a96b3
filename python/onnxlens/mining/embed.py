"""`embed`: a layer's per-image vectors over a dataset and their 2-D map (t-SNE, or UMAP).

Output in DIR::

    vectors.npy      float32 (N, C): the layer per image (spatial mean for (N, C, H, W) layers)
    paths.txt        N lines, image paths relative to DATA (same order as the rows)
    labels.txt       N lines, the label each point is coloured by
    predicted.npy    int64 (N,) arg-max of the model's first output, when it is (N, classes)
    coords.npy       float32 (N, 2): the 2-D map
    map.png          scatter plot coloured by label
    map.html         the map with thumbnails (relative links into thumbs/); hover shows a point's
                     path and label (onnxlens.css and onnxlens.js beside it)
    embedding.json   layer, method, colouring, counts, skipped items
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigurationError
from ..graph.receptive import ReceptiveFields, nchw_perms
from ..graph.reduce import add_channel_reductions
from ..model import Model
from ..render.html import Page, Site, fmt, join, url
from ..runtime import GraphKey
from .dataset import open_dataset
from .files import atomic_write
from .runner import DEFAULT_BATCH, iter_batches

METHODS = ("tsne", "umap")
COLOR_BY = ("auto", "folder", "predicted", "none")
EXACT_TSNE = 500  # points up to which exact t-SNE is faster than Barnes-Hut


def _umap() -> object | None:
    try:
        import umap  # type: ignore[import-not-found]
    except ImportError:
        return None
    return umap


def check_dependencies(method: str) -> None:
    """The optional packages `embed` needs for `method`, checked before any forward pass:
    scikit-learn (t-SNE, and the PCA before it), umap-learn (UMAP), matplotlib (map.png)."""
    import importlib.util

    need = [("matplotlib", "matplotlib")]
    if method == "umap":
        need.append(("umap", "umap-learn"))
    else:
        need.append(("sklearn", "scikit-learn"))
    missing = []
    for module, package in need:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or broken
            found = False
        if not found:
            missing.append(package)
    if missing:
        alt = ", or use --method tsne" if method == "umap" and "umap-learn" in missing else ""
        raise ConfigurationError(
            f"embed needs {' and '.join(missing)}: `pip install {' '.join(missing)}` (or "
            f"`pip install 'onnxlens[embed]'`){alt}. Nothing was computed."
        )


def project(
    vectors: np.ndarray, method: str = "tsne", seed: int = 0, perplexity: float = 30.0
) -> np.ndarray:
    """(N, C) -> float32 (N, 2). t-SNE (scikit-learn; PCA to 50 dims first, perplexity capped at
    (N-1)/3 so small sets work, exact up to EXACT_TSNE points) or UMAP (umap-learn)."""
    n = vectors.shape[0]
    if n < 4:
        raise ConfigurationError(f"a 2-D map needs at least 4 images; DATA gave {n}.")
    x = np.asarray(vectors, np.float64)
    x = x - x.mean(0)
    if method == "umap":
        umap = _umap()
        if umap is None:
            raise ConfigurationError(
                "--method umap needs umap-learn: `pip install umap-learn`, or use --method tsne."
            )
        reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, n - 1))  # type: ignore[attr-defined]
        return np.asarray(reducer.fit_transform(x), np.float32)
    try:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE
    except ImportError as exc:
        raise ConfigurationError("t-SNE needs scikit-learn: `pip install scikit-learn`.") from exc
    if x.shape[1] > 50 and n > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    p = float(min(perplexity, max(1.0, (n - 1) / 3)))
    # Barnes-Hut's tree costs more than the exact O(N^2) gradient below ~500 points (measured on 2
    # vCPUs: 40 points 3.8 s vs 0.4 s, 300 points 17 s vs 4.6 s; 1,000 points 23 s vs 44 s).
    tsne = TSNE(
        n_components=2,
        perplexity=p,
        init="pca",
        random_state=seed,
        learning_rate="auto",
        method="exact" if n <= EXACT_TSNE else "barnes_hut",
    )
    return np.asarray(tsne.fit_transform(x), np.float32)


def embed(
    model: Model | str | os.PathLike,
    data: str | os.PathLike,
    layer: str,
    out: str | os.PathLike,
    batch_size: int | None = None,
    method: str = "tsne",
    color_by: str = "auto",
    seed: int = 0,
    perplexity: float = 30.0,
    thumbnails: int = 2000,
    progress: bool = True,
    device: str = "auto",
    threads: int | None = None,
) -> dict[str, np.ndarray | list[str]]:
    """Vectors of `layer` for every readable image of DATA, a 2-D map, a scatter plot and an HTML
    map with thumbnails in `out`. `color_by`: "folder" (first folder of each path, or a parquet
    `label` column), "predicted" (arg-max of the model's first output), "none", or "auto" (folder
    labels when DATA has several folders, else predicted). Returns the arrays written."""
    if method not in METHODS:
        raise ConfigurationError(f"--method must be one of {', '.join(METHODS)}; got {method!r}.")
    if color_by not in COLOR_BY:
        raise ConfigurationError(
            f"--color-by must be one of {', '.join(COLOR_BY)}; got {color_by!r}."
        )
    check_dependencies(method)  # before the forward pass, not after it
    if not isinstance(model, Model):
        model = Model(model, device=device, threads=threads)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {str(out)!r} is a file; pass a folder.")
    out.mkdir(parents=True, exist_ok=True)
    dataset = open_dataset(data)
    tensor = model.resolve(layer)
    first = model.proto.graph.output[0]
    dims = first.type.tensor_type.shape.dim
    has_logits = len(dims) == 2 and not (dims[1].HasField("dim_value") and dims[1].dim_value < 2)
    keep = [first.name] if has_logits and first.name != tensor else []
    fields = ReceptiveFields(model.proto, model.input_name, model.layout)
    reduced, red = add_channel_reductions(
        model.proto, [tensor], "mean", keep_outputs=keep, perms=nchw_perms(fields, [tensor])
    )
    sess = model.session(GraphKey("embed", (tensor, tuple(keep))), lambda: reduced)
    names = [red[tensor].score, *keep]
    # The colouring is checked before the forward pass too: both inputs are known already.
    folder = dataset.folder_labels()
    mode = color_by
    if mode == "auto":
        mode = "folder" if folder is not None else "predicted" if keep else "none"
    if mode == "folder" and folder is None:
        raise ConfigurationError(
            "--color-by folder needs DATA with images in several folders (or a parquet label column)."
        )
    if mode == "predicted" and not keep:
        raise ConfigurationError(
            "--color-by predicted needs a model whose first output is (N, classes)."
        )
    bs = model.input.batch or int(batch_size or DEFAULT_BATCH)
    vecs: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    skipped: list[tuple[str, str]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(dataset), unit="img", unit_scale=True, desc="embedding", dynamic_ncols=True
        )
    for batch in iter_batches(dataset, range(len(dataset)), bs, model.preprocess.fit):
        skipped += batch.skipped
        if len(batch.ids):
            x = model.preprocess.to_tensor(batch.fitted)
            outs = model.run_batched(sess, x, names, bs)
            vecs.append(outs[0])
            if keep:
                preds.append(np.asarray(outs[1]).reshape(len(batch.ids), -1).argmax(1))
            ids.append(batch.ids)
        if bar is not None:
            bar.update(len(batch.ids) + len(batch.skipped))
    if bar is not None:
        bar.close()
    if not ids:
        raise ConfigurationError(f"none of the {len(dataset)} items of DATA could be read.")
    idx = np.concatenate(ids)
    vectors = np.ascontiguousarray(np.concatenate(vecs), np.float32)
    predicted = np.concatenate(preds).astype(np.int64) if preds else None
    paths = [dataset.names[i] for i in idx]
    if mode == "folder":
        labels = [folder[i] for i in idx]  # type: ignore[index]
    elif mode == "predicted":
        labels = [f"class {p}" for p in predicted]  # type: ignore[union-attr]
    else:
        labels = [""] * len(idx)
    # The vectors are the expensive part: saved before the projection and the plots, so a
    # failure there (too few images, a plotting error) keeps them.
    _save_npy(out / "vectors.npy", vectors)
    if predicted is not None:
        _save_npy(out / "predicted.npy", predicted)
    atomic_write(out / "paths.txt", ("\n".join(paths) + "\n").encode())
    atomic_write(out / "labels.txt", ("\n".join(labels) + "\n").encode())
    coords = project(vectors, method, seed, perplexity)
    _save_npy(out / "coords.npy", coords)
    _scatter(out / "map.png", coords, labels, f"{model.name}: {tensor} ({method})")
    _html(
        out,
        dataset,
        idx,
        coords,
        labels,
        paths,
        model.preprocess.fit,
        thumbnails,
        f"{model.name}: {tensor}",
    )
    meta = {
        "model": model.name,
        "layer": tensor,
        "method": method,
        "color_by": mode,
        "images": len(idx),
        "dims": int(vectors.shape[1]),
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
    }
    atomic_write(out / "embedding.json", json.dumps(meta, indent=1).encode())
    result: dict[str, np.ndarray | list[str]] = {
        "vectors": vectors,
        "coords": coords,
        "paths": paths,
        "labels": labels,
    }
    if predicted is not None:
        result["predicted"] = predicted
    return result


def _save_npy(path: Path, a: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, a)
    atomic_write(path, buf.getvalue())


TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip


def label_colors(labels: Sequence[str]) -> dict[str, str]:
    """One hex colour per distinct label (sorted), the same in map.png and map.html: matplotlib's
    tab10 up to 10 labels, else evenly spaced along turbo so no two labels share a colour."""
    classes = sorted(set(labels))
    if len(classes) <= len(TAB10):
        return dict(zip(classes, TAB10, strict=False))
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    turbo = colormaps["turbo"]
    return {c: to_hex(turbo(j / (len(classes) - 1))) for j, c in enumerate(classes)}


def _scatter(path: Path, coords: np.ndarray, labels: Sequence[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    color = label_colors(labels)
    fig, ax = plt.subplots(figsize=(8, 8), dpi=110)
    lab = np.asarray(labels)
    for c, hexcolor in color.items():
        m = lab == c
        ax.scatter(
            coords[m, 0],
            coords[m, 1],
            s=10,
            color=hexcolor,
            label=c or None,
            alpha=0.8,
            linewidths=0,
        )
    if 1 < len(color) <= 20:
        ax.legend(fontsize=8, markerscale=2, loc="best", frameon=False)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _html(
    out: Path,
    dataset: object,
    idx: np.ndarray,
    coords: np.ndarray,
    labels: Sequence[str],
    paths: Sequence[str],
    fit: object,
    max_thumbs: int,
    title: str,
) -> None:
    size, thumb = 1000, 40
    lo, hi = coords.min(0), coords.max(0)
    xy = (coords - lo) / np.where(hi > lo, hi - lo, 1) * (size - thumb)
    n = len(idx)
    # An evenly spread, deterministic subset gets thumbnails; every point gets a dot.
    show = (
        set(np.linspace(0, n - 1, min(n, max_thumbs)).round().astype(int).tolist())
        if max_thumbs > 0
        else set()
    )
    tdir = out / "thumbs"
    tdir.mkdir(exist_ok=True)
    order = sorted(show)
    for batch in iter_batches(dataset, [int(idx[r]) for r in order], 32, fit):  # type: ignore[arg-type]
        for i, img in zip(batch.ids, batch.fitted, strict=True):
            small = cv2.resize(img, (thumb, thumb), interpolation=cv2.INTER_AREA)
            cv2.imwrite(
                str(tdir / f"{int(i):08d}.jpg"), small[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85]
            )
    color = label_colors(labels)
    classes = list(color)
    page = Page(title, f"{n} images", script=True)
    sec = page.section()
    sec.text(
        "Colours: {}",
        join(
            (fmt("<b style='color:{}'>{}</b>", color[c], c or "-") for c in classes[:30]),
            sep=", ",
        ),
    )
    sec.add(fmt("<p id='tip' class='tip note'>{}</p>", "hover a point to see its image path"))
    points = []
    for r in range(n):
        x, y = xy[r]
        tip = f"{paths[r]} [{labels[r]}]"
        if r in show:
            points.append(
                fmt(
                    "<img loading='lazy' src='{}' title='{tip}' data-tip='{tip}' "
                    "style='left:{:.0f}px;top:{:.0f}px;border-color:{}'>",
                    url(f"thumbs/{int(idx[r]):08d}.jpg"),
                    x,
                    y,
                    color[labels[r]],
                    tip=tip,
                )
            )
        else:
            points.append(
                fmt(
                    "<i title='{tip}' data-tip='{tip}' "
                    "style='left:{:.0f}px;top:{:.0f}px;background:{}'></i>",
                    x + 17,
                    y + 17,
                    color[labels[r]],
                    tip=tip,
                )
            )
    sec.add(fmt("<div class='map'>{}</div>", join(points, sep="\n")))
    Site(out, writer=atomic_write).write(page, "map.html")
