"""The live server's HTTP API against a real server: bad input, sessions, capacity, avatars.

Every session here is a real aiortc peer with a real engine worker process.
"""

from __future__ import annotations

import asyncio
import os

import aiohttp
import cv2
import numpy as np
import pytest

from testing.media import astronaut_bgr, speech_sample, write_wav
from testing.webrtc_client import LipstreamClient

pytestmark = pytest.mark.timeout(120)

VALID_SDP_HEAD = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def _request(url: str, method: str, path: str, **kw) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url + path, **kw) as resp:
            return resp.status, await resp.json()


async def test_health_voices_and_page(live_server):
    status, health = await _request(live_server.url, "GET", "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["sessions"] == 0 and health["max_sessions"] == live_server.config.max_sessions
    status, voices = await _request(live_server.url, "GET", "/voices")
    ids = {v["id"] for v in voices["voices"]}
    assert status == 200 and "piper:joe" in ids and "espeak:cmn" in ids
    async with aiohttp.ClientSession() as http:
        async with http.get(live_server.url + "/") as resp:
            page = await resp.text()
            assert resp.status == 200
        for asset in ("app.js", "style.css", "studio.js", "studio.css", "i18n.js", "console.js", "whep.js"):
            assert f"/static/{asset}" in page
            async with http.get(f"{live_server.url}/static/{asset}") as resp:
                assert resp.status == 200, asset
    # The words come from web/i18n.js (both languages); the page has the three views' anchors.
    assert all(f'id="{v}"' in page for v in ("live-view", "onair-view", "studio-root"))
    assert 'data-i18n="tab.live"' in page and 'data-i18n="tab.studio"' in page


@pytest.mark.parametrize(
    "body, needle",
    [
        ("not json", "valid JSON"),
        ([1, 2], "JSON object"),
        ({"type": "offer"}, "missing field(s): sdp"),
        ({"sdp": 5, "type": "offer"}, "must be strings"),
        ({"sdp": VALID_SDP_HEAD, "type": "answer"}, '"type" must be "offer"'),
        ({"sdp": "hello", "type": "offer"}, "malformed SDP"),
        ({"sdp": VALID_SDP_HEAD + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "type": "offer"}, "malformed"),
        ({"sdp": VALID_SDP_HEAD, "type": "offer"}, "no video section"),
        ({"sdp": VALID_SDP_HEAD, "type": "offer", "avatar": "../etc"}, "avatar"),
    ],
)
async def test_bad_offers_are_400(live_server, body, needle):
    kw = {"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, str) else {"json": body}
    status, reply = await _request(live_server.url, "POST", "/offer", **kw)
    assert status == 400, reply
    assert needle in reply["error"]
    assert (await _request(live_server.url, "GET", "/sessions"))[1]["count"] == 0


async def test_unknown_avatar_is_404(live_server):
    client = LipstreamClient(live_server.url)
    with pytest.raises(ConnectionError, match="404"):
        await client.connect(avatar="0123456789abcdef")
    await client.close()


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/sessions/nope/say"),
        ("POST", "/sessions/nope/interrupt"),
        ("POST", "/sessions/nope/audio"),
        ("DELETE", "/sessions/nope"),
        ("GET", "/sessions/nope"),
        ("GET", "/sessions/nope/events"),
        ("GET", "/avatars/jobs/nope"),
    ],
)
async def test_unknown_ids_are_404(live_server, method, path):
    status, reply = await _request(live_server.url, method, path, json={"text": "hi"} if method == "POST" else None)
    assert status == 404 and "error" in reply


async def test_session_lifecycle_bad_input_and_delete_frees_worker(live_server, tmp_path):
    client = LipstreamClient(live_server.url)
    sid = await client.connect()
    try:
        status, listing = await client.request("GET", "/sessions")
        assert listing["count"] == 1 and listing["sessions"][0]["session_id"] == sid
        pid = listing["sessions"][0]["worker_pid"]
        assert pid and _alive(pid)

        bad = [
            ({"text": ""}, 400, "empty"),
            ({"text": "   "}, 400, "empty"),
            ({}, 400, '"text" is required'),
            ({"text": 42}, 400, '"text" is required'),
            ({"text": "hi", "voice": "klingon:worf"}, 400, "unknown TTS engine"),
            ({"text": "hi", "voice": "espeak:xx-nope"}, 400, "unknown voice"),
            ({"text": "hi", "interrupt": "yes"}, 400, "interrupt"),
            ({"text": "x" * (live_server.config.max_text_chars + 1)}, 413, "too long"),
        ]
        for body, code, needle in bad:
            status, reply = await client.request("POST", f"/sessions/{sid}/say", json=body)
            assert status == code and needle in reply["error"], (body, status, reply)
        status, reply = await client.request("POST", f"/sessions/{sid}/say", data="{not json",
                                             headers={"Content-Type": "application/json"})
        assert status == 400 and "JSON" in reply["error"]

        # Audio upload: garbage and empty bodies are 400, a real file is accepted.
        status, reply = await client.request("POST", f"/sessions/{sid}/audio", data=b"\x00garbage" * 100,
                                             headers={"Content-Type": "application/octet-stream"})
        assert status == 400 and "cannot use this audio" in reply["error"]
        status, reply = await client.request("POST", f"/sessions/{sid}/audio", data=b"",
                                             headers={"Content-Type": "application/octet-stream"})
        assert status == 400 and "empty" in reply["error"]
        wav = write_wav(tmp_path / "hello.wav", speech_sample(), 16_000)
        form = aiohttp.FormData()
        form.add_field("file", wav.read_bytes(), filename="hello.wav", content_type="audio/wav")
        status, reply = await client.request("POST", f"/sessions/{sid}/audio", data=form)
        assert status == 202 and reply["seconds"] > 1.0

        status, reply = await client.request("DELETE", f"/sessions/{sid}")
        assert status == 200 and reply["closed"]
        for _ in range(50):
            if not _alive(pid):
                break
            await asyncio.sleep(0.05)
        assert not _alive(pid), "the worker process outlived its session"
        assert (await client.request("GET", "/sessions"))[1]["count"] == 0
        assert (await client.request("POST", f"/sessions/{sid}/interrupt"))[0] == 404
    finally:
        await client.close()


async def test_capacity_is_503_with_reason_and_frees_on_close(make_server):
    server = await make_server(max_sessions=1)
    first, second = LipstreamClient(server.url), LipstreamClient(server.url)
    try:
        await first.connect()
        with pytest.raises(ConnectionError) as exc:
            await second.connect()
        assert "503" in str(exc.value) and "capacity" in str(exc.value)
        await first.close()  # the viewer leaves: its slot must come back
        for _ in range(100):
            status, health = await _request(server.url, "GET", "/health")
            if health["sessions"] == 0:
                break
            await asyncio.sleep(0.1)
        third = LipstreamClient(server.url)
        await third.connect(receive_audio=False)  # a video-only viewer is fine too
        await third.wait_video(10)
        await third.close()
    finally:
        await first.close()
        await second.close()


async def test_oversize_uploads_are_413(make_server):
    server = await make_server(max_upload_mb=0.05)
    big = os.urandom(200_000)
    form = aiohttp.FormData()
    form.add_field("file", big, filename="big.mp4", content_type="video/mp4")
    status, reply = await _request(server.url, "POST", "/avatars", data=form)
    assert status == 413 and "limit" in reply["error"]
    client = LipstreamClient(server.url)
    sid = await client.connect()
    try:
        status, reply = await client.request("POST", f"/sessions/{sid}/audio", data=big,
                                             headers={"Content-Type": "application/octet-stream"})
        assert status == 413 and "limit" in reply["error"]
    finally:
        await client.close()


async def test_avatar_upload_prepares_with_progress_and_lists(live_server, tmp_path):
    # A smaller copy of the astronaut photo: a real face, prepared for real.
    photo = cv2.resize(astronaut_bgr(), (256, 256), interpolation=cv2.INTER_AREA)
    ok, jpg = cv2.imencode(".jpg", photo)
    form = aiohttp.FormData()
    form.add_field("file", jpg.tobytes(), filename="me.jpg", content_type="image/jpeg")
    form.add_field("name", "Me")
    status, job = await _request(live_server.url, "POST", "/avatars", data=form)
    assert status == 202 and job["progress_url"].startswith("/avatars/jobs/")
    seen = []
    for _ in range(600):
        status, state = await _request(live_server.url, "GET", job["progress_url"])
        seen.append(state["progress"])
        if state["state"] in ("done", "failed"):
            break
        await asyncio.sleep(0.1)
    assert state["state"] == "done", state
    assert state["avatar"]["name"] == "Me" and state["avatar"]["kind"] == "photo"
    assert seen == sorted(seen) and seen[-1] == 1.0
    status, listing = await _request(live_server.url, "GET", "/avatars")
    assert state["avatar"]["avatar_id"] in {a["avatar_id"] for a in listing["avatars"]}

    # Unsupported and non-media uploads are refused with a reason.
    form = aiohttp.FormData()
    form.add_field("file", b"hello", filename="notes.txt", content_type="text/plain")
    status, reply = await _request(live_server.url, "POST", "/avatars", data=form)
    assert status == 415 and "unsupported" in reply["error"]
    form = aiohttp.FormData()
    form.add_field("file", np.random.default_rng(0).bytes(5000), filename="noise.png", content_type="image/png")
    status, job = await _request(live_server.url, "POST", "/avatars", data=form)
    for _ in range(100):
        status, state = await _request(live_server.url, "GET", job["progress_url"])
        if state["state"] in ("done", "failed"):
            break
        await asyncio.sleep(0.1)
    assert state["state"] == "failed" and state["error"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] not in ("Z", "X")
    except FileNotFoundError:
        return False


async def test_idle_and_never_connected_sessions_end_by_themselves(make_server):
    from aiortc import RTCConfiguration, RTCPeerConnection

    server = await make_server(idle_timeout_s=1.5, connect_timeout_s=1.5, stats_interval_s=0.25)
    # A peer that sends an offer and then never completes the connection.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    status, reply = await _request(server.url, "POST", "/offer",
                                   json={"sdp": pc.localDescription.sdp, "type": "offer"})
    await pc.close()
    assert status == 200
    # A connected viewer that never speaks.
    client = LipstreamClient(server.url)
    sid = await client.connect()
    try:
        closed = []
        async for ev in client.events():
            if ev["type"] == "closed":
                closed.append(ev)
                break
        assert closed and closed[0]["reason"] == "idle timeout"
        for _ in range(50):
            if (await _request(server.url, "GET", "/sessions"))[1]["count"] == 0:
                break
            await asyncio.sleep(0.1)
        assert (await _request(server.url, "GET", "/sessions"))[1]["count"] == 0
        assert (await client.request("POST", f"/sessions/{sid}/say", json={"text": "hi"}))[0] == 404
    finally:
        await client.close()


async def test_a_crashed_worker_ends_its_session_with_an_error(live_server):
    import signal

    client = LipstreamClient(live_server.url)
    await client.connect()
    try:
        pid = (await client.stats())["worker_pid"]
        events = []

        async def follow():
            async for ev in client.events():
                events.append(ev)

        task = asyncio.ensure_future(follow())
        await asyncio.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            if any(e["type"] == "closed" for e in events):
                break
            await asyncio.sleep(0.05)
        task.cancel()
        kinds = [e["type"] for e in events]
        assert "error" in kinds and "closed" in kinds, kinds
        assert "engine" in next(e for e in events if e["type"] == "error")["message"]
        status, health = await _request(live_server.url, "GET", "/health")
        assert health["sessions"] == 0
    finally:
        await client.close()


async def test_speech_plays_after_an_interrupt_sent_before_the_peer_connected(live_server):
    """The worker starts only once ICE connects; an interrupt before that must still leave it on the
    session's epoch, or every frame would count as stale and the avatar would stay mute."""
    client = LipstreamClient(live_server.url)

    async def interrupt_early(session_id: str) -> None:
        status, _ = await client.request("POST", f"/sessions/{session_id}/interrupt")
        assert status == 200

    try:
        await client.connect(before_answer=interrupt_early)
        events = client.events()
        await client.say("Hello after an early interrupt.", voice="espeak:en-us")

        async def first_speech_start() -> dict:
            async for event in events:
                if event.get("type") == "speech_start":
                    return event
            raise AssertionError("the event stream ended without speech_start")

        started = await asyncio.wait_for(first_speech_start(), 30)
        assert "early interrupt" in started["text"]
        await events.aclose()
    finally:
        await client.close()
