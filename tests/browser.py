"""Headless Chromium for tests: Debian's browser driven by Playwright, no network."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-dev-shm-usage",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "out" / "screenshots"


@dataclass
class PageLog:
    """What a page did: console errors and requests that tried to leave the machine."""

    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)


def _local(url: str) -> bool:
    return url.startswith(("file:", "data:", "blob:", "about:")) or url.split("/")[2].split(":")[0] in (
        "127.0.0.1", "localhost") if "://" in url else True


@contextmanager
def browser_page(*, width: int = 1280, height: int = 800) -> Iterator[tuple[object, PageLog]]:
    """A page in headless Chromium whose requests off this machine are blocked and logged."""
    from playwright.sync_api import sync_playwright

    log = PageLog()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: log.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: log.console_errors.append(str(e)))

            def route(r):
                if _local(r.request.url):
                    r.continue_()
                else:
                    log.external_requests.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            yield page, log
        finally:
            browser.close()


def painted_fraction(png: bytes) -> float:
    """Share of pixels that differ from the most common colour (0 = blank canvas)."""
    import io

    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    colors, counts = np.unique(img, axis=0, return_counts=True)
    return 1.0 - counts.max() / counts.sum()
