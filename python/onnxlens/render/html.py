"""The one HTML layer: every page onnxlens writes (the demo report, the mining gallery, the
embedding map) is a `Page` written by a `Site`.

Safety: every value interpolated into markup goes through `esc` (``html.escape``, quotes
included), through `fmt` templates, which escape each argument, or through `Section.add` and the
helpers below, which escape plain strings. Only `Markup` (a fragment built here) passes through
unescaped. Links are relative paths, percent-encoded, checked by `url`, so a site works from
``file://`` and still works after the folder is moved or zipped.

Look: one stylesheet (`STYLESHEET`, written once per site as ``onnxlens.css``) and one small
script (`SCRIPT`, ``onnxlens.js``, only for pages that ask for it: the hover caption of the
embedding map). Images are separate files next to the pages, never inline base64, so a page
with thousands of thumbnails stays small and the browser loads them lazily.
"""

from __future__ import annotations

import html
import posixpath
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from ..errors import ConfigurationError
from .io import save_png

__all__ = [
    "SCRIPT",
    "SCRIPT_FILE",
    "STYLESHEET",
    "STYLESHEET_FILE",
    "Markup",
    "Page",
    "Section",
    "Site",
    "code",
    "esc",
    "figure",
    "fmt",
    "histogram_svg",
    "join",
    "link",
    "pager",
    "table",
    "url",
]

STYLESHEET_FILE = "onnxlens.css"
SCRIPT_FILE = "onnxlens.js"

STYLESHEET = """\
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#fafafa;color:#222;font-size:14px}
header{background:#1f2937;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cbd5e1;font-size:14px}header code{background:#374151;color:#fff}
nav{padding:8px 32px;background:#e5e7eb;font-size:14px}nav a{margin-right:16px;color:#1d4ed8}
main{padding:16px 32px;max-width:1400px}section{margin-bottom:36px}
h2{border-bottom:2px solid #d1d5db;padding-bottom:4px}h3{margin:18px 0 6px}
figure{display:inline-block;margin:6px 12px 12px 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;image-rendering:pixelated;border:1px solid #d1d5db;background:#fff}
figcaption{font-size:13px;color:#374151;max-width:480px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #d1d5db;padding:3px 8px;vertical-align:top}
th{background:#f3f4f6;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
td img{image-rendering:pixelated;max-width:100%}
code{background:#eee;padding:0 3px}pre{background:#f3f4f6;padding:10px;overflow:auto;font-size:12px}
details{margin:.5em 0}
.bar{display:inline-block;height:10px;background:#2563eb;vertical-align:middle;margin-right:6px}
.note{color:#6b7280;font-size:13px}
.map{position:relative;width:1000px;height:1000px;border:1px solid #ccc;background:#fff}
.map img{position:absolute;width:40px;height:40px;border:2px solid;box-sizing:border-box}
.map img:hover{transform:scale(3);z-index:9}
.map i{position:absolute;width:6px;height:6px;border-radius:3px}
.tip{position:sticky;top:0;z-index:10;background:#fafafa;margin:0;padding:4px 0;min-height:1.2em}
.preview{position:fixed;right:16px;top:16px;z-index:20;width:200px;background:#fff;border:1px solid #9ca3af;padding:4px}
.preview img{width:100%;display:block}
.pager a,.pager b{margin-right:8px}
figure[style]>img{width:100%}
.card{display:inline-block;vertical-align:top;margin:0 12px 14px 0;padding:6px;background:#fff;border:1px solid #e5e7eb}
.card figure{margin:0 6px 0 0}
.dead{color:#b91c1c}
svg.hist rect{fill:#2563eb}svg.hist text{font-size:10px;fill:#374151}
"""

# Why a script at all: the browser's `title` tooltip appears late and cannot be read while
# sweeping over a dense map, and it cannot show a picture. textContent (never innerHTML) keeps
# file names inert; `data-img` (a relative link the page escaped) only ever becomes an img src.
SCRIPT = """\
document.addEventListener("mouseover", function (ev) {
  var el = ev.target && ev.target.closest ? ev.target.closest("[data-tip]") : null;
  if (!el) return;
  var box = document.getElementById("tip");
  if (box) box.textContent = el.getAttribute("data-tip");
  var src = el.getAttribute("data-img"), img = document.getElementById("tipimg");
  if (img && src) { img.src = src; img.alt = el.getAttribute("data-tip"); }
});
"""


class Markup(str):
    """An HTML fragment that is already safe: built by this module, never from raw input."""

    __slots__ = ()


def esc(value: object) -> Markup:
    """`value` as HTML text (``& < > " '`` escaped); a `Markup` fragment passes unchanged."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, Markup) and not format_spec:
            return value
        return esc(format(value, format_spec))


_FORMATTER = _Formatter()


def fmt(template: str, /, *args: object, **kwargs: object) -> Markup:
    """`template.format(...)` with every argument escaped (format specs apply first), so
    ``fmt("<td>{}</td>", name)`` is safe for any `name`. The template itself is trusted."""
    return Markup(_FORMATTER.vformat(template, args, kwargs))


def join(parts: Iterable[object], sep: str = "") -> Markup:
    """Concatenate fragments, escaping any plain string among them."""
    return Markup(esc(sep).join(esc(p) for p in parts))


def url(path: str | PurePath) -> Markup:
    """A relative link to `path` inside the site, percent-encoded and escaped for an attribute.

    Absolute paths and URLs are refused: they break when the site is opened from another place
    or machine, and a page that loads from the network is not self-contained."""
    text = path.as_posix() if isinstance(path, PurePath) else str(path)
    parts = urlsplit(text)
    if parts.scheme or parts.netloc or text.startswith(("/", "\\")) or PureWindowsPath(text).drive:
        raise ConfigurationError(
            f"page links must be relative to the page, got {text!r}; pass a path inside the "
            "output folder (e.g. 'images/a.png') so the site works from file:// and when moved."
        )
    return esc(quote(text, safe="/"))


def link(href: str | PurePath, text: object, anchor: str | None = None) -> Markup:
    """A relative link; `anchor` is a fragment on the target page (kept apart from the path,
    which `url` percent-encodes, '#' included)."""
    frag = fmt("#{}", quote(anchor, safe="")) if anchor else Markup("")
    return fmt("<a href='{}{}'>{}</a>", url(href), frag, text)


def code(text: object) -> Markup:
    return fmt("<code>{}</code>", text)


def figure(src: str | PurePath, caption: object = "", width: int | None = None) -> Markup:
    """An image file (relative path) with an optional caption; `width` in CSS pixels."""
    style = fmt(" style='width:{:d}px'", int(width)) if width else Markup("")
    cap = fmt("<figcaption>{}</figcaption>", caption) if caption != "" else Markup("")
    alt = html.unescape(caption) if isinstance(caption, Markup) else caption
    return fmt(
        "<figure{}><img src='{}' alt='{}' loading='lazy'>{}</figure>", style, url(src), alt, cap
    )


def table(
    header: Sequence[object], rows: Iterable[Sequence[object]], numeric: Iterable[int] = ()
) -> Markup:
    """A table; cells are escaped unless they are `Markup`; columns in `numeric` align right."""
    num = set(numeric)
    head = join(fmt("<th>{}</th>", h) for h in header)
    body = join(
        fmt("<tr>{}</tr>", join(fmt("<td{}>{}</td>", _num(i in num), c) for i, c in enumerate(r)))
        for r in rows
    )
    return fmt("<table><tr>{}</tr>{}</table>", head, body)


def histogram_svg(
    counts: Sequence[int] | np.ndarray,
    lo: float,
    hi: float,
    width: int = 320,
    height: int = 90,
    label: str = "",
) -> Markup:
    """A bar chart of histogram `counts` over [lo, hi] as inline SVG (a few hundred bytes: no
    image file, no script), bars scaled to the largest count, with the range and the peak."""
    c = np.asarray(counts, dtype=np.float64)
    n = max(1, c.size)
    top = float(c.max()) if c.size and c.max() > 0 else 1.0
    plot_h = height - 14
    bw = width / n
    bars = join(
        fmt(
            "<rect x='{:.1f}' y='{:.1f}' width='{:.1f}' height='{:.1f}'><title>{}</title></rect>",
            i * bw,
            plot_h - v / top * plot_h,
            max(bw - 1, 0.5),
            v / top * plot_h,
            f"{lo + (hi - lo) * i / n:.3g} to {lo + (hi - lo) * (i + 1) / n:.3g}: {int(v)}",
        )
        for i, v in enumerate(c)
    )
    return fmt(
        "<svg class='hist' width='{w:d}' height='{h:d}' viewBox='0 0 {w:d} {h:d}' role='img' "
        "aria-label='{label}'>{bars}<text x='0' y='{ty:d}'>{lo}</text>"
        "<text x='{w:d}' y='{ty:d}' text-anchor='end'>{hi}</text>"
        "<text x='{mid:d}' y='{ty:d}' text-anchor='middle'>{label}</text></svg>",
        w=width,
        h=height,
        ty=height - 2,
        mid=width // 2,
        bars=bars,
        lo=f"{lo:.3g}",
        hi=f"{hi:.3g}",
        label=label or f"peak {int(top)}",
    )


def pager(current: int, total: int, href: Callable[[int], str]) -> Markup:
    """Links to pages 1..`total` of a paged listing (`href(i)`: page i's relative link, 0-based);
    the current one in bold. Empty for a single page."""
    if total <= 1:
        return Markup("")
    parts = []
    if current > 0:
        parts.append(link(href(current - 1), "« previous"))
    for i in range(total):
        parts.append(fmt("<b>{}</b>", i + 1) if i == current else link(href(i), i + 1))
    if current < total - 1:
        parts.append(link(href(current + 1), "next »"))
    return fmt("<p class='pager'>{}</p>", join(parts, sep=" "))


def _num(flag: bool) -> Markup:
    return Markup(" class='num'") if flag else Markup("")


@dataclass
class Section:
    """One titled part of a page (its own entry in the page's navigation); an untitled section
    has neither heading nor entry."""

    title: str
    anchor: str
    parts: list[Markup] = field(default_factory=list)

    def add(self, *parts: object) -> Section:
        """Append fragments; plain strings are escaped text."""
        self.parts.extend(esc(p) for p in parts)
        return self

    def text(
        self, template: str, /, *args: object, note: bool = False, **kwargs: object
    ) -> Section:
        """A paragraph from a `fmt` template (class 'note' when `note`)."""
        cls = Markup(" class='note'") if note else Markup("")
        return self.add(fmt("<p{}>{}</p>", cls, fmt(template, *args, **kwargs)))

    def heading(self, text: object, note: object = "") -> Section:
        extra = fmt(" <span class='note'>{}</span>", note) if note != "" else Markup("")
        return self.add(fmt("<h3>{}{}</h3>", text, extra))

    def row(self, *parts: object) -> Section:
        """Fragments side by side (figures wrap like words)."""
        return self.add(fmt("<div>{}</div>", join(parts)))


class Page:
    """A page: a header (title, subtitle), navigation over its titled sections, the sections.

    `script=True` links the site's script (hover captions for elements with ``data-tip``)."""

    def __init__(self, title: str, subtitle: object = "", script: bool = False) -> None:
        self.title = title
        self.subtitle = subtitle
        self.script = script
        self.sections: list[Section] = []

    def section(self, title: str = "", anchor: str | None = None) -> Section:
        sec = Section(title, anchor or f"s{len(self.sections)}")
        self.sections.append(sec)
        return sec

    def render(self, stylesheet: str = STYLESHEET_FILE, script: str = SCRIPT_FILE) -> str:
        """The document; `stylesheet` and `script` are their links relative to this page."""
        titled = [s for s in self.sections if s.title]
        nav = (
            fmt(
                "<nav>{}</nav>",
                join(fmt("<a href='#{}'>{}</a>", s.anchor, s.title) for s in titled),
            )
            if len(titled) > 1
            else Markup("")
        )
        body = join(
            fmt(
                "<section id='{}'>{}{}</section>",
                s.anchor,
                fmt("<h2>{}</h2>", s.title) if s.title else Markup(""),
                join(s.parts),
            )
            for s in self.sections
        )
        sub = fmt("<p>{}</p>", self.subtitle) if self.subtitle != "" else Markup("")
        js = fmt("<script src='{}' defer></script>", url(script)) if self.script else Markup("")
        return fmt(
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            "<title>{title}</title><link rel='stylesheet' href='{css}'>{js}</head><body>"
            "<header><h1>{title}</h1>{sub}</header>{nav}<main>{body}</main></body></html>\n",
            title=self.title,
            css=url(stylesheet),
            js=js,
            sub=sub,
            nav=nav,
            body=body,
        )


def _write_bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)


class Site:
    """A folder of pages sharing one stylesheet (and script), with relative links throughout.

    `writer(path, data)` writes each file; pass an atomic writer where a reader may race the
    writer (the mining gallery of a resumable run)."""

    def __init__(
        self, out_dir: str | Path, writer: Callable[[Path, bytes], None] | None = None
    ) -> None:
        self.out = Path(out_dir)
        self._write = writer or _write_bytes
        self._assets: set[str] = set()

    def _asset(self, name: str, text: str) -> None:
        if name not in self._assets:  # once per site, however many pages link it
            self._write(self.out / name, text.encode("utf-8"))
            self._assets.add(name)

    def write(self, page: Page, name: str = "index.html") -> Path:
        """Write `page` as `name` (relative to the site, e.g. 'index.html' or 'layers/a.html')
        and the shared assets it links; returns the page's path."""
        url(name)  # refuses absolute names
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        here = posixpath.dirname(PurePath(name).as_posix()) or "."
        self._asset(STYLESHEET_FILE, STYLESHEET)
        if page.script:
            self._asset(SCRIPT_FILE, SCRIPT)
        doc = page.render(
            stylesheet=posixpath.relpath(STYLESHEET_FILE, here),
            script=posixpath.relpath(SCRIPT_FILE, here),
        )
        self._write(path, doc.encode("utf-8"))
        return path

    def image(self, rel: str | PurePath, rgb: np.ndarray) -> str:
        """Save uint8 RGB `rgb` as the PNG `rel` inside the site (folders created); returns
        `rel` for `figure`."""
        url(rel)
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        save_png(path, rgb)
        return PurePath(rel).as_posix()
