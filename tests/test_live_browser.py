"""The page in headless Chromium: connect with the (fake) microphone, get moving video,
speak text, see the events, disconnect."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from testing.browser import Chromium, chromium_path
from testing.media import speech_with_gaps, write_wav

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(150),
    pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed"),
]


async def test_page_connects_plays_moving_video_and_speaks(live_server, tmp_path):
    track = speech_with_gaps(("Front_Center", "Rear_Left"), gaps=(0.6,), lead=0.3, tail=0.3)
    wav = write_wav(tmp_path / "mic.wav", np.tile(track.audio, 3), 16_000)
    async with Chromium.launch(fake_audio=wav) as browser:
        page = await browser.open(live_server.url + "/?lang=en")
        await page.wait_for("document.readyState === 'complete' && !!window.lipstream")
        # The voice list is filled from /voices; the Studio tab is hosted by the page.
        await page.wait_for("document.querySelectorAll('#voice-select option').length > 2")
        assert await page.evaluate("!!document.getElementById('studio-root')")

        await page.evaluate("document.getElementById('mic-toggle').checked = true")
        await page.evaluate("document.getElementById('connect').click()")
        await page.wait_for("window.lipstream.sessionId !== null", timeout=30)
        await page.wait_for("document.getElementById('avatar-video').currentTime > 1.5", timeout=30)
        q1 = await page.evaluate(
            "(() => { const v = document.getElementById('avatar-video');"
            " const q = v.getVideoPlaybackQuality();"
            " return {t: v.currentTime, frames: q.totalVideoFrames, w: v.videoWidth, h: v.videoHeight,"
            " paused: v.paused}; })()"
        )
        assert q1["w"] == 512 and q1["h"] == 512 and not q1["paused"]

        # Text through the page: the event log shows the speech start.
        await page.evaluate("document.getElementById('say-text').value = 'Hello from the browser test.'")
        await page.evaluate("document.getElementById('say').click()")
        await page.wait_for("!!document.querySelector('#event-log [data-kind=\"speech_start\"]')", timeout=30)
        await page.wait_for("document.getElementById('stat-fps').textContent !== '–'", timeout=10)
        await asyncio.sleep(1.5)

        q2 = await page.evaluate(
            "(() => { const v = document.getElementById('avatar-video');"
            " const q = v.getVideoPlaybackQuality();"
            " return {t: v.currentTime, frames: q.totalVideoFrames}; })()"
        )
        elapsed = q2["t"] - q1["t"]
        assert elapsed > 1.0
        assert (q2["frames"] - q1["frames"]) / elapsed > 12, (q1, q2)

        sessions = await page.evaluate("fetch('/sessions').then(r => r.json())")
        assert sessions["count"] == 1 and sessions["sessions"][0]["mic"] is True

        await page.evaluate("document.getElementById('disconnect').click()")
        await page.wait_for("fetch('/sessions').then(r => r.json()).then(s => s.count === 0)", timeout=15)


async def test_page_shows_the_delay_in_plain_words_and_lowers_the_jitter_buffer(live_server, tmp_path):
    """After connecting with the microphone the page says how late the person is heard, its receivers
    carry the low jitter-buffer target (read back), both tracks share one sync group, and the figure
    goes away on disconnect."""
    track = speech_with_gaps(("Front_Center", "Rear_Left"), gaps=(0.6,), lead=0.3, tail=0.3)
    wav = write_wav(tmp_path / "mic.wav", np.tile(track.audio, 3), 16_000)
    async with Chromium.launch(fake_audio=wav) as browser:
        page = await browser.open(live_server.url + "/?lang=en")
        await page.wait_for("document.readyState === 'complete' && !!window.lipstream && !!window.lipstreamDelay")
        await page.evaluate("document.getElementById('mic-toggle').checked = true")
        await page.evaluate("document.getElementById('connect').click()")
        await page.wait_for("window.lipstream.sessionId !== null", timeout=30)

        # The server's mic latency arrives with its SSE stats; the sentence names it in seconds.
        words = await page.wait_for(
            "(() => { const t = document.getElementById('delay-words').textContent;"
            " return /^You are heard \\d+\\.\\d s later\\.$/.test(t) && t; })()", timeout=40)
        delay = await page.evaluate("window.lipstream.delay")
        assert delay["serverMs"] is not None and delay["rttMs"] is not None, delay
        assert 0 < delay["totalMs"] < 2000, delay
        assert words == f"You are heard {delay['totalMs'] / 1000:.1f} s later."

        # The answer asked for 10 ms microphone packets (a=ptime) and Chromium sends them: about
        # 100 a second where its own choice would be 50 (the packets' count over the stats' own clock).
        rate = await page.evaluate("""(async () => {
          const sent = async () => {
            for (const s of (await window.lipstream.pc.getStats()).values())
              if (s.type === 'outbound-rtp' && s.kind === 'audio') return [s.packetsSent, s.timestamp];
          };
          const [n0, t0] = await sent();
          await new Promise((r) => setTimeout(r, 2000));
          const [n1, t1] = await sent();
          return 1000 * (n1 - n0) / (t1 - t0);
        })()""")
        assert 80 < rate < 120, f"microphone packets per second: {rate:.0f}"

        supported = await page.evaluate("window.lipstreamDelay.supported()")
        targets = await page.evaluate("window.lipstream.jitterTargets")
        if supported:
            wanted = await page.evaluate("window.lipstreamDelay.targetMs()")
            read_back = await page.evaluate(
                "window.lipstream.pc.getReceivers().map(r => [r.track.kind, r.jitterBufferTarget])")
            assert sorted(k for k, _ in read_back) == ["audio", "video"]
            assert all(v == wanted for _, v in read_back), read_back
            assert targets == {"audio": wanted, "video": wanted}
        ids = await page.evaluate("window.lipstream.streamIds")
        assert ids["audio"] and ids["audio"] == ids["video"], ids   # one sync group

        await page.evaluate("document.getElementById('disconnect').click()")
        await page.wait_for("document.getElementById('delay-words').textContent === ''", timeout=5)
        assert await page.evaluate("document.getElementById('stat-browser').textContent") == "–"
        await asyncio.sleep(1.5)   # a stats tick after disconnecting must not bring the figure back
        assert await page.evaluate("document.getElementById('delay-words').textContent") == ""
        assert await page.evaluate("window.lipstream.delay") is None


async def test_the_page_works_with_a_token_taken_once_from_its_link(make_server, tmp_path):
    """With a token in force, the page opened from the printed link connects, speaks and hears its
    events (SSE takes the token as a query), and the token leaves the address bar."""
    token = "page-token-0123456789abcdef"
    server = await make_server(token=token)
    track = speech_with_gaps(("Front_Center",), gaps=(), lead=0.3, tail=0.3)
    wav = write_wav(tmp_path / "mic.wav", np.tile(track.audio, 3), 16_000)
    async with Chromium.launch(fake_audio=wav) as browser:
        page = await browser.open(f"{server.url}/?lang=en#token={token}")
        await page.wait_for("document.readyState === 'complete' && !!window.lipstream")
        assert "token" not in await page.evaluate("window.location.href")
        # Without the header the API refuses; the page's own calls carry it.
        assert await page.evaluate("fetch('/sessions').then(r => r.status)") == 401
        await page.wait_for("document.querySelectorAll('#voice-select option').length > 2")

        await page.evaluate("document.getElementById('connect').click()")
        await page.wait_for("window.lipstream.sessionId !== null", timeout=30)
        await page.wait_for("document.getElementById('avatar-video').currentTime > 0.5", timeout=30)
        await page.evaluate("document.getElementById('say-text').value = 'The token works.'")
        await page.evaluate("document.getElementById('say').click()")
        await page.wait_for("!!document.querySelector('#event-log [data-kind=\"speech_start\"]')", timeout=30)
        count = await page.evaluate(
            f"fetch('/sessions', {{headers: {{Authorization: 'Bearer {token}'}}}}).then(r => r.json())"
            ".then(s => s.count)")
        assert count == 1
        await page.evaluate("document.getElementById('disconnect').click()")


async def test_the_live_view_fits_a_phone_without_horizontal_scrolling(live_server):
    async with Chromium.launch() as browser:
        page = await browser.open(live_server.url + "/?lang=en")
        await page.send("Emulation.setDeviceMetricsOverride",
                        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": False})
        await page.wait_for("document.readyState === 'complete' && !!window.lipstream")
        await page.wait_for("document.querySelectorAll('#voice-select option').length > 2")
        widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[1] == 390 and widths[0] <= widths[1], widths
