"""The tiny atlas' numbers against independent references: plain `Model.activations` and numpy
for the statistics, the dataset max and the visualisation ratio; the conv weights for the
connections; and the pages against the data they show."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from atlas_data import TINY
from onnx import numpy_helper

from onnxlens import Model
from onnxlens.atlas import build_atlas, layer_summary
from onnxlens.errors import ConfigurationError, LayerNotFoundError
from onnxlens.mining import open_dataset


def _all_acts(
    model_path: Path, data: Path, layers: list[str]
) -> tuple[Model, dict[str, np.ndarray], list[str]]:
    """Activations of every image of DATA, in the dataset's order, by plain Model.activations."""
    m = Model(model_path)
    ds = open_dataset(data)
    fitted = np.stack([m.preprocess.fit(ds.read(i)) for i in range(len(ds))])
    return m, m.activations(m.preprocess.to_tensor(fitted), layers), list(ds.names)


def test_statistics_match_numpy(tiny_atlas) -> None:
    model_path, data, atlas = tiny_atlas
    _, acts, _ = _all_acts(model_path, data, TINY["layers"])
    for layer in TINY["layers"]:
        a = acts[layer]  # (N, C, h, w); the sample is all 24 images (stats_images=64)
        with np.load(atlas.out / "data" / "stats" / f"{layer}.npz") as z:
            assert z["ids"].tolist() == list(range(a.shape[0]))
            np.testing.assert_array_equal(z["max"], a.max((2, 3)))
            np.testing.assert_allclose(z["sparsity"], (a <= 0).mean((0, 2, 3)), atol=1e-6)
            lo, hi = a.min((0, 2, 3)), a.max((0, 2, 3))
            np.testing.assert_array_equal(z["lo"], lo)
            for c in range(a.shape[1]):
                counts, _ = np.histogram(a[:, c].ravel(), bins=32, range=(lo[c], hi[c]))
                np.testing.assert_array_equal(z["hist"][c], counts)
            dead = (a.max((0, 2, 3)) <= 0) | (a.max((0, 2, 3)) == a.min((0, 2, 3)))
            np.testing.assert_array_equal(z["dead"], dead)


def test_dataset_max_and_visualisation_ratio(tiny_atlas) -> None:
    model_path, data, atlas = tiny_atlas
    m, acts, _ = _all_acts(model_path, data, TINY["layers"])
    for layer in TINY["layers"]:
        summary = layer_summary(atlas.out, layer)
        assert [e["channel"] for e in summary["channels"]] == [0, 1, 2, 3]
        vis_paths = [atlas.out / "data" / "vis" / layer / f"c{c:04d}.png" for c in range(4)]
        vis = np.stack([cv2.imread(str(p))[:, :, ::-1] for p in vis_paths])
        vis_acts = m.activations(m.preprocess.to_tensor(vis), [layer])[layer]
        for e in summary["channels"]:
            c = e["channel"]
            best = float(acts[layer][:, c].max())
            assert e["dataset_max"] == pytest.approx(best, rel=1e-6)
            own = float(vis_acts[c, c].max())
            assert e["visualisation_score"] == pytest.approx(own, rel=1e-5, abs=1e-6)
            assert e["ratio"] == pytest.approx(own / best, rel=1e-5)


def test_connections_are_the_conv_contributions(tiny_atlas) -> None:
    """c2 = Conv(p1, w2) (3x3, pad 1, no bias): gradient x activation of unit (c, y, x) of c2
    w.r.t. p1 channel i is exactly sum_k w2[c, i, k] * p1_patch[i, k]."""
    model_path, data, atlas = tiny_atlas
    _, acts, names = _all_acts(model_path, data, ["p1", "c2"])
    w2 = next(
        numpy_helper.to_array(t)
        for t in onnx.load(str(model_path)).graph.initializer
        if t.name == "w2"
    )
    p1 = np.pad(acts["p1"], ((0, 0), (0, 0), (1, 1), (1, 1)))
    with np.load(atlas.out / "data" / "links" / "c2.npz") as z:
        assert z["previous"].tolist() == ["p1"] and z["channels"].tolist() == [0, 1, 2, 3]
        scores, used = z["scores"], z["images"]
    for row, c in enumerate(range(4)):
        # The channel's top images by numpy, and the arg-max unit of each (the winning unit).
        maxes = acts["c2"][:, c].reshape(len(names), -1)
        top = np.argsort(-maxes.max(1), kind="stable")[: TINY["top_k"]]
        ref = np.zeros(8)
        for i in top:
            y, x = np.unravel_index(int(maxes[i].argmax()), acts["c2"].shape[2:])
            patch = p1[i, :, y : y + 3, x : x + 3]  # padded coordinates: rows y-1..y+1
            ref += (w2[c] * patch).sum((1, 2))
        ref /= len(top)
        assert used[row] == len(top)
        np.testing.assert_allclose(scores[row], ref, rtol=1e-4, atol=1e-5)
        top_inputs = layer_summary(atlas.out, "c2")["channels"][row]["top_inputs"]
        assert [i for i, _ in top_inputs] == [int(i) for i in np.argsort(-ref)[: len(top_inputs)]]


def test_pages_show_the_data(tiny_atlas) -> None:
    _, _, atlas = tiny_atlas
    out = atlas.out
    page = (out / "layers" / "c2.html").read_text()
    for e in layer_summary(out, "c2")["channels"]:
        c = e["channel"]
        assert f"channels/c2/c{c:04d}.html" in page and f"data/vis/c2/c{c:04d}.png" in page
        assert f"{e['ratio']:.2f}x" in page
    # Every thumbnail is lazy, every picture a file (no inline base64), every link relative.
    for p in out.rglob("*.html"):
        text = p.read_text()
        assert "data:image" not in text and "http://" not in text and "https://" not in text
        for tag in re.findall(r"<img [^>]*>", text):
            assert "loading='lazy'" in tag or "id='tipimg'" in tag
    ch = (out / "channels" / "c2" / "c0001.html").read_text()
    assert "Strongest inputs from the previous layer" in ch and "<svg class='hist'" in ch
    assert (out / "classes").is_dir() and json.loads(
        (out / "data/classes/classes.json").read_text()
    )["classes"]


def test_pagination_keeps_big_layers_browsable(tiny_atlas, tmp_path: Path) -> None:
    from onnxlens.atlas.site import write_site
    from onnxlens.mining import load

    model_path, data, atlas = tiny_atlas
    out = tmp_path / "site"
    shutil.copytree(atlas.out, out)
    write_site(
        Model(model_path), open_dataset(data), out, atlas.config, load(out / "mining"), page_size=3
    )
    first, second = (
        (out / "layers" / "p1.html").read_text(),
        (out / "layers" / "p1-p2.html").read_text(),
    )
    assert re.findall(r"id='c(\d+)'", first) == ["0", "1", "2"]
    assert re.findall(r"id='c(\d+)'", second) == ["3"]
    assert "p1-p2.html" in first and "next" in first and "p1.html" in second
    # channel 3's page links back to the page that lists it
    assert "../../layers/p1-p2.html#c3" in (out / "channels" / "p1" / "c0003.html").read_text()


def test_other_settings_refuse_to_resume(tiny_atlas) -> None:
    model_path, data, atlas = tiny_atlas
    with pytest.raises(ConfigurationError, match=r"--steps differs.*--restart"):
        build_atlas(model_path, data, atlas.out, **{**TINY, "steps": TINY["steps"] + 1})


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"layers": ["nope"]}, LayerNotFoundError, "not found"),
        ({"channels": [99]}, ConfigurationError, "channels 0..7"),
        ({"engine": "spark"}, ConfigurationError, "--engine must be one of local, ray"),
        ({"classes": [7]}, ConfigurationError, "outside 0..3"),
    ],
)
def test_user_errors_say_what_to_do(
    tiny_atlas, tmp_path: Path, kw: dict, error: type, match: str
) -> None:
    model_path, data, _ = tiny_atlas
    with pytest.raises(error, match=match):
        build_atlas(model_path, data, tmp_path / "x", **{**TINY, **kw})
    assert not (tmp_path / "x" / "atlas.json").exists()


def test_cli_builds_and_reports(
    tiny_atlas, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from onnxlens.cli import main

    model_path, data, _ = tiny_atlas
    out = tmp_path / "cli"
    argv = ["atlas", str(model_path), str(data), "--out", str(out), "--layers", "r1", "r2",
            "--channels", "2", "--steps", "3", "--no-embedding", "--no-classes", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert "2 layers, 4 channels; open" in capsys.readouterr().out
    cfg = json.loads((out / "atlas.json").read_text())
    assert cfg["channels"] == {"r1": [0, 1], "r2": [0, 1]} and cfg["steps"] == 3
    assert not list(out.glob("classes/*.html"))
    assert main([*argv[:-1], "--steps", "4", "--quiet"]) == 2  # other settings: one line, exit 2
    assert "--restart" in capsys.readouterr().err
    assert main(["atlas", str(model_path), str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_report_predictions_and_atlas_links(tiny_atlas, tmp_path: Path) -> None:
    import onnxruntime as ort

    from onnxlens.atlas.report import build_report
    from onnxlens.mining import load

    model_path, data, atlas = tiny_atlas
    ds = open_dataset(data)
    images = [data / ds.names[i] for i in (0, 5)]
    labels = tmp_path / "labels.txt"
    labels.write_text("zero <b>\nuno\ndos\ntres\n")  # markup in a label stays text
    out = tmp_path / "report"
    index = build_report(
        model_path,
        images,
        out,
        labels=labels,
        atlas=atlas.out,
        methods=["gradcam", "saliency"],
        channels=4,
    )
    html = index.read_text()
    m = Model(model_path)
    x, _ = m.prepare(images)
    logits = ort.InferenceSession(str(model_path)).run(None, {"x": x})[0]  # plain ORT
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    names = ["zero &lt;b&gt;", "uno", "dos", "tres"]
    for i in range(2):
        k = int(p[i].argmax())
        assert f"{names[k]}</td><td class='num'>{k}</td>" in html and f"{p[i, k]:.1%}" in html
    assert "zero <b>" not in html
    # The strongest atlas channel of each image per layer: its spatial max over the dataset max.
    mined = load(atlas.out / "mining")
    acts = m.activations(x, TINY["layers"])
    hrefs = re.findall(r"href='([^']*/channels/[^']*)'", html)
    for i in range(2):
        for j, layer in enumerate(TINY["layers"]):
            ratio = acts[layer][i, :4].max((1, 2)) / mined[layer]["values"][:4, 0]
            c = int(np.argmax(ratio))
            assert hrefs[i * 6 + j * 3].endswith(f"channels/{layer}/c{c:04d}.html")
    for h in hrefs:
        assert (out / h).resolve().is_file()
    with pytest.raises(ConfigurationError, match="unknown methods"):
        build_report(model_path, images, out, methods=["gradcam", "nope"])


def test_default_layers_are_a_spread_and_announced(
    tiny_atlas, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from onnxlens.methods.activations import default_layers

    model_path, data, _ = tiny_atlas
    with caplog.at_level(logging.INFO, logger="onnxlens"):
        atlas = build_atlas(
            model_path, data, tmp_path / "d", **{**TINY, "layers": None, "channels": 1, "steps": 2}
        )
    want = default_layers(Model(model_path), 4)
    assert list(atlas.config.layers) == want == ["r1", "r2"]
    assert any(
        "atlas layers" in r.getMessage() and "r1, r2" in r.getMessage() for r in caplog.records
    )


def test_report_cli(tiny_atlas, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from onnxlens.cli import main

    model_path, data, atlas = tiny_atlas
    ds = open_dataset(data)
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\n")
    out = tmp_path / "rep"
    img = str(data / ds.names[2])
    argv = ["report", str(model_path), img, "--out", str(out), "--labels", str(labels), "--methods", "none", "--atlas", str(atlas.out)]  # fmt: skip
    assert main(argv) == 0
    assert "report of 1 image(s); open" in capsys.readouterr().out
    html = (out / "index.html").read_text()
    assert "Attribution methods compared" not in html and "In the atlas" in html
    assert main([*argv[:-1], str(tmp_path)]) == 2  # --atlas a folder that holds none
    assert "holds no atlas" in capsys.readouterr().err
