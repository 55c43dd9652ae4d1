"""Debian's Chromium, headless, driven over the Chrome DevTools Protocol (CDP) for e2e tests.

`open_browser` starts `/usr/bin/chromium --headless` with the flags this machine needs (no
sandbox as root, no background networking: the network is closed) on a free DevTools port and
yields a `Page` for its first tab: `navigate`, `evaluate` (JavaScript, awaited), `wait_for` (a
JavaScript condition, polled) and `screenshot` (PNG bytes). CDP over trio-websocket, which the
project already depends on: no browser-driver package is needed.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from trio_websocket import WebSocketConnection, open_websocket_url

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    "--remote-debugging-port=0",
)
_LISTENING = re.compile(r"DevTools listening on (ws://127\.0\.0\.1:(\d+)/\S+)")
#: A screenshot arrives as one base64 message of a few hundred KiB.
_MAX_MESSAGE = 64 * 1024 * 1024


class Page:
    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._ws.send_message(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self._ws.get_message())
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"CDP {method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    async def navigate(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, condition: str, timeout: float = 20.0) -> Any:
        """Poll the JavaScript `condition` until it is truthy; its value. AssertionError if it
        never is."""
        deadline = trio.current_time() + timeout
        while True:
            value = await self.evaluate(condition)
            if value:
                return value
            if trio.current_time() > deadline:
                raise AssertionError(f"{condition!r} stayed false for {timeout}s")
            await trio.sleep(0.1)

    async def screenshot(self) -> bytes:
        result = await self.call("Page.captureScreenshot", format="png")
        return base64.b64decode(result["data"])


def _devtools_port(proc: subprocess.Popen[str], timeout: float = 30.0) -> int:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        match = _LISTENING.search(line)
        if match:
            # Keep reading, so a chatty browser never blocks on a full pipe.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return int(match.group(2))
    raise AssertionError(f"chromium did not start its DevTools endpoint: {''.join(seen)!r}")


@asynccontextmanager
async def open_browser() -> AsyncIterator[Page]:
    assert CHROMIUM.exists(), (
        "Debian's chromium is needed for the inspector's browser test: `./dev test` installs it "
        "(apt-get install chromium)"
    )
    profile = tempfile.mkdtemp(prefix="burrow-chromium-")
    proc = subprocess.Popen(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = await trio.to_thread.run_sync(_devtools_port, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        async with open_websocket_url(page_url, max_message_size=_MAX_MESSAGE) as ws:
            page = Page(ws)
            await page.call("Page.enable")
            yield page
    finally:
        proc.kill()
        proc.wait(timeout=20)
        shutil.rmtree(profile, ignore_errors=True)
