"""The HTML layer: hostile text stays text, links stay relative, one stylesheet per site.

Pages are read back with the standard library's HTML parser (an independent reader), so the
checks are about what a browser would see, not about the strings this module builds."""

from __future__ import annotations

import posixpath
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np
import pytest

from onnxlens.errors import ConfigurationError
from onnxlens.render.html import (
    SCRIPT_FILE,
    STYLESHEET,
    STYLESHEET_FILE,
    Markup,
    Page,
    Site,
    esc,
    figure,
    fmt,
    link,
    table,
    url,
)

HOSTILE = [
    "<script>alert(1)</script>",
    "\"quoted\" & 'single' <b>",
    "a&amp;b",  # already looks escaped: must come back literally, not as "a&b"
    "'><img src=x onerror=alert(1)>",
]


class Reader(HTMLParser):
    """Elements (tag, attrs) in order, and the text inside each tag of interest."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.text: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag not in ("img", "meta", "link", "br"):
            self.stack.append(tag)
            self.text.setdefault(tag, []).append("")

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack:
            self.text[self.stack[-1]][-1] += data

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if t == name]


def read(doc: str) -> Reader:
    r = Reader()
    r.feed(doc)
    r.close()
    return r


def hostile_page(bad: str) -> Page:
    page = Page(bad, subtitle=bad)
    sec = page.section(bad)
    sec.add(figure("images/a.png", bad, 200))
    sec.add(table([bad, "n"], [[bad, 1.5], [Markup("<i>ok</i>"), 2]], numeric={1}))
    sec.text("value {} and {:.2f}", bad, 1.234567)
    sec.heading(bad, bad)
    sec.add(bad)  # a plain string is text
    page.section("second")
    return page


@pytest.mark.parametrize("bad", HOSTILE)
def test_hostile_text_is_text(bad: str) -> None:
    r = read(hostile_page(bad).render())
    assert r.text["title"] == [bad]
    assert r.text["h1"] == [bad]
    assert r.text["h2"][0] == bad
    assert r.text["figcaption"] == [bad]
    assert r.text["th"][0] == bad
    assert r.text["td"][0] == bad
    assert r.tags("img")[0]["alt"] == bad
    assert r.text["p"][:2] == [bad, f"value {bad} and 1.23"]
    assert [t.strip() for t in r.text["h3"]] == [bad]  # its note is the span inside
    assert r.text["span"] == [bad]
    # The section's nav entry is text too.
    assert r.text["a"] == [bad, "second"]
    # Nothing the input tried to inject became an element.
    assert not r.tags("script") and not r.tags("b")
    assert all("onerror" not in attrs for attrs in r.tags("img"))
    # The table's Markup cell is the one fragment that passes through as markup.
    assert r.text["i"] == ["ok"]
    assert {a.get("class") for a in r.tags("td")} == {None, "num"}


def test_esc_fmt_and_markup() -> None:
    assert esc("<a href='x'>&</a>") == "&lt;a href=&#x27;x&#x27;&gt;&amp;&lt;/a&gt;"
    assert esc(Markup("<b>")) == "<b>"
    assert esc(esc("&")) == "&amp;"  # not escaped twice
    assert fmt("<td>{}</td><td>{n:.1%}</td>", "<x>", n=0.5) == "<td>&lt;x&gt;</td><td>50.0%</td>"
    assert fmt("{}", Markup("<br>")) == "<br>"
    assert isinstance(fmt("{}", 1), Markup)


@pytest.mark.parametrize(
    "bad",
    [
        "/etc/passwd",
        "http://example.com/a.png",
        "https://example.com/a.png",
        "file:///tmp/a.png",
        "//example.com/a.png",
        "C:\\images\\a.png",
        "C:/images/a.png",
        "\\\\server\\share\\a.png",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
    ],
)
def test_absolute_links_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="relative"):
        url(bad)
    with pytest.raises(ConfigurationError):
        figure(bad)
    with pytest.raises(ConfigurationError):
        link(bad, "x")


@pytest.mark.parametrize(
    ("path", "encoded"),
    [
        ("images/a.png", "images/a.png"),
        ("my images/a b.png", "my%20images/a%20b.png"),
        ("a#1?.png", "a%231%3F.png"),  # would otherwise start a fragment / query
        ("chat/é.png", "chat/%C3%A9.png"),
        ("../onnxlens.css", "../onnxlens.css"),
        ("q'\"<.png", "q%27%22%3C.png"),
    ],
)
def test_links_are_percent_encoded(path: str, encoded: str) -> None:
    assert url(path) == encoded
    assert unquote(encoded) == path


def all_links(doc: str) -> list[str]:
    r = read(doc)
    return [
        v
        for _, attrs in r.elements
        for k, v in attrs.items()
        if k in ("href", "src") and v is not None
    ]


def test_site_writes_one_stylesheet_linked_from_every_page(tmp_path: Path) -> None:
    written: list[Path] = []

    def writer(path: Path, data: bytes) -> None:
        written.append(path)
        path.write_bytes(data)

    site = Site(tmp_path / "site", writer=writer)
    rgb = np.random.default_rng(0).integers(0, 255, (6, 7, 3), dtype=np.uint8)
    pages = {}
    for name in ("index.html", "map.html", "layers/deep/a b.html"):
        page = Page(name, script=name == "map.html")
        sec = page.section("pictures")
        src = site.image(f"img/{Path(name).stem}.png", rgb)
        rel = posixpath.relpath(src, posixpath.dirname(name) or ".")
        home = posixpath.relpath("index.html", posixpath.dirname(name) or ".")
        sec.add(figure(rel, "caption"), link(home, "home"))
        pages[name] = site.write(page, name)

    out = tmp_path / "site"
    assert written.count(out / STYLESHEET_FILE) == 1
    assert (out / STYLESHEET_FILE).read_text() == STYLESHEET
    assert written.count(out / SCRIPT_FILE) == 1  # one page asked for it
    assert "<style" not in (out / "index.html").read_text()  # no inline copies
    for name, path in pages.items():
        doc = path.read_text()
        links = all_links(doc)
        css = [a["href"] for a in read(doc).tags("link") if a.get("rel") == "stylesheet"]
        assert len(css) == 1
        assert (path.parent / unquote(css[0] or "")).resolve() == (out / STYLESHEET_FILE).resolve()
        scripts = [a["src"] for a in read(doc).tags("script")]
        assert len(scripts) == (name == "map.html")
        for href in links:
            parts = urlsplit(href)
            assert not parts.scheme and not parts.netloc and not href.startswith("/")
            if not href.startswith("#"):
                target = (path.parent / unquote(href)).resolve()
                assert target.is_file() and out.resolve() in target.parents, href
        # Images are files beside the pages, not inline data.
        assert "base64" not in doc
    back = cv2.imread(str(out / "img" / "index.png"), cv2.IMREAD_UNCHANGED)
    assert back is not None
    np.testing.assert_array_equal(back[:, :, ::-1], rgb)


def test_site_without_script_writes_none(tmp_path: Path) -> None:
    Site(tmp_path).write(Page("t"))
    assert (tmp_path / STYLESHEET_FILE).is_file() and not (tmp_path / SCRIPT_FILE).exists()


def test_site_refuses_absolute_page_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        Site(tmp_path).write(Page("t"), "/tmp/x.html")
    with pytest.raises(ConfigurationError):
        Site(tmp_path).image("/tmp/x.png", np.zeros((2, 2, 3), np.uint8))


def test_navigation_lists_titled_sections_with_their_anchors() -> None:
    page = Page("t")
    page.section().add("intro")  # untitled: no heading, no nav entry
    page.section("conv 1", anchor="conv1-0123")
    page.section("relu")
    r = read(page.render())
    assert [a["href"] for a in r.tags("a")] == ["#conv1-0123", "#s2"]
    assert [a["id"] for a in r.tags("section")] == ["s0", "conv1-0123", "s2"]
    assert r.text["h2"] == ["conv 1", "relu"]
    single = read(Page("t").render())
    assert not single.tags("nav")
