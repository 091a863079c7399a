"""Render a page in headless Chromium and report what a reader would see, over the DevTools protocol.

Chromium (Debian's ``chromium`` package) listens on a loopback port it picks itself; the test talks
to it through a websocket: it loads the page, collects console errors, uncaught exceptions and
failed loads, checks every <img> decoded, and takes a full-page screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({
  alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})))"""


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class Rendered:
    images: list[dict[str, Any]]
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)
    title: str = ""
    screenshot: Path | None = None


class _Session:
    def __init__(self, ws_url: str, timeout: float) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == my_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if any(e.get("method") == event for e in self.events):
            return
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            self.events.append(message)
            if message.get("method") == event:
                return
        raise TimeoutError(f"no {event} within {timeout} s")

    def close(self) -> None:
        self.ws.close()


def _start(chromium: str, profile: Path) -> tuple[subprocess.Popen, int]:
    flags = [
        *("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check"),
        *("--disable-extensions", "--disable-background-networking", "--remote-debugging-address=127.0.0.1"),
        *("--remote-debugging-port=0", f"--user-data-dir={profile}"),
    ]
    proc = subprocess.Popen(
        [chromium, *flags, "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if port_file.is_file() and port_file.read_text().strip():
            return proc, int(port_file.read_text().split()[0])
        if proc.poll() is not None:
            raise RuntimeError(f"{chromium} exited with {proc.returncode} before listening")
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError(f"{chromium} did not open its DevTools port within 60 s")


def _page_socket(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
        targets = json.load(resp)
    return next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")


def render(page: Path, screenshot: Path | None = None, *, width: int = 1280, timeout: float = 60) -> Rendered:
    """Load ``page`` (a local HTML file) in headless Chromium; see the module docstring."""
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("no chromium on PATH (apt-get install chromium)")
    profile = Path(tempfile.mkdtemp(prefix="medtl-chromium-"))
    proc, port = _start(chromium, profile)
    try:
        session = _Session(_page_socket(port), timeout)
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                session.call(f"{domain}.enable")
            session.call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            session.call("Page.navigate", url=page.resolve().as_uri())
            session.wait_for("Page.loadEventFired", timeout)
            result = session.call("Runtime.evaluate", expression=IMAGES_JS, returnByValue=True)
            rendered = Rendered(images=json.loads(result["result"]["value"]))
            title = session.call("Runtime.evaluate", expression="document.title", returnByValue=True)
            rendered.title = title["result"]["value"]
            if screenshot is not None:
                metrics = session.call("Page.getLayoutMetrics")["cssContentSize"]
                shot = session.call(
                    "Page.captureScreenshot", format="png", captureBeyondViewport=True,
                    clip={"x": 0, "y": 0, "width": width, "height": metrics["height"], "scale": 1},
                )  # fmt: skip
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                rendered.screenshot = screenshot
            _collect(session.events, rendered)
        finally:
            session.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
    return rendered


def _collect(events: list[dict[str, Any]], rendered: Rendered) -> None:
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            rendered.console_errors.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            rendered.exceptions.append(params["exceptionDetails"].get("text", "exception"))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            rendered.console_errors.append(params["entry"].get("text", ""))
        elif method == "Network.loadingFailed":
            rendered.failed_loads.append(params.get("errorText", "failed"))


def screenshot_dir(default: Path) -> Path:
    """Where the browser test leaves its screenshot: $MEDTL_SCREENSHOT_DIR, else ``default``."""
    path = Path(os.environ.get("MEDTL_SCREENSHOT_DIR", default))
    path.mkdir(parents=True, exist_ok=True)
    return path
