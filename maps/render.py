"""Open a map page in headless Chromium: screenshot (PNG for printed reports), JS errors, draw time.

Chromium (the Debian package ``chromium``; ``scripts/ensure_browser.sh``) is driven by Playwright
(``playwright.sync_api``) through ``executable_path``, so no browser is downloaded. Uncaught
exceptions, ``console.error`` calls and failed loads are collected as events, and the screenshot is
taken only once the page says it has drawn (``data-gridmap-drawn``, set two animation frames after
the DOM is ready by every gridmap page, see :mod:`maps.base`).

Every run uses a fresh browser context (nothing kept between runs) and no network beyond what the
page itself asks for; with ``--tiles none`` the page asks for nothing. The Chromium path is an
argument: the faces take it from the settings (``api.settings``); this module reads no environment.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Flags for a quiet, sandbox-free headless Chromium (containers run it as root; no phoning home).
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run")

_DRAWN_JS = "() => document.documentElement && document.documentElement.getAttribute('data-gridmap-drawn')"
_ERROR_ATTR_JS = "() => document.documentElement.getAttribute('data-gridmap-error')"


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or the page did not draw in time."""


@dataclass
class PageReport:
    """What happened when a page was opened.

    Attributes
    ----------
    errors : uncaught JS exceptions, ``console.error`` messages and failed resource loads, in
        arrival order.
    drawn_ms : milliseconds from navigation start until the page marked itself drawn (in-page clock).
    wall_s : seconds from navigation until the drawn mark was seen (Python clock).
    png : the screenshot (PNG bytes) or None when none was asked for.
    evaluated : the value of ``evaluate`` (a JS expression run after drawing), if given.
    """

    errors: list[str] = field(default_factory=list)
    drawn_ms: float | None = None
    wall_s: float | None = None
    png: bytes | None = None
    evaluated: object = None


def find_chromium(chromium: str | None = None) -> str:
    """Path of the Chromium binary: ``chromium`` when given, else ``chromium`` / ``chromium-browser`` on PATH."""
    if chromium:
        return chromium
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserError("headless Chromium not found: install the Debian package `chromium` "
                       "(bash scripts/ensure_browser.sh) or set GRIDMAP_CHROMIUM")


def _console_error(message) -> str | None:
    """An error line for a console message, or None for other levels (failed loads are ``log:`` lines)."""
    if message.type not in ("error", "assert"):
        return None
    text = message.text
    if text.startswith("Failed to load resource"):
        return f"log: {text} {message.location.get('url', '')}".strip()
    return f"console.{message.type}: {text}"


def _collect_errors(page, errors: list[str]) -> None:
    """Append every page error, console error and failed request of ``page`` to ``errors``."""
    page.on("pageerror", lambda exc: errors.append(f"exception: {str(exc).splitlines()[0] if str(exc) else exc}"))

    def on_console(message) -> None:
        line = _console_error(message)
        if line:
            errors.append(line)

    page.on("console", on_console)
    page.on("requestfailed", lambda req: errors.append(f"log: Failed to load resource: {req.failure} {req.url}"))


def _wait_drawn(page, timeout_s: float, errors: list[str]) -> float:
    """Milliseconds (page clock) at which the page marked itself drawn; BrowserError after ``timeout_s``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        handle = page.wait_for_function(_DRAWN_JS, timeout=timeout_s * 1000, polling=20)
    except PlaywrightTimeout:
        raise BrowserError(f"the page did not draw within {timeout_s:.0f} s; errors: {errors}") from None
    return float(handle.json_value())


def _visit(page, url: str, timeout_s: float, screenshot: bool, evaluate: str | None, settle_ms: int) -> PageReport:
    """Open ``url`` in ``page`` and fill a :class:`PageReport`."""
    from playwright.sync_api import Error as PlaywrightError

    report = PageReport()
    _collect_errors(page, report.errors)
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
    report.drawn_ms = _wait_drawn(page, timeout_s, report.errors)
    report.wall_s = time.perf_counter() - t0
    if evaluate:
        try:
            report.evaluated = page.evaluate(evaluate)
        except PlaywrightError as e:  # the expression threw: report it like any page exception
            report.errors.append(f"exception: {e.message.splitlines()[0]}")
    if settle_ms:
        page.wait_for_timeout(settle_ms)
    error_mark = page.evaluate(_ERROR_ATTR_JS)
    if screenshot:
        report.png = page.screenshot(type="png")
    if error_mark and not report.errors:
        report.errors.append(f"page error: {error_mark}")
    return report


def open_page(html_path, *, chromium: str | None = None, width: int = 1400, height: int = 1000,
              timeout_s: float = 120.0, screenshot: bool = True, evaluate: str | None = None,
              settle_ms: int = 0) -> PageReport:
    """Open a local HTML file in headless Chromium and report errors, draw time and a screenshot.

    Parameters
    ----------
    html_path : the page (a file path).
    chromium : path of the Chromium binary (default: ``chromium`` on PATH).
    width, height : viewport in CSS pixels.
    timeout_s : give up (``BrowserError``) when the page has not drawn by then.
    screenshot : take a PNG of the viewport once drawn.
    evaluate : a JS expression run after drawing (e.g. open every popup); its value is returned.
    settle_ms : wait this long after drawing (and ``evaluate``) before the screenshot.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    url = Path(html_path).resolve().as_uri()
    executable = find_chromium(chromium)
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS), headless=True,
                                         timeout=timeout_s * 1000)
        except PlaywrightError as e:
            raise BrowserError(f"Chromium did not start ({executable}): {e.message.splitlines()[0]}") from None
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
            return _visit(page, url, timeout_s, screenshot, evaluate, settle_ms)
        finally:
            browser.close()


def render_png(html_path, png_path, *, chromium: str | None = None, width: int = 1600, height: int = 1100,
               settle_ms: int = 300, timeout_s: float = 120.0) -> PageReport:
    """Screenshot a map page to ``png_path`` (for printed reports); raises BrowserError on JS errors.

    ``settle_ms`` leaves online tiles a moment to arrive after the data has drawn.
    """
    report = open_page(html_path, chromium=chromium, width=width, height=height, timeout_s=timeout_s,
                       settle_ms=settle_ms)
    js_errors = [e for e in report.errors if not e.startswith("log: Failed to load resource")]
    if js_errors:
        raise BrowserError("the map page raised errors: " + "; ".join(js_errors[:5]))
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    Path(png_path).write_bytes(report.png)
    return report
