"""PDFs and screenshots of the HTML reports, from headless Chromium driven by Playwright.

Chromium prints the same HTML, CSS and inline SVG a reader's browser shows, so the PDF is
the report, not a second rendering of it (docs/reports.md says why it was chosen). The
system's Chromium (Debian's ``chromium``) is used, never a downloaded browser, and every
request other than the report file itself is refused, so a report cannot reach the
internet while it prints.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fedpeer.errors import FedpeerError
from fedpeer.private_files import write_private

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
INSTALL_HINT = "install it with `sudo apt-get install chromium fonts-dejavu-core`"


class ChromiumMissing(FedpeerError):
    """Headless Chromium, which prints the PDFs, is not installed."""


def find_chromium(executable: Path | None = None) -> Path:
    """The Chromium to print with; ChromiumMissing, with how to install it, when absent."""
    candidate = executable or CHROMIUM
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("chromium") if executable is None else None
    if found:
        return Path(found)
    raise ChromiumMissing(f"no Chromium at {candidate} to print PDFs: {INSTALL_HINT}")


class Printer:
    """One headless Chromium, kept open to print many reports and take screenshots."""

    def __init__(self, browser: object) -> None:
        self._browser = browser

    def _page(self, html: Path, width: int, height: int):
        page = self._browser.new_page(viewport={"width": width, "height": height})
        target = html.resolve().as_uri()

        def only_the_report(route) -> None:
            # The report is self-contained: anything else it asked for would be a defect.
            if route.request.url == target or route.request.url.startswith("data:"):
                route.continue_()
            else:
                route.abort()

        page.route("**/*", only_the_report)
        page.goto(target, wait_until="load")
        return page

    def pdf(self, html: Path, out: Path, *, slides: bool = False) -> Path:
        """Print ``html`` to ``out``: A4 portrait for reports, one 16:9 page per slide."""
        page = self._page(html, 1280 if slides else 1100, 720 if slides else 1400)
        try:
            page.emulate_media(media="print")
            printed = page.pdf(print_background=True, prefer_css_page_size=True)
        finally:
            page.close()
        return write_private(out, printed)  # it holds the practices' values: owner-only

    def screenshot(self, html: Path, out: Path, *, width: int = 1280, height: int = 900) -> Path:
        """A PNG of ``html`` as a screen shows it, the whole page."""
        page = self._page(html, width, height)
        try:
            page.screenshot(path=str(out), full_page=True)
        finally:
            page.close()
        return out


@contextmanager
def printer(executable: Path | None = None) -> Iterator[Printer]:
    """Start headless Chromium for printing; ChromiumMissing when it is not installed."""
    chromium = find_chromium(executable)
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")  # never fetch a browser
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ChromiumMissing(
            "the playwright package, which drives Chromium, is not installed: "
            "pip install 'fedpeer[coordinator]'"
        ) from None

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            yield Printer(browser)
        finally:
            browser.close()
