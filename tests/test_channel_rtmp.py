"""A channel pushed to a real RTMP ingest (Debian nginx + libnginx-mod-rtmp), pulled back with PyAV.

What a host on Douyin or YouTube relies on: H.264 + AAC at the avatar's own size and
25 fps, lips in sync with the sound at the player, several outputs at once, and an
outage reported on the channel's events and recovered from while the channel runs on.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np
import pytest

from models.avatar.avatar import load_avatar
from testing.live_measure import MouthMeter, best_lag, envelope
from testing.rtmp_server import RtmpServer, play, unavailable_reason
from testing.webrtc_client import LipstreamClient

pytestmark = pytest.mark.timeout(180)

AV_BOUND_S = 0.040


@pytest.fixture(scope="module")
def ingest():
    if unavailable_reason():
        pytest.skip(unavailable_reason())
    with RtmpServer() as server:
        yield server


async def _events(client: LipstreamClient, out: list[dict]) -> None:
    async for event in client.events():
        if event["type"] in ("output", "speech_start", "speech_end"):
            out.append(event)


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_a_channel_streams_to_rtmp_in_sync_and_survives_an_ingest_outage(live_server, ingest, avatar_root):
    url = live_server.url
    meter = MouthMeter(load_avatar("default", avatar_root))
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/channels", json={"name": "to rtmp"}) as resp:
            cid = (await resp.json())["channel_id"]
        watcher = LipstreamClient(url, http=http, channel_id=cid)
        events: list[dict] = []
        listener = asyncio.create_task(_events(watcher, events))
        await asyncio.sleep(0.3)

        # Bad outputs first: a clear 400, nothing started.
        for bad in ("http://example.com/live", "rtmp://", "rtmp://host/app/key with space", "x" * 5000, 5):
            async with http.post(url + f"/channels/{cid}/outputs", json={"url": bad}) as resp:
                assert resp.status == 400 and (await resp.json())["error"], bad

        main, backup = ingest.url("main-key-123"), ingest.url("backup-key-456")
        outputs = []
        for target in (main, backup):
            async with http.post(url + f"/channels/{cid}/outputs", json={"url": target}) as resp:
                body = await resp.json()
                assert resp.status == 201, body
                assert "key-123" not in body["url"] and "key-456" not in body["url"], "the stream key must be masked"
                outputs.append(body["output_id"])
        await _until(lambda: sum(e.get("state") == "live" for e in events) >= 2, 30, "both outputs live")

        # Speak while a player pulls the main output.
        async def speak() -> None:
            await asyncio.sleep(1.0)
            async with http.post(url + f"/channels/{cid}/say",
                                 json={"text": "Hello everyone, welcome to the stream. Today we look at phones."}) as resp:
                assert resp.status == 202

        speaker = asyncio.create_task(speak())
        played = await asyncio.to_thread(play, main, 7.0, meter.score)
        await speaker
        assert played.video_codec == "h264" and played.audio_codec == "aac" and played.size == (512, 512)
        fps = (len(played.times) - 1) / (played.times[-1] - played.times[0])
        assert 23.0 < fps < 27.0, f"{fps:.1f} fps at the player"
        assert np.sqrt(np.mean(played.audio ** 2)) > 0.01, "no speech at the player"

        # Lip sync at the player: mouth opening against the sound's energy.
        t_a, rms = envelope(played.audio, played.audio_rate, 0.01)
        lag, r = best_lag(played.times + 0.02, np.array(played.values), played.audio_start + t_a, rms, max_lag=0.25)
        assert r > 0.4, f"mouth motion does not follow the audio at the player (r={r:.2f})"
        assert abs(lag) <= AV_BOUND_S, f"A/V offset {lag * 1000:.0f} ms at the player"

        # The ingest dies and comes back: reported on the channel's events, then live again.
        seen = len(events)
        await asyncio.to_thread(ingest.kill)
        await _until(lambda: any(e.get("state") == "reconnecting" for e in events[seen:]), 30, "reconnecting")
        await asyncio.sleep(1.0)
        await asyncio.to_thread(ingest.start)
        back = time.monotonic()
        await _until(lambda: sum(e.get("state") == "live" for e in events[seen:]) >= 2, 30, "live again")
        print(f"\nback live {time.monotonic() - back:.1f} s after the ingest returned; A/V {lag * 1000:.0f} ms (r={r:.2f})")
        assert all("key-123" not in str(e) and "key-456" not in str(e) for e in events), "a stream key leaked"
        again = await asyncio.to_thread(play, main, 2.0, lambda gray: 0.0)
        assert len(again.times) > 30

        async with http.get(url + f"/channels/{cid}/outputs") as resp:
            listing = (await resp.json())["outputs"]
        assert {o["output_id"] for o in listing} == set(outputs)
        assert all(o["reconnects"] >= 1 and o["frames_sent"] > 100 for o in listing), listing
        async with http.delete(url + f"/channels/{cid}/outputs/{outputs[1]}") as resp:
            assert resp.status == 200 and (await resp.json())["state"] == "stopped"
        async with http.get(url + f"/channels/{cid}/outputs/{outputs[1]}") as resp:
            assert resp.status == 404
        async with http.get(url + f"/channels/{cid}") as resp:
            assert [o["output_id"] for o in (await resp.json())["outputs"]] == [outputs[0]]
        async with http.delete(url + f"/channels/{cid}") as resp:
            assert resp.status == 200
        listener.cancel()
