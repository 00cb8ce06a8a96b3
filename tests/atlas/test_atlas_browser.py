"""A small atlas of EfficientNet-Lite0 in a real browser (headless Chromium through Playwright,
the system's `chromium`, nothing downloaded): every link resolves, every image loads, the
console stays clean, the embedding map's hover shows the image; plus the atlas' numbers against
plain `Model.activations`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from atlas_browser import chromium_or_skip, crawl
from atlas_data import LITE_LAYERS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    exe = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield b
        b.close()


def test_every_link_and_image_of_the_site_works(lite_atlas, browser, tmp_path: Path) -> None:
    _, _, atlas = lite_atlas
    res = crawl(browser, atlas.out)
    names = {p.relative_to(atlas.out.resolve()).as_posix() for p in res.pages}
    # index, 2 layer pages, 16 channel pages, the classes, the embedding map, the mining gallery
    assert {"index.html", "embedding.html", "mining/index.html"} <= names
    assert len([n for n in names if n.startswith("channels/")]) == 16
    assert len([n for n in names if n.startswith("layers/")]) == 2
    assert (
        len([n for n in names if n.startswith("classes/")])
        == len(list((atlas.out / "data" / "classes").glob("class*.png")))
        > 0
    )
    assert res.broken_links == [] and res.links_checked > 100
    assert res.broken_images == [] and res.images_checked > 100
    assert res.console_errors == []
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto((atlas.out / "index.html").resolve().as_uri())
    shot = tmp_path / "atlas-index.png"
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[1] == 1400 and img.std() > 10  # not a blank page
    print(f"screenshot of the atlas index: {shot}")


def test_embedding_map_hover_shows_the_image(lite_atlas, browser) -> None:
    _, _, atlas = lite_atlas
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto((atlas.out / "embedding.html").resolve().as_uri())
    points = page.locator(".map i[data-img]")
    assert points.count() == 12  # every image of DATA is a point with a thumbnail
    before = page.get_attribute("#tipimg", "src")
    for k in (points.count() - 1, 3):  # two points, so the preview really follows the mouse
        points.nth(k).hover()
        want = points.nth(k).get_attribute("data-img")
        page.wait_for_function(
            "([w]) => { const i = document.getElementById('tipimg'); "
            "return i.getAttribute('src') === w && i.complete && i.naturalWidth > 0; }",
            arg=[want],
        )
        assert page.text_content("#tip") == points.nth(k).get_attribute("data-tip")
    assert page.get_attribute("#tipimg", "src") != before or points.count() == 1
    assert errors == []
    page.close()


def test_site_numbers_match_plain_activations(lite_atlas) -> None:
    """Dataset max and visualisation score recomputed with plain Model.activations over DATA and
    over the saved visualisation PNGs (fitted to the model input as the atlas scores them)."""
    from onnxlens.atlas import layer_summary
    from onnxlens.mining import open_dataset
    from onnxlens.render.io import safe_filename

    model, data, atlas = lite_atlas
    ds = open_dataset(data)
    fitted = np.stack([model.preprocess.fit(ds.read(i)) for i in range(len(ds))])
    acts = model.activations(model.preprocess.to_tensor(fitted), LITE_LAYERS)
    for layer in LITE_LAYERS:
        summary = layer_summary(atlas.out, layer)
        d = atlas.out / "data" / "vis" / safe_filename(layer)
        for e in summary["channels"]:
            c = e["channel"]
            assert e["dataset_max"] == pytest.approx(float(acts[layer][:, c].max()), rel=1e-5)
            vis = cv2.imread(str(d / f"c{c:04d}.png"))[:, :, ::-1]
            x = model.preprocess.to_tensor(model.preprocess.fit(vis)[None])
            own = float(model.activations(x, [layer])[layer][0, c].max())
            assert e["visualisation_score"] == pytest.approx(own, rel=1e-4, abs=1e-5)
            assert e["ratio"] == pytest.approx(own / e["dataset_max"], rel=1e-4)


def test_report_linked_into_the_atlas_works_in_the_browser(lite_atlas, browser, photos) -> None:
    from onnxlens.atlas.report import build_report

    model, _, atlas = lite_atlas
    root = atlas.out.parent
    index = build_report(
        model,
        photos[:2],
        root / "report",
        names=["cat", "coffee"],
        atlas=atlas.out,
        methods=["gradcam"],
    )
    html = index.read_text()
    assert "Egyptian cat" in html and "espresso" in html  # ImageNet names for a 1,000-class output
    res = crawl(browser, root, "report/index.html")  # the report, then the atlas through its links
    names = {p.relative_to(root.resolve()).as_posix() for p in res.pages}
    assert "report/index.html" in names and "site/index.html" in names
    assert any(n.startswith("site/channels/") for n in names)
    assert res.broken_links == [] and res.broken_images == [] and res.console_errors == []
