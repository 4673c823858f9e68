"""Headless Chromium driven over the DevTools protocol (websocket + aiohttp, no Playwright).

    async with Chromium.launch(fake_audio=wav_path) as browser:
        page = await browser.open(url)
        await page.wait_for("document.readyState === 'complete'")
        await page.evaluate("document.getElementById('connect').click()")

The browser uses Debian's ``/usr/bin/chromium`` with a fake camera/microphone (the
microphone plays ``fake_audio``) and auto-accepted permission prompts.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_path() -> str | None:
    for p in CHROMIUM_CANDIDATES:
        if Path(p).exists():
            return p
    return shutil.which("chromium")


class BrowserError(RuntimeError):
    pass


@dataclass
class Page:
    ws: aiohttp.ClientWebSocketResponse
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _pending: dict[int, asyncio.Future] = field(default_factory=dict)
    console: list[str] = field(default_factory=list)
    _reader: asyncio.Task | None = None

    def start(self) -> None:
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console.append("exception: " + json.dumps(data["params"]["exceptionDetails"])[:500])
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BrowserError("DevTools connection closed"))

    async def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        msg_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self.ws.send_json({"id": msg_id, "method": method, "params": params or {}})
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

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
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{expression!r} still falsy after {timeout} s; console: {self.console[-5:]}")
            await asyncio.sleep(interval)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.ws.close()


class Chromium:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, profile: Path, http: aiohttp.ClientSession) -> None:
        self.proc = proc
        self.port = port
        self.profile = profile
        self.http = http
        self.pages: list[Page] = []

    @classmethod
    def launch(cls, fake_audio: Path | None = None, extra_args: tuple[str, ...] = ()) -> "_Launcher":
        return _Launcher(fake_audio, extra_args)

    async def open(self, url: str) -> Page:
        async with self.http.put(f"http://127.0.0.1:{self.port}/json/new?{url}") as resp:
            target = await resp.json(content_type=None)
        ws = await self.http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        page.start()
        await page.send("Runtime.enable")
        self.pages.append(page)
        return page

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
        await self.http.close()
        shutil.rmtree(self.profile, ignore_errors=True)


@dataclass
class _Launcher:
    fake_audio: Path | None
    extra_args: tuple[str, ...]
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
        args.append("about:blank")
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        port = await _devtools_port(proc)
        self.browser = Chromium(proc, port, profile, aiohttp.ClientSession())
        return self.browser

    async def __aexit__(self, *exc) -> None:
        if self.browser is not None:
            await self.browser.close()


async def _devtools_port(proc: asyncio.subprocess.Process, timeout: float = 30.0) -> int:
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

    asyncio.ensure_future(drain())
    return port
