"""A self-contained HTML report: inline CSS, no scripts or fonts from the network, images as
relative PNG links next to index.html so they are also usable as files."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .io import save_png

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#fafafa;color:#222}
header{background:#1f2937;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cbd5e1;font-size:14px}
nav{padding:8px 32px;background:#e5e7eb;font-size:14px}nav a{margin-right:16px;color:#1d4ed8}
main{padding:16px 32px;max-width:1400px}section{margin-bottom:36px}
h2{border-bottom:2px solid #d1d5db;padding-bottom:4px}h3{margin:18px 0 6px}
figure{display:inline-block;margin:6px 12px 12px 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;image-rendering:pixelated;border:1px solid #d1d5db;background:#fff}
figcaption{font-size:13px;color:#374151;max-width:480px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #d1d5db;padding:3px 8px}
th{background:#f3f4f6;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f3f4f6;padding:10px;overflow:auto;font-size:12px}
.bar{display:inline-block;height:10px;background:#2563eb;vertical-align:middle;margin-right:6px}
.note{color:#6b7280;font-size:13px}
"""


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Save a uint8 RGB picture as PNG at `path`, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(path, rgb)


def esc(text: object) -> str:
    return html.escape(str(text))


@dataclass
class Section:
    title: str
    anchor: str
    parts: list[str] = field(default_factory=list)


class Report:
    """Collects sections of HTML and writes `index.html` into `out_dir`."""

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = title
        self.subtitle = subtitle
        self.sections: list[Section] = []

    def section(self, title: str) -> Section:
        anchor = "s" + str(len(self.sections))
        sec = Section(title, anchor)
        self.sections.append(sec)
        return sec

    @staticmethod
    def figure(src: str, caption: str = "", width: int | None = None) -> str:
        w = f' style="width:{width}px"' if width else ""
        cap = f"<figcaption>{caption}</figcaption>" if caption else ""
        return (
            f'<figure{w}><img src="{esc(src)}" alt="{esc(caption)}" loading="lazy">{cap}</figure>'
        )

    @staticmethod
    def table(header: list[str], rows: list[list[object]], numeric: set[int] | None = None) -> str:
        numeric = numeric or set()
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join(
            "<tr>"
            + "".join(
                f'<td class="num">{esc(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>"
                for i, c in enumerate(r)
            )
            + "</tr>"
            for r in rows
        )
        return f"<table><tr>{head}</tr>{body}</table>"

    def render(self) -> str:
        nav = "".join(f'<a href="#{s.anchor}">{esc(s.title)}</a>' for s in self.sections)
        body = "".join(
            f'<section id="{s.anchor}"><h2>{esc(s.title)}</h2>{"".join(s.parts)}</section>'
            for s in self.sections
        )
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{esc(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{esc(self.title)}</h1><p>{esc(self.subtitle)}</p></header>"
            f"<nav>{nav}</nav><main>{body}</main></body></html>"
        )

    def write(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "index.html"
        path.write_text(self.render(), encoding="utf-8")
        return path
