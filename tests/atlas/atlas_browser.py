"""Headless Chromium over a static site: every page reachable from the index, every link, every
image, the console (plain functions; the fixtures live in the test modules)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest


def chromium_or_skip() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does)")
    pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    return exe


@dataclass
class Crawl:
    pages: list[Path] = field(default_factory=list)
    broken_links: list[tuple[str, str]] = field(default_factory=list)
    broken_images: list[tuple[str, str]] = field(default_factory=list)
    console_errors: list[tuple[str, str]] = field(default_factory=list)
    images_checked: int = 0
    links_checked: int = 0


def crawl(browser, root: Path, start: str = "index.html") -> Crawl:
    """Open every page reachable from `root`/`start` by relative links (file:// URLs) without
    leaving `root`, wait for every image (lazy ones made eager), and record what failed."""
    res = Crawl()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    current = {"url": ""}
    page.on(
        "console",
        lambda m: (
            res.console_errors.append((current["url"], m.text)) if m.type == "error" else None
        ),
    )
    page.on("pageerror", lambda e: res.console_errors.append((current["url"], str(e))))
    todo, seen = [(root / start).resolve()], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        res.pages.append(path)
        current["url"] = path.as_uri()
        page.goto(path.as_uri())
        # Lazy images load only near the viewport: make every one eager, then wait for them.
        page.evaluate("document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; })")
        page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=30_000)
        for src, w in page.evaluate(
            "Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])"
        ):
            res.images_checked += 1
            if not w:
                res.broken_images.append((path.name, src))
        for href in page.evaluate("Array.from(document.links).map(a => a.getAttribute('href'))"):
            parts = urlsplit(href)
            if parts.scheme or parts.netloc:
                res.broken_links.append((str(path), href))  # the site must not leave itself
                continue
            if not parts.path:  # an anchor on this page
                continue
            res.links_checked += 1
            target = (path.parent / unquote(parts.path)).resolve()
            if not target.is_file() or root.resolve() not in target.parents:
                res.broken_links.append((str(path), href))
            elif target.suffix == ".html":
                todo.append(target)
    page.close()
    return res
