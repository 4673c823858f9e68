"""The aiortc hooks (live/rtc/aiortc_hooks.py) still have their effect.

Each hook reaches into aiortc's internals; a new aiortc can silently turn one into
a no-op while every stream still plays.  These tests look at the hooks' own
counters, end to end with a real aiortc viewer: microphone packets must reach the
worker through the tap (not through aiortc's decoder), and a PLI from the viewer
must reach the worker's encoder and produce a keyframe.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from live.rtc import aiortc_hooks
from testing.media import speech_with_gaps
from testing.webrtc_client import LipstreamClient

pytestmark = pytest.mark.timeout(120)


async def _stats_until(client: LipstreamClient, done, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        stats = await client.stats()
        if done(stats) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.1)


def test_the_installed_aiortc_is_the_tested_one():
    assert aiortc_hooks.check_versions() == []


async def test_mic_packets_reach_the_worker_through_the_tap(live_server):
    track = speech_with_gaps(("Front_Center",), gaps=(), lead=0.2, tail=3.0)
    client = LipstreamClient(live_server.url)
    try:
        await client.connect(mic=track.audio)
        stats = await _stats_until(client, lambda s: s["mic_packets_decoded"] >= 50)
    finally:
        await client.close()
    assert stats["mic_tapped"], "the mic jitter buffer was not installed"
    assert stats["mic_packets"] >= 50, "no microphone packet came through the tap"
    # The worker decoded them: they went the tapped way (Opus to the worker), not aiortc's.
    assert stats["mic_packets_decoded"] >= 50, stats["mic_packets_decoded"]


def _video_ssrc(sdp: str) -> int:
    video = sdp.split("m=video", 1)[1].split("\nm=", 1)[0]
    return int(re.search(r"a=ssrc:(\d+)", video).group(1))


async def test_a_pli_from_the_viewer_makes_the_worker_send_a_keyframe(live_server):
    client = LipstreamClient(live_server.url)
    try:
        await client.connect()
        await client.wait_video(10)
        before = await client.stats()
        assert before["keyframes_sent"] >= 1          # the stream starts with one
        receiver = client._receivers["video"]
        # What aiortc's receiver sends when it loses a picture: an RTCP PLI to the sender.
        await receiver._send_rtcp_pli(_video_ssrc(client.pc.remoteDescription.sdp))
        after = await _stats_until(
            client, lambda s: s["keyframes_sent"] > before["keyframes_sent"] and s["keyframe_requests_in_worker"] >= 1
        )
    finally:
        await client.close()
    assert after["keyframe_requests"] >= 1, "the PLI did not reach the keyframe hook"
    assert after["keyframe_requests_in_worker"] >= 1, "the keyframe request did not reach the worker"
    assert after["keyframes_sent"] > before["keyframes_sent"], "no keyframe followed the PLI"
