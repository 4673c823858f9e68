"""Headless Chromium drives the Studio view like a person: choose an audio and two
videos, start, watch the batch finish, download the ZIP.

Debian's chromium is driven over its DevTools websocket with aiohttp (no browser
download, no Playwright).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import aiohttp
import pytest

from testing.studio_helpers import ServerProcess, check_mp4, checkpoint_for_tests, make_media

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed"),
]


class DevTools:
    """Just enough of the Chrome DevTools Protocol: commands, and events by name."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.proc: subprocess.Popen | None = None
        self.http: aiohttp.ClientSession | None = None
        self.ws = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self.events: list[dict] = []
        self._reader: asyncio.Task | None = None

    async def start(self) -> None:
        port_file = self.profile / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)  # a stale one from an earlier run names a dead port
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start")
            await asyncio.sleep(0.1)
        port, path = port_file.read_text().split("\n")[:2]
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            else:
                self.events.append(data)

    async def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        msg_id = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.send_json(msg)
        reply = await asyncio.wait_for(fut, 60)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Page:
    def __init__(self, tools: DevTools, session: str) -> None:
        self.tools = tools
        self.session = session

    async def send(self, method: str, params: dict | None = None) -> dict:
        return await self.tools.send(method, params, self.session)

    async def js(self, expression: str):
        reply = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                     "awaitPromise": True})
        if "exceptionDetails" in reply:
            raise RuntimeError(f"JS error in {expression!r}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_js(self, expression: str, timeout: float = 30.0, every: float = 0.2):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(every)
        raise AssertionError(f"timed out waiting for {expression}")

    async def set_files(self, selector: str, files: list[Path]) -> None:
        root = (await self.send("DOM.getDocument"))["root"]["nodeId"]
        node = (await self.send("DOM.querySelector", {"nodeId": root, "selector": selector}))["nodeId"]
        assert node, f"no element {selector}"
        await self.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(f) for f in files]})


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path / "data", checkpoint_for_tests(tmp_path))
    with srv:
        yield srv


async def test_studio_page_runs_a_batch_and_downloads_the_zip(server, tmp_path):
    media = make_media(tmp_path / "media")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    tools = DevTools(tmp_path / "profile")
    try:
        await tools.start()
        await tools.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads),
                                                         "eventsEnabled": True})
        target = await tools.send("Target.createTarget", {"url": "about:blank"})
        session = (await tools.send("Target.attachToTarget", {"targetId": target["targetId"],
                                                              "flatten": True}))["sessionId"]
        page = Page(tools, session)
        await page.send("Runtime.enable")
        await page.send("Page.enable")
        await page.send("Page.navigate", {"url": server.url + "/"})
        await page.wait_js("document.readyState === 'complete' && !!document.querySelector('#st-start')")

        # Switch to the Studio tab as a person would.
        await page.js("document.querySelector('#tab-studio').click()")
        assert await page.wait_js("!document.querySelector('#studio-root').closest('[hidden]')")

        await page.set_files("#st-audio-input", [media.audio])
        await page.set_files("#st-video-input", [media.face, media.face_b])
        assert await page.wait_js("document.querySelectorAll('#st-video-list li').length === 2")
        assert "speech.wav" in await page.js("document.querySelector('#st-audio-label').textContent")

        await page.js("document.querySelector('#st-start').click()")
        await page.wait_js("!document.querySelector('#st-progress').hidden", timeout=60)
        title = await page.wait_js(
            "(() => { const t = document.querySelector('#st-progress-title').textContent;"
            " return /finished|failed|cancelled/.test(t) && t; })()", timeout=240, every=0.5)
        assert title.endswith("finished"), title
        error = await page.js("document.querySelector('#st-error').hidden ? '' : "
                              "document.querySelector('#st-error').textContent")
        assert not error, error
        statuses = await page.js("[...document.querySelectorAll('#st-items li .st-status')]"
                                 ".map(e => e.textContent)")
        assert statuses == ["done", "done"], statuses

        # The history shows both results with loaded thumbnails.
        await page.wait_js("document.querySelectorAll('#st-results .st-card').length === 2", timeout=30)
        await page.wait_js("[...document.querySelectorAll('#st-results img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)", timeout=30)

        # Download the batch as a ZIP through the page's own link.
        await page.wait_js("!document.querySelector('#st-batch-zip').hidden")
        await page.js("document.querySelector('#st-batch-zip').click()")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = [e for e in tools.events if e.get("method") == "Browser.downloadProgress"
                    and e["params"]["state"] in ("completed", "canceled")]
            if done:
                assert done[-1]["params"]["state"] == "completed"
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the ZIP download did not complete")
        zips = list(downloads.glob("*.zip"))
        assert len(zips) == 1, list(downloads.iterdir())
        with zipfile.ZipFile(zips[0]) as z:
            assert sorted(z.namelist()) == ["presenter.mp4", "presenter_wide.mp4"]
            z.extractall(tmp_path / "unzipped")
        for name in ("presenter.mp4", "presenter_wide.mp4"):
            check_mp4(tmp_path / "unzipped" / name, media.audio_seconds)

        thrown = [e for e in tools.events if e.get("method") == "Runtime.exceptionThrown"]
        assert not thrown, thrown
    finally:
        await tools.close()
