"""Open a map page in headless Chromium: screenshot (PNG for printed reports), JS errors, draw time.

Chromium (Debian package ``chromium``; ``scripts/ensure_browser.sh``) is driven through the
DevTools protocol over its websocket (package ``websockets``) rather than ``--screenshot``: that
way uncaught exceptions, ``console.error`` calls and failed loads are collected as events, and the
screenshot is taken only once the page says it has drawn (``data-gridmap-drawn``, set two animation
frames after ``load`` by every gridmap page, see :mod:`maps.base`).

Every run uses a fresh ``--user-data-dir`` (removed afterwards) and no network beyond what the
page itself asks for; with ``--tiles none`` the page asks for nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_ENV = "GRIDMAP_CHROMIUM"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio")

_WS_LINE = re.compile(r"DevTools listening on (ws://\S+)")


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or the page did not draw in time."""


@dataclass
class PageReport:
    """What happened when a page was opened.

    Attributes
    ----------
    errors : uncaught JS exceptions, ``console.error`` messages and error-level log entries
        (failed resource loads included), in arrival order.
    drawn_ms : milliseconds from navigation start until the page marked itself drawn (in-page clock).
    wall_s : seconds from the navigate command until the drawn mark was seen (Python clock).
    png : the screenshot (PNG bytes) or None when none was asked for.
    evaluated : the value of ``evaluate`` (a JS expression run after drawing), if given.
    """

    errors: list[str] = field(default_factory=list)
    drawn_ms: float | None = None
    wall_s: float | None = None
    png: bytes | None = None
    evaluated: object = None


def find_chromium() -> str:
    """Path of the Chromium binary (``GRIDMAP_CHROMIUM`` or ``chromium`` / ``chromium-browser`` on PATH)."""
    env = os.environ.get(CHROMIUM_ENV)
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(name)
        if p:
            return p
    raise BrowserError("headless Chromium not found: install the Debian package `chromium` "
                       "(bash scripts/ensure_browser.sh) or set GRIDMAP_CHROMIUM")


class _Cdp:
    """A minimal DevTools-protocol client over one websocket (flattened sessions)."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        import websockets

        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if "id" in msg and msg["id"] in self.pending:
                    fut = self.pending.pop(msg["id"])
                    if not fut.done():
                        fut.set_result(msg)
                elif "method" in msg:
                    self.events.append(msg)
        except websockets.ConnectionClosed:
            pass  # the browser went away (closed by us, or crashed: pending sends then time out)
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(BrowserError("Chromium closed the DevTools connection"))

    async def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60.0):
        self.next_id += 1
        mid = self.next_id
        fut = asyncio.get_running_loop().create_future()
        self.pending[mid] = fut
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})


def _event_errors(events: list[dict]) -> list[str]:
    out = []
    for ev in events:
        m, p = ev.get("method"), ev.get("params", {})
        if m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            desc = (d.get("exception") or {}).get("description") or d.get("text") or "exception"
            out.append(f"exception: {desc.splitlines()[0]}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            out.append(f"console.{p.get('type')}: {args}")
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            out.append(f"log: {e.get('text')} {e.get('url', '')}".strip())
    return out


async def _drain(stream):
    while await stream.read(65536):
        pass


async def _open(url: str, width: int, height: int, timeout_s: float, screenshot: bool, evaluate: str | None,
                settle_ms: int) -> PageReport:
    import websockets

    profile = tempfile.mkdtemp(prefix="gridmap-chromium-")
    proc = await asyncio.create_subprocess_exec(
        find_chromium(), *CHROMIUM_FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}",
        f"--window-size={width},{height}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    drain = None
    try:
        ws_url = None
        deadline = time.monotonic() + timeout_s
        while ws_url is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not open its DevTools port in time")
            line = await asyncio.wait_for(proc.stderr.readline(), left)
            if not line:
                raise BrowserError(f"Chromium exited before starting (code {await proc.wait()})")
            found = _WS_LINE.search(line.decode("utf-8", "replace"))
            if found:
                ws_url = found.group(1)
        drain = asyncio.create_task(_drain(proc.stderr))
        async with websockets.connect(ws_url, max_size=None, ping_interval=None) as ws:
            cdp = _Cdp(ws)
            target = (await cdp.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
            sid = (await cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
            for dom in ("Runtime", "Log", "Page"):
                await cdp.send(f"{dom}.enable", session=sid)
            await cdp.send("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=sid)
            report = PageReport()
            t0 = time.perf_counter()
            await cdp.send("Page.navigate", {"url": url}, session=sid)
            drawn = None
            while drawn is None:
                if time.perf_counter() - t0 > timeout_s:
                    raise BrowserError(f"the page did not draw within {timeout_s:.0f} s; errors: {_event_errors(cdp.events)}")
                r = await cdp.send("Runtime.evaluate", {
                    "expression": "document.documentElement && document.documentElement.getAttribute('data-gridmap-drawn')",
                    "returnByValue": True}, session=sid)
                drawn = r.get("result", {}).get("value")
                if drawn is None:
                    await asyncio.sleep(0.02)
            report.wall_s = time.perf_counter() - t0
            report.drawn_ms = float(drawn)
            if evaluate:
                r = await cdp.send("Runtime.evaluate", {"expression": evaluate, "returnByValue": True,
                                                        "awaitPromise": True}, session=sid, timeout=timeout_s)
                if "exceptionDetails" in r:
                    d = r["exceptionDetails"]
                    report.errors.append(f"exception: {((d.get('exception') or {}).get('description') or d.get('text'))}")
                report.evaluated = r.get("result", {}).get("value")
            if settle_ms:
                await asyncio.sleep(settle_ms / 1000.0)
            dom_err = await cdp.send("Runtime.evaluate", {
                "expression": "document.documentElement.getAttribute('data-gridmap-error')", "returnByValue": True},
                session=sid)
            if screenshot:
                shot = await cdp.send("Page.captureScreenshot", {"format": "png"}, session=sid)
                report.png = base64.b64decode(shot["data"])
            report.errors = _event_errors(cdp.events) + report.errors
            err_attr = dom_err.get("result", {}).get("value")
            if err_attr and not report.errors:
                report.errors.append(f"page error: {err_attr}")
            try:
                await cdp.send("Browser.close", timeout=5)
            except Exception:  # the browser may close the socket before answering
                pass
            cdp.reader.cancel()
        return report
    finally:
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
        if drain is not None:
            drain.cancel()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(html_path, *, width: int = 1400, height: int = 1000, timeout_s: float = 120.0, screenshot: bool = True,
              evaluate: str | None = None, settle_ms: int = 0) -> PageReport:
    """Open a local HTML file in headless Chromium and report errors, draw time and a screenshot.

    Parameters
    ----------
    html_path : the page (a file path).
    width, height : viewport in CSS pixels.
    timeout_s : give up (``BrowserError``) when the page has not drawn by then.
    screenshot : take a PNG of the viewport once drawn.
    evaluate : a JS expression run after drawing (e.g. open every popup); its value is returned.
    settle_ms : wait this long after drawing (and ``evaluate``) before the screenshot.
    """
    url = Path(html_path).resolve().as_uri()
    return asyncio.run(_open(url, width, height, timeout_s, screenshot, evaluate, settle_ms))


def render_png(html_path, png_path, *, width: int = 1600, height: int = 1100, settle_ms: int = 300,
               timeout_s: float = 120.0) -> PageReport:
    """Screenshot a map page to ``png_path`` (for printed reports); raises BrowserError on JS errors.

    ``settle_ms`` leaves online tiles a moment to arrive after the data has drawn.
    """
    report = open_page(html_path, width=width, height=height, timeout_s=timeout_s, settle_ms=settle_ms)
    js_errors = [e for e in report.errors if not e.startswith("log: Failed to load resource")]
    if js_errors:
        raise BrowserError("the map page raised errors: " + "; ".join(js_errors[:5]))
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    Path(png_path).write_bytes(report.png)
    return report
