"""The pieces the atlas added to the one HTML layer: histogram bars, the pager, anchors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from onnxlens.render.html import SCRIPT, histogram_svg, link, pager


def test_histogram_bars_are_proportional_and_text_is_escaped() -> None:
    counts = np.array([0, 5, 10, 2])
    svg = histogram_svg(counts, -1.0, 3.0, width=200, height=74, label="<b>x</b>")
    heights = [float(h) for h in re.findall(r"<rect [^>]*height='([0-9.]+)'", svg)]
    assert len(heights) == 4
    np.testing.assert_allclose(heights, counts / 10 * 60, atol=0.05)  # plot height 74 - 14
    titles = re.findall(r"<title>([^<]*)</title>", svg)
    assert titles[1] == "0 to 1: 5"  # bin edges from lo..hi
    assert "<b>x</b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg


def test_histogram_of_an_empty_channel_draws_flat() -> None:
    svg = histogram_svg(np.zeros(3, int), 0.0, 0.0)
    assert [float(h) for h in re.findall(r"height='([0-9.]+)'>", svg)] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(("current", "total"), [(0, 3), (1, 3), (2, 3)])
def test_pager_links_every_other_page(current: int, total: int) -> None:
    html = pager(current, total, lambda i: f"p{i}.html")
    assert re.findall(r"<b>(\d+)</b>", html) == [str(current + 1)]
    hrefs = re.findall(r"href='([^']+)'", html)
    others = [f"p{i}.html" for i in range(total) if i != current]
    assert sorted(set(hrefs)) == sorted(others)
    assert ("previous" in html) == (current > 0) and ("next" in html) == (current < total - 1)


def test_single_page_needs_no_pager() -> None:
    assert pager(0, 1, lambda i: "x.html") == ""


def test_anchor_stays_a_fragment_while_a_hash_in_the_path_is_encoded() -> None:
    assert link("layers/a#b.html", "t", anchor="c3") == "<a href='layers/a%23b.html#c3'>t</a>"


def test_hover_script_only_sets_text_and_image_sources() -> None:
    assert "innerHTML" not in SCRIPT and "textContent" in SCRIPT and "img.src = src" in SCRIPT
