"""Headless Chromium driven over the DevTools protocol (websocket + aiohttp, no Playwright).

    async with Chromium.launch(fake_audio=wav_path) as browser:
        page = await browser.open(url)
        await page.wait_for("document.readyState === 'complete'")
        await page.evaluate("document.getElementById('connect').click()")
        await page.set_files("#file-input", [path])              # a person choosing files
        downloads = await browser.allow_downloads(folder)          # links save into folder
        await downloads.wait_event("Browser.downloadProgress", lambda p: p["state"] == "completed")

The browser uses Debian's ``/usr/bin/chromium`` with a fake camera/microphone (the
microphone plays ``fake_audio``) and auto-accepted permission prompts.  This is the one
browser driver of the tests and benchmarks.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import aiohttp

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_path() -> str | None:
    for p in CHROMIUM_CANDIDATES:
        if Path(p).exists():
            return p
    return shutil.which("chromium")


class BrowserError(RuntimeError):
    pass


# What DevTools answers an evaluation that a navigation of its page cut short.
_NAVIGATED = ("Inspected target navigated or closed", "Execution context was destroyed",
              "Cannot find context with specified id")


@dataclass
class Connection:
    """One DevTools websocket (a page, or the browser itself): commands and events."""

    ws: aiohttp.ClientWebSocketResponse
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _pending: dict[int, asyncio.Future] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)      # {"method", "params"} in arrival order
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                self.events.append({"method": data["method"], "params": data.get("params", {})})
                self._on_event(data["method"], data.get("params", {}))
                self._arrived.set()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BrowserError("DevTools connection closed"))

    def _on_event(self, method: str, params: dict) -> None:
        pass

    async def wait_event(self, method: str, match: Callable[[dict], bool] = lambda _params: True,
                         timeout: float = 30.0) -> dict:
        """The params of the first event ``method`` (since the connection opened) that ``match``es."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event["method"] == method and match(event["params"]):
                    return event["params"]
            seen = len(self.events)
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise TimeoutError(f"no {method} event in {timeout} s") from None

    async def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        msg_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self.ws.send_json({"id": msg_id, "method": method, "params": params or {}})
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.ws.close()


@dataclass
class Page(Connection):
    """A tab: run JavaScript in it, wait on its state, fill its file inputs."""

    console: list[str] = field(default_factory=list)

    def _on_event(self, method: str, params: dict) -> None:
        if method == "Runtime.consoleAPICalled":
            args = params.get("args", [])
            self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
        elif method == "Runtime.exceptionThrown":
            self.console.append("exception: " + json.dumps(params["exceptionDetails"])[:500])

    @property
    def exceptions(self) -> list[dict]:
        """Uncaught JavaScript exceptions of the page so far."""
        return [e["params"]["exceptionDetails"] for e in self.events if e["method"] == "Runtime.exceptionThrown"]

    async def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"JS error in {expression!r}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0, interval: float = 0.1) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                value = await self.evaluate(expression)
            except BrowserError as e:
                # A page navigating (a reload the caller started) drops the evaluation under way:
                # what is waited for is on the next document, so ask again.
                if not any(m in str(e) for m in _NAVIGATED):
                    raise
                value = None
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{expression!r} still falsy after {timeout} s; console: {self.console[-5:]}")
            await asyncio.sleep(interval)

    async def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """Save a PNG of the page (the whole document when ``full_page``) to ``path``."""
        params: dict = {"format": "png"}
        if full_page:
            metrics = await self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        data = await self.send("Page.captureScreenshot", params, timeout=60)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    async def set_viewport(self, width: int, height: int, scale: float = 1.0, mobile: bool = False) -> None:
        """Emulate a screen of ``width`` x ``height`` CSS pixels (390 x 844: a phone)."""
        await self.send("Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile})

    async def press(self, key: str, *, shift: bool = False, text: str | None = None) -> None:
        """Press and release one key as a keyboard would, on the focused element: real keydown/keypress/
        keyup events, so default actions (a new line in a textarea) happen unless the page prevents them.
        ``key``: a DOM key name ("Enter", "a", ...)."""
        codes = {"Enter": ("Enter", 13, "\r"), "Escape": ("Escape", 27, ""), "Tab": ("Tab", 9, ""),
                 " ": ("Space", 32, " ")}
        code, vk, default_text = codes.get(key, (f"Key{key.upper()}" if len(key) == 1 else key,
                                                 ord(key.upper()) if len(key) == 1 else 0, key if len(key) == 1 else ""))
        typed = default_text if text is None else text
        base = {"key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk,
                "modifiers": 8 if shift else 0}
        await self.send("Input.dispatchKeyEvent", {**base, "type": "keyDown" if typed else "rawKeyDown",
                                                   **({"text": typed, "unmodifiedText": typed} if typed else {})})
        await self.send("Input.dispatchKeyEvent", {**base, "type": "keyUp"})

    async def set_files(self, selector: str, files: list[Path]) -> None:
        """Choose ``files`` in the ``<input type=file>`` at ``selector``, as a person would
        (the page gets its ``change`` event)."""
        root = (await self.send("DOM.getDocument"))["root"]["nodeId"]
        node = (await self.send("DOM.querySelector", {"nodeId": root, "selector": selector}))["nodeId"]
        if not node:
            raise BrowserError(f"no element {selector}")
        await self.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(Path(f).resolve()) for f in files]})


class Chromium:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, profile: Path, http: aiohttp.ClientSession,
                 stderr_drain: asyncio.Task | None = None) -> None:
        self.proc = proc
        self.port = port
        self.profile = profile
        self.http = http
        self.pages: list[Connection] = []
        self._stderr_drain = stderr_drain

    @classmethod
    def launch(cls, fake_audio: Path | None = None, extra_args: tuple[str, ...] = (),
               lang: str | None = None) -> "_Launcher":
        """``lang``: the browser's language (navigator.language), e.g. "zh-CN"; None: chromium's default."""
        return _Launcher(fake_audio, extra_args, lang)

    async def open(self, url: str) -> Page:
        # Quoted: a bare "#fragment" would end the DevTools URL and never reach the page.
        async with self.http.put(f"http://127.0.0.1:{self.port}/json/new?{quote(url, safe=':/?=%')}") as resp:
            target = await resp.json(content_type=None)
        ws = await self.http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        page.start()
        await page.send("Runtime.enable")
        self.pages.append(page)
        return page

    async def allow_downloads(self, folder: Path) -> Connection:
        """Save every download into ``folder``; the returned browser-level connection
        receives the ``Browser.downloadWillBegin`` / ``Browser.downloadProgress`` events."""
        async with self.http.get(f"http://127.0.0.1:{self.port}/json/version") as resp:
            version = await resp.json(content_type=None)
        conn = Connection(await self.http.ws_connect(version["webSocketDebuggerUrl"], max_msg_size=0))
        conn.start()
        self.pages.append(conn)
        await conn.send("Browser.setDownloadBehavior",
                        {"behavior": "allow", "downloadPath": str(Path(folder).resolve()), "eventsEnabled": True})
        return conn

    async def close(self) -> None:
        for page in self.pages:
            await page.close()
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._stderr_drain is not None:
            self._stderr_drain.cancel()
        await self.http.close()
        shutil.rmtree(self.profile, ignore_errors=True)


@dataclass
class _Launcher:
    fake_audio: Path | None
    extra_args: tuple[str, ...]
    lang: str | None = None
    browser: Chromium | None = None

    async def __aenter__(self) -> Chromium:
        exe = chromium_path()
        if exe is None:
            raise BrowserError("chromium is not installed (Debian package 'chromium')")
        profile = Path(tempfile.mkdtemp(prefix="lipstream-chromium-"))
        args = [
            exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--no-default-browser-check", "--mute-audio",
            f"--user-data-dir={profile}", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
            *self.extra_args,
        ]
        if self.fake_audio is not None:
            args.append(f"--use-file-for-fake-audio-capture={self.fake_audio}")
        if self.lang is not None:
            args += [f"--lang={self.lang}", f"--accept-lang={self.lang}"]
        args.append("about:blank")
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        port, drain = await _devtools_port(proc)
        self.browser = Chromium(proc, port, profile, aiohttp.ClientSession(), stderr_drain=drain)
        return self.browser

    async def __aexit__(self, *exc) -> None:
        if self.browser is not None:
            await self.browser.close()


async def _devtools_port(proc: asyncio.subprocess.Process, timeout: float = 30.0) -> tuple[int, asyncio.Task]:
    """The DevTools port chromium prints, and the task that keeps reading its stderr."""
    assert proc.stderr is not None
    pattern = re.compile(rb"DevTools listening on ws://[^:]+:(\d+)/")
    lines = []

    async def scan() -> int:
        while True:
            line = await proc.stderr.readline()
            if not line:
                raise BrowserError("chromium exited: " + b"".join(lines[-10:]).decode(errors="replace"))
            lines.append(line)
            m = pattern.search(line)
            if m:
                return int(m.group(1))

    port = await asyncio.wait_for(scan(), timeout)

    async def drain() -> None:  # keep reading so chromium never blocks on a full pipe
        while await proc.stderr.readline():
            pass

    return port, asyncio.create_task(drain())
