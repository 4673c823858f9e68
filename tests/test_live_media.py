"""Real WebRTC media through the live server: mic mode, text mode, interrupt, two sessions.

The client is a real aiortc peer; what it measures is what a viewer would get:
decoded VP8 frames (mouth opening measured against the avatar's own frames) and
decoded Opus audio, both placed on the server's clock by its RTCP sender reports
(the information a browser uses for lip sync).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from models.avatar.avatar import load_avatar
from testing.live_measure import MouthMeter, best_lag, envelope
from testing.media import speech_with_gaps
from testing.webrtc_client import LipstreamClient

pytestmark = pytest.mark.timeout(180)

SILENCE_RMS = 0.004
FPS = 25.0
# Functional bounds, relative to nominal, that hold on a loaded 2-core machine; the
# strict figures (A/V within 40 ms, a steady 25 fps) are measured by bench/live_sync.py
# and bench/live_latency.py.
AV_BOUND_S = 2.0 / FPS        # lips within two frames of the sound
MIN_FPS = 0.5 * FPS           # catch-up (live/worker/catch_up.py) never drops below half the picture rate


@pytest.fixture(scope="module")
def meter(avatar_root) -> MouthMeter:
    return MouthMeter(load_avatar("default", avatar_root))


class _Events:
    """Collects a session's SSE events in the background."""

    def __init__(self, client: LipstreamClient) -> None:
        self.items: list[dict] = []
        self._task = asyncio.ensure_future(self._run(client))

    async def _run(self, client: LipstreamClient) -> None:
        async for ev in client.events():
            ev["_received"] = time.time()
            self.items.append(ev)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.items if e["type"] == kind]

    async def wait_for(self, kind: str, n: int = 1, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.of(kind)) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind} event in {timeout} s; got {[e['type'] for e in self.items]}")
            await asyncio.sleep(0.02)
        return self.of(kind)

    def close(self) -> None:
        self._task.cancel()


def _luma(frame) -> np.ndarray:
    return frame.to_ndarray(format="gray")


def _timelines(client: LipstreamClient, meter: MouthMeter):
    """(video sender times, mouth scores), (audio envelope sender times, rms) of everything received."""
    v_pts = np.array([v.pts for v in client.video])
    scores = np.array([meter.score(v.data) for v in client.video], dtype=np.float64)
    # A frame is on screen for 1/fps from its timestamp; it shows the middle of that span.
    t_v = client.sender_time("video", v_pts) + 0.5 / FPS
    audio, start = client.audio_signal()
    t_rel, rms = envelope(audio, 48_000, 0.01)
    t_a = client.sender_time("audio", start + t_rel * 48_000)
    return (t_v, scores), (t_a, rms)


def _frame_energy(t_v: np.ndarray, t_a: np.ndarray, rms: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """Output audio energy during each received frame (its 40 ms)."""
    out = np.zeros(len(t_v))
    for k, t in enumerate(t_v):
        sel = (t_a >= t - 0.5 / fps) & (t_a < t + 0.5 / fps)
        out[k] = rms[sel].mean() if sel.any() else 0.0
    return out


async def test_mic_mode_lips_follow_speech_close_in_silence_in_sync(live_server, meter):
    track = speech_with_gaps(("Front_Center", "Rear_Left", "Front_Right"), gaps=(0.9, 0.9), lead=1.2, tail=1.2)
    client = LipstreamClient(live_server.url, frame_fn=_luma)
    try:
        await client.connect(mic=track.audio)
        await asyncio.sleep(track.seconds + 0.6)
        stats = await client.stats()
        (t_v, score), (t_a, rms) = _timelines(client, meter)
    finally:
        await client.close()

    # The server sends the mic audio back, delayed: find the delay from the envelopes.
    t_in, rms_in = envelope(track.audio, 16_000, 0.01)
    t_in = client.mic.send_times[0] + t_in
    delay, r = best_lag(t_in, rms_in, t_a, rms, max_lag=0.6)
    assert r > 0.6, f"the mic audio did not come back (r={r:.2f})"
    assert 0.04 < delay < 0.35, f"mic -> output delay {delay * 1000:.0f} ms"

    energy = _frame_energy(t_v, t_a, rms)
    speech = energy > 4 * SILENCE_RMS
    # Silence: frames whose surrounding 300 ms of output audio are all quiet.
    quiet = np.array([rms[(t_a > t - 0.3) & (t_a < t + 0.3)].max(initial=0) < SILENCE_RMS for t in t_v])
    assert speech.sum() > 30 and quiet.sum() > 30, (speech.sum(), quiet.sum())
    closed = np.median(score[quiet])
    talking = np.median(score[speech])
    assert talking > 3 * closed + 2.0, f"mouth score speech {talking:.1f} vs silence {closed:.1f}"
    assert np.percentile(score[quiet], 90) < closed + 3.0, "lips are not still in silence"

    # A/V sync at the receiver: mouth opening against output audio energy.
    lag, r = best_lag(t_v, score, t_a, rms, max_lag=0.25)
    assert r > 0.4, f"mouth motion does not follow the audio (r={r:.2f})"
    assert abs(lag) <= AV_BOUND_S, f"A/V offset {lag * 1000:.0f} ms (bound {AV_BOUND_S * 1000:.0f} ms)"

    assert stats["fps"] > MIN_FPS, f"{stats['fps']} fps (nominal {FPS:.0f})"
    assert stats["latency_ms"]["p95"] is not None
    print(f"\nmic->out {delay * 1000:.0f} ms, A/V lag {lag * 1000:.0f} ms (r={r:.2f}), "
          f"server latency p50/p95 {stats['latency_ms']}, mouth {talking:.1f} vs {closed:.1f}")


async def test_text_mode_events_order_and_audio(live_server, meter):
    client = LipstreamClient(live_server.url, frame_fn=_luma)
    await client.connect()
    events = _Events(client)
    try:
        await asyncio.sleep(0.3)
        first = await client.say("Hello there. This is the live server speaking.")
        second = await client.say("And this comes second.")
        ends = await events.wait_for("speech_end", 2, timeout=30)
        await asyncio.sleep(0.3)
        (t_v, score), (t_a, rms) = _timelines(client, meter)
    finally:
        events.close()
        await client.close()

    starts = events.of("speech_start")
    assert [e["utterance_id"] for e in starts] == [first["utterance_id"], second["utterance_id"]]
    assert [e["utterance_id"] for e in ends] == [first["utterance_id"], second["utterance_id"]]
    assert starts[0]["text"].startswith("Hello there") and not ends[0]["interrupted"]
    assert starts[0]["time"] < ends[0]["time"] <= starts[1]["time"] < ends[1]["time"]
    assert 0 < starts[0]["latency_ms"] < 3000

    # Between start and end of the first utterance there is loud audio and a moving mouth;
    # before it, silence and a closed mouth.
    s0, e0 = starts[0]["time"], ends[0]["time"]
    during = (t_a > s0) & (t_a < e0)
    before = t_a < s0 - 0.1
    assert rms[during].mean() > 10 * max(rms[before].mean(), 1e-4)
    assert score[(t_v > s0) & (t_v < e0)].mean() > 2 * score[t_v < s0 - 0.1].mean() + 1.0


async def test_interrupt_silences_and_closes_within_100ms(live_server, meter):
    client = LipstreamClient(live_server.url, frame_fn=_luma)
    await client.connect()
    events = _Events(client)
    try:
        await client.say("This is a long sentence that keeps going on and on, so that there is "
                         "plenty of speech left to cut off when the interrupt arrives.")
        await events.wait_for("speech_start", timeout=20)
        await asyncio.sleep(1.0)
        t_request = time.time()
        reply = await client.interrupt()
        await asyncio.sleep(1.0)
        (t_v, score), (t_a, rms) = _timelines(client, meter)
    finally:
        events.close()
        await client.close()
    assert reply["interrupted"], reply
    assert any(e["interrupted"] for e in events.of("speech_end"))

    before = (t_a > t_request - 0.5) & (t_a < t_request)
    assert rms[before].mean() > 5 * SILENCE_RMS, "nothing was playing before the interrupt"
    loud_after = t_a[(t_a > t_request) & (rms > SILENCE_RMS)]
    silent_at = (loud_after.max() if len(loud_after) else t_request) - t_request
    # The 100 ms target is measured by bench/live_latency.py; here we check that the
    # interrupt really cuts the speech, with slack for a loaded CI machine.
    assert silent_at <= 0.300, f"sound went on for {silent_at * 1000:.0f} ms after the interrupt"

    shown = t_v - 0.5 / FPS   # when each frame appears on screen
    closed = np.median(score[shown > t_request + 0.5])
    open_after = shown[(shown > t_request) & (score > closed + 4.0)]
    # The last open frame leaves the screen when the next one (closed) appears.
    closed_at = (open_after.max() + 1.0 / FPS if len(open_after) else t_request) - t_request
    assert closed_at <= 0.300, f"lips still open {closed_at * 1000:.0f} ms after the interrupt"
    print(f"\ninterrupt: silent after {silent_at * 1000:.0f} ms, lips closed after {closed_at * 1000:.0f} ms")


async def test_two_sessions_run_side_by_side(live_server, meter):
    clients = [LipstreamClient(live_server.url, frame_fn=_luma)
               for _ in range(2)]
    track = speech_with_gaps(("Front_Center", "Rear_Right"), gaps=(0.5,), lead=0.6, tail=0.6)
    try:
        await clients[0].connect(mic=track.audio)
        await clients[1].connect()
        await clients[1].say("Two sessions at once, each with its own engine.")
        t0 = time.monotonic()
        await asyncio.sleep(track.seconds + 0.5)
        elapsed = time.monotonic() - t0
        stats = [await c.stats() for c in clients]
        received = [len(c.video) for c in clients]
        status, listing = await clients[0].request("GET", "/sessions")
    finally:
        for c in clients:
            await c.close()
    assert listing["count"] == 2
    assert stats[0]["worker_pid"] != stats[1]["worker_pid"]
    # Full rate on an idle 2-core machine (bench/live_concurrency.py measures it); the
    # test only insists that both flow and neither starves, even on a busy machine
    # (an overloaded server draws every other frame rather than fall behind).
    assert min(received) >= 0.6 * max(received), received
    for c, s, n in zip(clients, stats, received):
        assert n >= 0.4 * FPS * elapsed, f"only {n} frames in {elapsed:.1f} s"
        scores = np.array([meter.score(v.data) for v in c.video])
        assert scores.max() > np.median(scores) + 5, "no mouth motion"
