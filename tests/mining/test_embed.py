"""Embeddings: vectors are the layer's spatial mean per image; maps, plots and HTML are written."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np
import pytest

from onnxlens import Model
from onnxlens.errors import ConfigurationError
from onnxlens.mining import embed, open_dataset
from onnxlens.mining.embed import TAB10, label_colors

pytest.importorskip("sklearn", reason="t-SNE maps need scikit-learn (onnxlens[embed])")


def test_embed_vectors_labels_and_files(
    tiny_model_path: Path, photo_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "emb"
    res = embed(tiny_model_path, photo_dir, "r2", out, batch_size=7, progress=False, thumbnails=10)
    model = Model(tiny_model_path)
    ds = open_dataset(photo_dir)
    ok = [i for i, n in enumerate(ds.names) if not n.endswith(("broken.jpg", "empty.png"))]
    x = model.preprocess.to_tensor(np.stack([model.preprocess.fit(ds.read(i)) for i in ok]))
    acts = model.activations(x, "r2")["r2"]
    np.testing.assert_allclose(res["vectors"], acts.mean((2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(res["predicted"], model.predict(x).argmax(1))
    assert res["paths"] == [ds.names[i] for i in ok]
    assert res["labels"] == [n.split("/")[0] for n in res["paths"]]  # auto: folder labels
    assert res["coords"].shape == (40, 2) and np.isfinite(res["coords"]).all()
    np.testing.assert_array_equal(np.load(out / "vectors.npy"), res["vectors"])
    assert (out / "paths.txt").read_text().splitlines() == res["paths"]
    assert (out / "map.png").stat().st_size > 1000
    html = (out / "map.html").read_text()
    assert html.count("<img") == 10 and html.count("<i ") == 30 and "thumbs/" in html
    assert len(list((out / "thumbs").glob("*.jpg"))) == 10
    assert f"<b style='color:{TAB10[1]}'>d1</b>" in html  # the colour map.png gives d1
    again = embed(
        tiny_model_path,
        photo_dir,
        "r2",
        tmp_path / "e2",
        batch_size=40,
        color_by="predicted",
        progress=False,
        thumbnails=0,
    )
    np.testing.assert_array_equal(again["coords"], res["coords"])  # seeded t-SNE
    assert set(again["labels"]) <= {f"class {i}" for i in range(4)}


def test_embed_errors(tiny_model_path: Path, photo_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="--method"):
        embed(tiny_model_path, photo_dir, "r2", tmp_path / "e", method="pca", progress=False)


def test_label_colors_are_distinct_and_stable() -> None:
    assert label_colors(["b", "a", "b"]) == {"a": TAB10[0], "b": TAB10[1]}
    many = label_colors([f"class {i}" for i in range(25)])
    assert len(set(many.values())) == 25 and list(many) == sorted(many)


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str | None]]] = []
        self.bold: list[str] = []
        self._in_b = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))
        self._in_b = tag == "b"
        if self._in_b:
            self.bold.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_b = False

    def handle_data(self, data: str) -> None:
        if self._in_b:  # the parser may deliver one text in pieces
            self.bold[-1] += data


def test_embed_map_page_with_hostile_folder_names(tiny_model_path: Path, tmp_path: Path) -> None:
    """Folder names become labels and tooltips: they must stay text, and every link must be a
    relative path to a file that exists (the page opens from file://)."""
    data = tmp_path / "data"
    folders = ["<img src=x onerror=alert(1)><script>", "a&b 'q' \"dq\""]  # no "/": one folder
    rng = np.random.default_rng(3)
    for i in range(8):
        d = data / folders[i % 2]
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"é {i}.png"), rng.integers(0, 255, (20, 20, 3), np.uint8))
    out = tmp_path / "emb"
    res = embed(tiny_model_path, data, "r2", out, progress=False, thumbnails=3, perplexity=2)
    doc = (out / "map.html").read_text()
    p = _Elements()
    p.feed(doc)
    tags = [t for t, _ in p.found]
    assert tags.count("script") == 1  # the shared hover script, linked, nothing injected
    assert all("onerror" not in a for _, a in p.found)
    assert set(p.bold) == set(folders)  # the colour legend shows the names as text
    tips = [a["data-tip"] for t, a in p.found if t in ("img", "i") and "data-tip" in a]
    assert tips == [f"{q} [{lab}]" for q, lab in zip(res["paths"], res["labels"], strict=True)]
    links = [v for _, a in p.found for k, v in a.items() if k in ("href", "src") and v is not None]
    assert "onnxlens.css" in links and "onnxlens.js" in links and len(links) == 3 + 2
    for href in links:
        parts = urlsplit(href)
        assert not parts.scheme and not parts.netloc and not href.startswith("/")
        assert (out / unquote(href)).is_file()
