"""Headless Chromium for tests that look at a page as a person would: the Chrome DevTools Protocol over the
``--remote-debugging-pipe`` pipes (file descriptors 3 and 4, messages separated by NUL), so no port, no
websocket library and no downloaded browser: Debian's ``chromium`` (``.ci/run`` installs it).

>>> with Browser.start() as browser:                                  # doctest: +SKIP
...     page = browser.open(Path("report.html").resolve().as_uri())
...     page.evaluate("document.title"), page.errors
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe")
TIMEOUT = 30.0


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or did not answer in time."""


def find_chromium() -> str | None:
    """The Chromium binary (``MIM_CHROMIUM`` or Debian's), or None."""
    for candidate in (os.environ.get("MIM_CHROMIUM"), *CANDIDATES, shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class Page:
    """One tab: what it logged as errors, and a way to run an expression in it."""

    browser: "Browser"
    session: str
    errors: list[str] = field(default_factory=list)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.send(method, params, self.session)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` evaluated in the page."""
        answer = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise BrowserError(f"evaluating failed: {answer['exceptionDetails'].get('text')}")
        return answer["result"].get("value")

    def screenshot(self, path: Path, width: int = 1200) -> None:
        """A PNG of the whole page, ``width`` CSS pixels wide."""
        height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))


def _high(pair: tuple[int, int]) -> tuple[int, int]:
    """The pipe's ends moved to close-on-exec descriptors above 9."""
    out = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in pair)
    for fd in pair:
        os.close(fd)
    return out[0], out[1]


class Browser:
    """A headless Chromium process driven over its DevTools pipes."""

    def __init__(self, binary: str) -> None:
        self._root = tempfile.TemporaryDirectory(prefix="mim-chromium-")
        self._log = open(Path(self._root.name) / "stderr.log", "wb")  # a pipe nobody reads could fill and block it
        to_child_r, self._to_child = _high(os.pipe())
        self._from_child, from_child_w = _high(os.pipe())

        def fds() -> None:  # the child reads commands on fd 3 and writes answers on fd 4 (dup2: inherited)
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        # close_fds=False: the pipes are close-on-exec (above 9, out of the way of 3 and 4), only 3 and 4 pass
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={Path(self._root.name) / 'profile'}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log, close_fds=False, preexec_fn=fds)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next = 0
        self._events: list[dict[str, Any]] = []

    @classmethod
    def start(cls) -> "Browser":
        """Start Debian's Chromium, or raise :class:`BrowserError` saying why it cannot be had."""
        binary = find_chromium()
        if binary is None:
            raise BrowserError("no Chromium: apt-get install -y chromium (or set MIM_CHROMIUM)")
        browser = cls(binary)
        try:
            browser.send("Browser.getVersion", {})
        except BrowserError:
            browser.close()
            raise
        return browser

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 16)
                if not chunk:
                    log = (Path(self._root.name) / "stderr.log").read_bytes().decode("utf-8", "replace")
                    raise BrowserError(f"Chromium closed its pipe: {log[-500:]}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any], session: str | None = None) -> dict[str, Any]:
        """Send one command and wait for its answer (events that arrive meanwhile are kept)."""
        self._next += 1
        ident = self._next
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._to_child, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            log = (Path(self._root.name) / "stderr.log").read_bytes().decode("utf-8", "replace")
            raise BrowserError(f"Chromium is not running: {log[-500:]}") from None
        deadline = time.monotonic() + TIMEOUT
        while True:
            answer = self._read(deadline)
            if answer.get("id") == ident:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error'].get('message')}")
                return answer.get("result", {})
            self._events.append(answer)

    def wait_for(self, method: str, session: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next event ``method`` of ``session``."""
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self._events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self._events.pop(index)
            self._events.append(self._read(deadline))

    def open(self, url: str, width: int = 1200, height: int = 900) -> Page:
        """A new tab showing ``url`` once loaded; its console errors, uncaught exceptions and failed loads are
        collected in :attr:`Page.errors`."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        page.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        page.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired", session)
        page.evaluate("1")  # a round trip, so the events of the load have arrived
        for event in [e for e in self._events if e.get("sessionId") == session]:
            params = event.get("params", {})
            if event["method"] == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                page.errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif event["method"] == "Runtime.exceptionThrown":
                page.errors.append(str(params.get("exceptionDetails", {}).get("text")))
            elif event["method"] == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                page.errors.append(str(params["entry"].get("text")))
        return page

    def close(self) -> None:
        """Stop Chromium and remove its profile."""
        try:
            os.close(self._to_child)
        except OSError:
            pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
        try:
            os.close(self._from_child)
        except OSError:
            pass
        self._root.cleanup()


__all__ = ["Browser", "BrowserError", "Page", "find_chromium"]
