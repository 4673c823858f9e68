"""RTMP outputs against a real nginx-rtmp ingest, played back with PyAV.

The channel is stood in for by real H.264 frames from the channel's own encoder
(``VideoEncoder("h264")``) fed at real time, with a white flash and a beep in the
same frame once a second, so the receiver can check codecs, size, frame rate and
A/V sync on what a platform's viewers would get.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from live.broadcast.frames import BroadcastFrame
from live.broadcast.rtmp_output import RtmpOutput
from live.broadcast.urls import mask_url, redact, validate_output_url
from testing.broadcast_feed import FlashBeepSource, av_offsets, beep_times, feed_realtime, flash_times
from testing.rtmp_server import RtmpServer, TlsFront, pull, unavailable_reason

W, H, FPS = 320, 240, 25

needs_nginx = pytest.mark.skipif(unavailable_reason() is not None, reason=unavailable_reason() or "")


class StatusLog:
    """The on_status events of one output, with awaitable conditions."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float, after: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events[after:]:
                if pred(e):
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no such status within {timeout} s; got {[e['state'] for e in self.events]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    def states(self) -> list[str]:
        return [e["state"] for e in self.events]


class Feed:
    """A FlashBeepSource fed at real time to ``sinks`` (outputs' ``put``) until closed."""

    def __init__(self, source: FlashBeepSource, sinks: list[Callable[[BroadcastFrame], None]],
                 hole: Callable[[int], bool] | None = None) -> None:
        self.source = source
        self.stop = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(feed_realtime(source, sinks, self.stop, hole=hole))

    async def close(self) -> None:
        self.stop.set()
        await self.task


async def wait_until(pred: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def ingest():
    if unavailable_reason():
        pytest.skip(unavailable_reason())
    with RtmpServer() as server:
        yield server


def _output(url: str, log: StatusLog, keyframes: Callable[[], None], **kw: Any) -> RtmpOutput:
    return RtmpOutput(url, W, H, FPS, log, keyframes, **kw)


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "", "http://example.com/live/key", "rtmp:/example.com/live/key", "RTMP://example.com/live/key",
    "rtmp:///live/key", "rtmp://example.com", "rtmp://example.com/", "rtmp://exa mple.com/live/key",
    "rtmp://example.com/live/key\n", "rtmp://example.com/live/k\x00ey", "rtmp://example.com:99999/live/key",
    "rtmp://example.com:abc/live/key", "rtmp://example.com/live/key#x", "file:///etc/passwd",
    "rtmp://example.com/live/" + "k" * 3000, "rtmp://exa<mple>.com/live/key",
])
def test_bad_urls_are_rejected_with_a_reason(url: str) -> None:
    with pytest.raises(ValueError) as e:
        validate_output_url(url)
    assert str(e.value).startswith("url ")
    with pytest.raises(ValueError):
        RtmpOutput(url, W, H, FPS, lambda e: None, lambda: None)


def test_stream_keys_are_masked() -> None:
    url = "rtmps://live.example.com:443/app/abcdef?x=1"
    assert validate_output_url(url) == url
    assert mask_url("rtmp://a.rtmp.youtube.com/live2/xyzw-1234-abcd") == "rtmp://a.rtmp.youtube.com/live2/xy***"
    assert mask_url("rtmps://u:pw@host/app/key?token=s3cret") == "rtmps://***@host/app/ke***?***"
    url = "rtmp://host/app/supersecretkey"
    msg = redact(f"Connection refused: '{url}' (publishing supersecretkey)", url)
    assert "supersecretkey" not in msg and "rtmp://host/app/su***" in msg
    with pytest.raises(ValueError, match="size"):
        RtmpOutput("rtmp://host/app/key", 0, H, FPS, lambda e: None, lambda: None)


@needs_nginx
async def test_stream_reaches_the_ingest_as_h264_and_aac_in_sync(ingest: RtmpServer) -> None:
    log, source = StatusLog(), FlashBeepSource(W, H, FPS)
    out = _output(ingest.url("synccheck"), log, source.request_keyframe)
    out.start()
    feed = Feed(source, [out.put])
    try:
        got = await asyncio.to_thread(pull, ingest.url("synccheck"), 4.0)
        info = out.info()
    finally:
        await feed.close()
        await out.stop()
    assert (got.video_codec, got.audio_codec) == ("h264", "aac")
    assert (got.width, got.height) == (W, H)
    assert abs(got.frame_interval_s() - 1 / FPS) < 0.003, got.frame_interval_s()
    span = got.video_times[-1] - got.video_times[0]
    assert span > 3.0 and len(got.video_times) >= 0.95 * span * FPS   # no holes: ~25 frames every second
    assert got.audio_rate in (44100, 48000) and got.audio_start is not None
    assert len(got.audio) >= 0.9 * span * got.audio_rate
    flashes = flash_times(got.video_times, got.video_luma)
    beeps = beep_times(got.audio, got.audio_rate, got.audio_start)
    sync = av_offsets(flashes, beeps, feed.source.flash_every / FPS)
    assert len(sync.offsets_ms) >= 3 and len(sync.offsets_ms) >= len(flashes) - 1, sync
    assert all(abs(o) <= 40 for o in sync.offsets_ms), sync
    assert info["state"] == "live" and info["frames_sent"] > 80 and info["bitrate_kbps"] > 50, info
    assert info["url"] == mask_url(ingest.url("synccheck"))
    assert log.states()[:2] == ["connecting", "live"] and log.states()[-1] == "stopped"
    assert out.info()["state"] == "stopped"


@needs_nginx
async def test_frames_missing_from_the_channel_leave_a_hole_not_a_sync_error(ingest: RtmpServer) -> None:
    # 10 frames (0.4 s) of every second never arrive.  Counting frames instead of reading their index
    # would play everything after the first hole early, the sound by 0.4 s more each second.
    def hole(index: int) -> bool:
        return 10 <= index % 25 < 20

    log, source = StatusLog(), FlashBeepSource(W, H, FPS)
    out = _output(ingest.url("holes"), log, source.request_keyframe)
    out.start()
    feed = Feed(source, [out.put], hole=hole)
    try:
        got = await asyncio.to_thread(pull, ingest.url("holes"), 4.0)
    finally:
        await feed.close()
        await out.stop()
    steps = np.round(np.diff(got.video_times) * FPS).astype(int)
    assert set(steps.tolist()) == {1, 11}, steps         # frames 40 ms apart, and 440 ms across a hole
    flashes = flash_times(got.video_times, got.video_luma)
    beeps = beep_times(got.audio, got.audio_rate, got.audio_start)
    sync = av_offsets(flashes, beeps, source.flash_every / FPS)
    assert len(sync.offsets_ms) >= 3 and all(abs(o) <= 40 for o in sync.offsets_ms), sync
    assert np.allclose(np.diff(beeps), 1.0, atol=0.01), beeps   # the silence filled the holes exactly


@needs_nginx
async def test_two_outputs_at_once_and_a_late_one_starts_at_a_fresh_keyframe(ingest: RtmpServer) -> None:
    # GOP of 60 s: the output that joins late goes live quickly only if its keyframe request is honoured.
    source = FlashBeepSource(W, H, FPS, keyframe_s=60.0)
    requests: list[float] = []

    def keyframe() -> None:
        requests.append(time.monotonic())
        source.request_keyframe()

    log_a, log_b = StatusLog(), StatusLog()
    a = _output(ingest.url("first"), log_a, keyframe)
    b = _output(ingest.url("second"), log_b, keyframe)
    a.start()
    sinks = [a.put]
    feed = Feed(source, sinks)
    try:
        await log_a.wait(lambda e: e["state"] == "live", 30)
        await asyncio.sleep(1.0)            # the channel is now mid-GOP
        b.start()
        sinks.append(b.put)                 # feed_realtime iterates this list each frame
        await log_b.wait(lambda e: e["state"] == "live", 15)
        n_requests = len(requests)
        # nginx starts a late player's video at a keyframe: give the players some.
        pulls = asyncio.gather(asyncio.to_thread(pull, ingest.url("first"), 2.0),
                               asyncio.to_thread(pull, ingest.url("second"), 2.0))
        while not pulls.done():
            source.request_keyframe()
            await asyncio.wait({pulls}, timeout=0.5)
        got_a, got_b = await pulls
    finally:
        await feed.close()
        await asyncio.gather(a.stop(), b.stop())
    assert n_requests >= 1, "the late output never asked for a keyframe"
    for got in (got_a, got_b):
        assert (got.video_codec, got.audio_codec, got.width, got.height) == ("h264", "aac", W, H)
        assert len(got.video_times) >= 25 and len(got.audio) > 0
    assert a.info()["frames_sent"] > b.info()["frames_sent"] > 0


@needs_nginx
async def test_ingest_killed_and_restarted_the_output_reconnects() -> None:
    key = "outagekey123"
    with RtmpServer() as server:
        log, source = StatusLog(), FlashBeepSource(W, H, FPS)
        out = _output(server.url(key), log, source.request_keyframe)
        out.start()
        feed = Feed(source, [out.put])
        try:
            await log.wait(lambda e: e["state"] == "live", 30)
            server.kill()
            down = await log.wait(lambda e: e["state"] == "reconnecting", 15)
            assert down["error"] and down["retry_in_s"] is not None
            sent_before = out.info()["frames_sent"]
            server.start()
            n = len(log.events)
            await log.wait(lambda e: e["state"] == "live", 20, after=n)
            got = await asyncio.to_thread(pull, server.url(key), 1.5)
            await wait_until(lambda: out.info()["frames_sent"] > sent_before + 25, 10)
        finally:
            await feed.close()
            await out.stop()
    assert (got.video_codec, got.width, got.height) == ("h264", W, H) and len(got.video_times) >= 20
    info = out.info()
    assert info["reconnects"] >= 1 and info["frames_dropped"] > 0
    assert "live" in log.states()[log.states().index("reconnecting"):]
    assert key not in json.dumps(log.events)     # the stream key never leaks into events


@needs_nginx
async def test_a_hung_ingest_is_abandoned_and_put_never_blocks() -> None:
    with RtmpServer() as server:
        server.pause()          # accepts TCP, never answers the RTMP handshake
        log, source = StatusLog(), FlashBeepSource(W, H, FPS)
        out = _output(server.url("hung"), log, source.request_keyframe, stall_s=3.0, backlog_s=1.0)
        out.start()
        feed = Feed(source, [out.put])
        try:
            stalled = await log.wait(lambda e: "stopped responding" in (e["error"] or ""), 30)
            assert stalled["state"] == "connecting" and stalled["retry_in_s"] is not None
            # A burst far beyond the backlog returns at once and keeps memory bounded.
            t0 = time.perf_counter()
            for i in range(1000):
                out.put(BroadcastFrame(index=10**6 + i, video=b"\0\0\1\x41" + bytes(5000), keyframe=False,
                                       pcm=bytes(1280)))
            assert time.perf_counter() - t0 < 1.0
            assert out.backlog <= FPS * 1.0
            assert out.info()["frames_dropped"] >= 1000 - FPS
            server.resume()
            await log.wait(lambda e: e["state"] == "live", 30)
        finally:
            await feed.close()
            await out.stop()


@needs_nginx
async def test_rtmps_goes_through_tls(ingest: RtmpServer) -> None:
    front = await asyncio.to_thread(TlsFront, ingest)
    log, source = StatusLog(), FlashBeepSource(W, H, FPS)
    out = _output(front.url("overtls"), log, source.request_keyframe)
    out.start()
    feed = Feed(source, [out.put])
    try:
        await log.wait(lambda e: e["state"] == "live", 30)
        got = await asyncio.to_thread(pull, ingest.url("overtls"), 1.0)
    finally:
        await feed.close()
        await out.stop()
        front.close()
    assert (got.video_codec, got.audio_codec, got.width, got.height) == ("h264", "aac", W, H)
    assert len(got.video_times) >= 20 and out.info()["url"].startswith("rtmps://127.0.0.1:")


@needs_nginx
async def test_a_stream_that_does_not_match_the_output_fails_clearly(ingest: RtmpServer) -> None:
    log, source = StatusLog(), FlashBeepSource(W, H, FPS)
    out = RtmpOutput(ingest.url("wrongsize"), 640, 360, FPS, log, source.request_keyframe)
    out.start()
    feed = Feed(source, [out.put])
    try:
        failed = await log.wait(lambda e: e["state"] == "failed", 30)
    finally:
        await feed.close()
        await out.stop()
    assert f"{W}x{H}" in failed["error"] and "640x360" in failed["error"]
