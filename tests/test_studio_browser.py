"""Headless Chromium drives the Studio view like a person: choose an audio and two
videos, start, watch the batch finish, download the ZIP.

The browser is driven by the tests' one DevTools client, ``testing.browser``.
"""

from __future__ import annotations

import zipfile

import pytest

from testing.browser import Chromium, chromium_path
from testing.studio_helpers import ServerProcess, check_mp4, checkpoint_for_tests, make_media

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed"),
]


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path / "data", checkpoint_for_tests(tmp_path))
    with srv:
        yield srv


async def test_studio_page_runs_a_batch_and_downloads_the_zip(server, tmp_path):
    media = make_media(tmp_path / "media")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    async with Chromium.launch() as browser:
        saved = await browser.allow_downloads(downloads)
        page = await browser.open(server.url + "/?lang=en")
        await page.wait_for("document.readyState === 'complete' && !!document.querySelector('#st-start')",
                            timeout=30)

        # Switch to the Studio tab as a person would.
        await page.evaluate("document.querySelector('#tab-studio').click()")
        assert await page.wait_for("!document.querySelector('#studio-root').closest('[hidden]')")

        await page.set_files("#st-audio-input", [media.audio])
        await page.set_files("#st-video-input", [media.face, media.face_b])
        assert await page.wait_for("document.querySelectorAll('#st-video-list li').length === 2", timeout=30)
        assert "speech.wav" in await page.evaluate("document.querySelector('#st-audio-label').textContent")

        await page.evaluate("document.querySelector('#st-start').click()")
        await page.wait_for("!document.querySelector('#st-progress').hidden", timeout=60)
        title = await page.wait_for(
            "(() => { const t = document.querySelector('#st-progress-title').textContent;"
            " return /finished|failed|cancelled/.test(t) && t; })()", timeout=240, interval=0.5)
        assert title.endswith("finished"), title
        error = await page.evaluate("document.querySelector('#st-error').hidden ? '' : "
                                    "document.querySelector('#st-error').textContent")
        assert not error, error
        statuses = await page.evaluate("[...document.querySelectorAll('#st-items li .st-status')]"
                                       ".map(e => e.textContent)")
        assert statuses == ["done", "done"], statuses

        # The history shows both results, by their new names, with loaded thumbnails.
        await page.wait_for("document.querySelectorAll('#st-results .st-card').length === 2", timeout=30)
        await page.wait_for("[...document.querySelectorAll('#st-results img')]"
                            ".every(i => i.complete && i.naturalWidth > 0)", timeout=30)
        cards = await page.evaluate("document.querySelector('#st-results').textContent")
        assert "presenter__speech.mp4" in cards and "presenter_wide__speech.mp4" in cards, cards

        # Download the batch as a ZIP through the page's own link.
        await page.wait_for("!document.querySelector('#st-batch-zip').hidden")
        await page.evaluate("document.querySelector('#st-batch-zip').click()")
        done = await saved.wait_event("Browser.downloadProgress",
                                      lambda p: p["state"] in ("completed", "canceled"), timeout=60)
        assert done["state"] == "completed", done
        zips = list(downloads.glob("*.zip"))
        assert len(zips) == 1, list(downloads.iterdir())
        with zipfile.ZipFile(zips[0]) as z:
            assert sorted(z.namelist()) == ["presenter__speech.mp4", "presenter_wide__speech.mp4"]
            z.extractall(tmp_path / "unzipped")
        for name in ("presenter__speech.mp4", "presenter_wide__speech.mp4"):
            check_mp4(tmp_path / "unzipped" / name, media.audio_seconds)

        assert not page.exceptions, page.exceptions
