"""Channels against a real server: many WHEP viewers of one rendered stream, the operator's
microphone, speech with nobody watching, and every way a WHEP request can be wrong.

Every viewer here is a real aiortc peer posting ``application/sdp`` (RFC 9725); every
channel runs a real engine worker process.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np
import pytest

from testing.media import speech_sample
from testing.webrtc_client import LipstreamClient

pytestmark = pytest.mark.timeout(150)


async def _json(http: aiohttp.ClientSession, method: str, url: str, **kw) -> tuple[int, dict]:
    async with http.request(method, url, **kw) as resp:
        try:
            return resp.status, await resp.json()
        except aiohttp.ContentTypeError:
            return resp.status, {"text": await resp.text()}


async def _channel(http: aiohttp.ClientSession, url: str, **body) -> dict:
    status, info = await _json(http, "POST", url + "/channels", json=body)
    assert status == 201, info
    return info


async def _wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def _speech_rms(client: LipstreamClient) -> float:
    if not client.audio:
        return 0.0
    pcm = np.concatenate([a.samples for a in client.audio])
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


async def _collect(client: LipstreamClient, kinds: set[str], until: str, out: list[dict]) -> None:
    async for event in client.events():
        if event["type"] in kinds:
            out.append(event)
        if event["type"] == until:
            return


async def test_one_channel_renders_once_for_many_whep_viewers_who_all_see_and_hear_it(live_server):
    url = live_server.url
    async with aiohttp.ClientSession() as http:
        info = await _channel(http, url, name="Shop window")
        cid, key = info["channel_id"], info["view_key"]
        assert info["state"] == "live" and info["viewers"] == 0 and (info["width"], info["height"]) == (512, 512)
        assert info["links"]["whep"] == f"/channels/{cid}/whep?key={key}"

        viewers = [LipstreamClient(url) for _ in range(3)]
        try:
            await viewers[0].connect(whep=f"/channels/{cid}/whep?key={key}")                       # a player with the key
            await viewers[1].connect(whep=f"/channels/{cid}/whep", headers={"Authorization": f"Bearer {key}"})
            await viewers[2].connect(whep=f"/channels/{cid}/whep")                                  # the loopback operator
            assert viewers[0].whep_location.startswith(f"/channels/{cid}/whep/")
            await _wait_for(lambda: _viewer_count(http, url, cid, 3), what="3 viewers")

            events: list[dict] = []
            listener = asyncio.create_task(_collect(viewers[0], {"speech_start", "speech_end"}, "speech_end", events))
            await asyncio.sleep(0.3)
            silent_before = [_speech_rms(v) for v in viewers]
            start = [len(v.audio) for v in viewers]
            await viewers[2].say("Welcome to the shop. Everything you see is on sale today.")
            await asyncio.wait_for(listener, 60)
            assert [e["type"] for e in events] == ["speech_start", "speech_end"]
            for v, n, quiet in zip(viewers, start, silent_before):
                heard = np.concatenate([a.samples for a in v.audio[n:]])
                assert np.sqrt(np.mean(heard.astype(np.float64) ** 2)) > 0.01, "a viewer did not hear the speech"
                assert quiet < 0.01, "the idle channel was not silent"
                assert len(v.video) > 50

            # Rendered once: one worker process, no private sessions, one H.264 encoding for all three.
            status, sessions = await _json(http, "GET", url + "/sessions")
            assert sessions["count"] == 0
            status, stats = await _json(http, "GET", url + f"/channels/{cid}")
            assert stats["viewers"] == 3
            status, health = await _json(http, "GET", url + "/health")
            assert health["channels"] == 1

            # Per viewer: the link as its receiver reports tell it (they come every few seconds).
            async def reported() -> bool:
                status, listing = await _json(http, "GET", url + f"/channels/{cid}/viewers")
                return status == 200 and len(listing["viewers"]) == 3 and all(
                    v["rtt_ms"] is not None and v["delay_ms"] >= 0 for v in listing["viewers"])
            await _wait_for(reported, timeout=30, what="receiver reports from every viewer")
            status, listing = await _json(http, "GET", url + f"/channels/{cid}/viewers")
            assert all(v["video_codec"] == "h264" and v["frames_sent"] > 0 and v["lost_pct"] is not None
                       for v in listing["viewers"]), listing
            assert sum(v["mic"] for v in listing["viewers"]) == 0

            # A viewer leaves with DELETE on its Location; the others keep the stream.
            async with http.delete(url + viewers[1].whep_location) as resp:
                assert resp.status == 200
            await _wait_for(lambda: _viewer_count(http, url, cid, 2), what="2 viewers")
            n = len(viewers[0].video)
            await viewers[0].wait_video(n + 25)
        finally:
            for v in viewers:
                await v.close()
        status, _ = await _json(http, "DELETE", url + f"/channels/{cid}")
        assert status == 200
        status, _ = await _json(http, "GET", url + f"/channels/{cid}")
        assert status == 404


async def _viewer_count(http, url: str, cid: str, n: int) -> bool:
    status, info = await _json(http, "GET", url + f"/channels/{cid}")
    return status == 200 and info["viewers"] == n


async def test_a_channel_speaks_with_nobody_watching_and_lists_in_get_channels(live_server):
    url = live_server.url
    async with aiohttp.ClientSession() as http:
        info = await _channel(http, url, name="Night shift", voice="piper:joe")
        cid = info["channel_id"]
        client = LipstreamClient(url, http=http)
        client.channel_id = cid
        events: list[dict] = []
        listener = asyncio.create_task(_collect(client, {"speech_start", "speech_end"}, "speech_end", events))
        await asyncio.sleep(0.3)
        status, reply = await _json(http, "POST", url + f"/channels/{cid}/say", json={"text": "Nobody is here yet."})
        assert status == 202, reply
        await asyncio.wait_for(listener, 60)
        assert [e["type"] for e in events] == ["speech_start", "speech_end"]

        status, listing = await _json(http, "GET", url + "/channels")
        assert [c["channel_id"] for c in listing["channels"]] == [cid]
        assert listing["channels"][0]["voice"] == "piper:joe" and listing["channels"][0]["name"] == "Night shift"
        status, changed = await _json(http, "PATCH", url + f"/channels/{cid}", json={"name": "Day shift", "voice": "espeak:cmn"})
        assert status == 200 and changed["name"] == "Day shift" and changed["voice"] == "espeak:cmn"
        status, err = await _json(http, "PATCH", url + f"/channels/{cid}", json={"voice": "piper:/etc/passwd"})
        assert status == 400 and "voice" in err["error"]
        await _json(http, "DELETE", url + f"/channels/{cid}")


async def test_the_operators_microphone_drives_the_channel_and_a_key_holders_does_not(make_server):
    token = "o" * 24
    server = await make_server(token=token)
    url, auth = server.url, {"Authorization": f"Bearer {token}"}
    speech = speech_sample("Front_Center")
    async with aiohttp.ClientSession(headers=auth) as http:
        info = await _channel(http, url)
        cid, key = info["channel_id"], info["view_key"]
        # A player holding only the view key sends audio: it must not reach the avatar.
        guest = LipstreamClient(url)
        operator = LipstreamClient(url, http=http)
        watcher = LipstreamClient(url, http=http, channel_id=cid)   # reads the channel's events
        try:
            await guest.connect(whep=f"/channels/{cid}/whep?key={key}", mic=speech, mic_loop=True)
            await asyncio.sleep(2.0)
            # The channel's stats come on its SSE stream: the worker has decoded no packet from the guest.
            assert await _mic_packets_decoded(watcher) == 0
            await operator.connect(whep=f"/channels/{cid}/whep", mic=speech, mic_loop=True)
            await _wait_for(lambda: _mic_decoded_above(watcher, 50), timeout=30, what="the operator's mic in the worker")
            await asyncio.wait_for(_voice_heard(watcher), 30)
        finally:
            await guest.close()
            await operator.close()
        await _json(http, "DELETE", url + f"/channels/{cid}")


async def _voice_heard(client: LipstreamClient) -> None:
    async for event in client.events():
        if event["type"] == "voice_activity" and event["speaking"]:
            return
    raise AssertionError("the channel closed")


async def _stats_event(client: LipstreamClient) -> dict:
    async for event in client.events():
        if event["type"] == "stats":
            return event
    raise AssertionError("the channel closed")


async def _mic_packets_decoded(client: LipstreamClient) -> int:
    return (await asyncio.wait_for(_stats_event(client), 10))["mic_packets_decoded"]


async def _mic_decoded_above(client: LipstreamClient, n: int) -> bool:
    return await _mic_packets_decoded(client) > n


async def test_a_vp8_only_viewer_gets_vp8_beside_the_h264_viewers(live_server):
    """Encoded once per codec: the channel adds a VP8 encoding for a player without H.264."""
    url = live_server.url

    def vp8_only(sdp: str) -> str:
        out, skip_pts = [], set()
        for line in sdp.split("\r\n"):
            if line.startswith("a=rtpmap:") and ("H264" in line or "rtx" in line.lower()):
                skip_pts.add(line.split(":", 1)[1].split()[0])
        for line in sdp.split("\r\n"):
            if line.startswith("m=video"):
                parts = line.split()
                line = " ".join(parts[:3] + [p for p in parts[3:] if p not in skip_pts])
            if any(line.startswith(f"a={k}:{pt}") for k in ("rtpmap", "fmtp", "rtcp-fb") for pt in skip_pts):
                continue
            out.append(line)
        return "\r\n".join(out)

    async with aiohttp.ClientSession() as http:
        info = await _channel(http, url)
        cid = info["channel_id"]
        h264, vp8 = LipstreamClient(url), LipstreamClient(url)
        try:
            await h264.connect(whep=f"/channels/{cid}/whep")
            await vp8.connect(whep=f"/channels/{cid}/whep", edit_offer=vp8_only)
            stats = await asyncio.wait_for(_stats_event(h264), 10)
            assert {v["codec"] for v in stats["variants"]} == {"h264", "vp8"}
            await vp8.wait_video(len(vp8.video) + 25)
            await h264.wait_video(len(h264.video) + 25)
            await vp8.close()
            await _wait_for(lambda: _variants(h264, {"h264"}), timeout=20, what="the VP8 encoding to stop")
        finally:
            await h264.close()
            await vp8.close()
        await _json(http, "DELETE", url + f"/channels/{cid}")


async def _variants(client: LipstreamClient, codecs: set[str]) -> bool:
    stats = await asyncio.wait_for(_stats_event(client), 10)
    return {v["codec"] for v in stats["variants"]} == codecs


async def test_bad_channel_and_whep_requests_get_clear_errors(make_server):
    token = "t" * 24
    server = await make_server(token=token, max_sessions=1)
    url, auth = server.url, {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        for body, word in [({"name": 5}, "name"), ({"name": "x" * 500}, "name"), ({"voice": "nope:nope"}, "voice"),
                           ({"avatar": "../etc"}, "avatar"), ({"bitrate_kbps": 10**9}, "bitrate_kbps"),
                           ({"keyframe_s": "2"}, "keyframe_s")]:
            status, err = await _json(http, "POST", url + "/channels", json=body, headers=auth)
            assert status == 400 and word in err["error"], (body, status, err)
        status, err = await _json(http, "POST", url + "/channels", json={"avatar": "missing"}, headers=auth)
        assert status == 404
        status, err = await _json(http, "POST", url + "/channels", json={})
        assert status == 401
        status, info = await _json(http, "POST", url + "/channels", json={}, headers=auth)
        assert status == 201
        cid, key = info["channel_id"], info["view_key"]
        # capacity is shared with sessions: one worker each
        status, err = await _json(http, "POST", url + "/channels", json={}, headers=auth)
        assert status == 503 and err["reason"] == "capacity"

        whep = url + f"/channels/{cid}/whep"
        sdp_head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        cases = [
            ({}, "application/sdp", sdp_head, 401),                                     # neither token nor key
            ({"Authorization": "Bearer wrong-key"}, "application/sdp", sdp_head, 401),
            ({"Authorization": f"Bearer {key}"}, "application/json", "{}", 415),
            ({"Authorization": f"Bearer {key}"}, "application/sdp", "hello", 400),
            ({"Authorization": f"Bearer {key}"}, "application/sdp", sdp_head + "m=video 9 UDP/TLS/RTP/SAVPF\r\n", 400),
            ({"Origin": "https://evil.example"}, "application/sdp", sdp_head, 403),
        ]
        for headers, ctype, body, want in cases:
            status, err = await _json(http, "POST", whep, data=body.encode(), headers={"Content-Type": ctype, **headers})
            assert status == want and err["error"], (headers, ctype, body[:20], status, err)
        status, err = await _json(http, "POST", url + "/channels/nope/whep?key=x", data=sdp_head.encode(),
                                  headers={"Content-Type": "application/sdp"})
        assert status == 404
        status, err = await _json(http, "POST", whep + f"?key={key}&bg=" + "z" * 10000, data=sdp_head.encode(),
                                  headers={"Content-Type": "application/sdp"})
        assert status in (400, 414), (status, err)
        status, err = await _json(http, "POST", whep + f"?key={key}", data=b"v=0" + b"a" * 70_000,
                                  headers={"Content-Type": "application/sdp"})
        assert status == 413

        # A player on another origin reads why it was refused (the error carries CORS too).
        async with http.post(whep, data=sdp_head.encode(), headers={"Content-Type": "application/sdp",
                                                                     "Origin": "https://player.example"}) as resp:
            assert resp.status == 403 and resp.headers["Access-Control-Allow-Origin"] == "*"
        # CORS for WHEP players on other origins: preflight, and a real answer with the key.
        async with http.options(whep, headers={"Origin": "https://player.example",
                                               "Access-Control-Request-Method": "POST"}) as resp:
            assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == "*"
            assert "Location" in resp.headers["Access-Control-Expose-Headers"]
        player = LipstreamClient(url)
        try:
            await player.connect(whep=f"/channels/{cid}/whep?key={key}", headers={"Origin": "https://player.example"})
            async with http.patch(url + player.whep_location, headers={"Content-Type": "application/trickle-ice-sdpfrag"},
                                  data=b"a=candidate") as resp:
                assert resp.status == 405
            status, err = await _json(http, "DELETE", whep + "/nobody", headers={"Authorization": f"Bearer {key}"})
            assert status == 404
            # A key-holder cannot control the channel.
            status, err = await _json(http, "POST", url + f"/channels/{cid}/say", json={"text": "hi"},
                                      headers={"Authorization": f"Bearer {key}"})
            assert status == 401
            status, err = await _json(http, "DELETE", url + f"/channels/{cid}", headers={"Authorization": f"Bearer {key}"})
            assert status == 401
            async with http.delete(url + player.whep_location, headers={"Authorization": f"Bearer {key}"}) as resp:
                assert resp.status == 200
        finally:
            await player.close()
        status, err = await _json(http, "GET", url + "/channels/nope", headers=auth)
        assert status == 404 and "channel" in err["error"]
        # a channel id is not a session id, and the reverse
        status, err = await _json(http, "GET", url + f"/sessions/{cid}", headers=auth)
        assert status == 404
        status, _ = await _json(http, "DELETE", url + f"/channels/{cid}", headers=auth)
        assert status == 200


async def test_a_chroma_key_viewer_gets_the_avatar_on_green_and_the_others_as_recorded(live_server):
    url = live_server.url
    async with aiohttp.ClientSession() as http:
        info = await _channel(http, url)
        cid, key = info["channel_id"], info["view_key"]
        status, err = await _json(http, "POST", url + f"/channels/{cid}/whep?key={key}&bg=chartreuse-ish",
                                  data=b"v=0\r\n", headers={"Content-Type": "application/sdp"})
        assert status == 400 and "colour" in err["error"].lower(), err
        keyed, plain = LipstreamClient(url), LipstreamClient(url)
        try:
            await keyed.connect(whep=f"/channels/{cid}/whep?key={key}&bg=green")
            await plain.connect(whep=f"/channels/{cid}/whep?key={key}")

            def corner(client: LipstreamClient) -> np.ndarray:
                image = client.video[-1].data
                return image[:40, :40].reshape(-1, 3).mean(axis=0)

            async def green_corner() -> bool:
                c = corner(keyed)
                return c[1] > 200 and c[0] < 60 and c[2] < 60       # BGR: #00FF00

            # The matte is computed once per avatar in the worker, off the frame path: wait for it.
            await _wait_for(green_corner, timeout=90, what="the keyed background")
            c = corner(plain)
            assert not (c[1] > 200 and c[0] < 60 and c[2] < 60), "the plain viewer must see the avatar as recorded"
            stats = await asyncio.wait_for(_stats_event(plain), 10)
            assert {(v["codec"], v["background"]) for v in stats["variants"]} == {("h264", None), ("h264", "#00ff00")}
        finally:
            await keyed.close()
            await plain.close()
        await _json(http, "DELETE", url + f"/channels/{cid}")


async def test_a_voice_preview_is_a_wav_for_the_operator_and_bad_voices_are_400(live_server):
    import io

    from models.audio.pcm import read_wav

    async with aiohttp.ClientSession() as http:
        for voice in ("piper:joe", "espeak:cmn"):
            async with http.post(live_server.url + "/voices/preview", json={"voice": voice}) as resp:
                assert resp.status == 200 and resp.content_type == "audio/wav"
                samples, rate = read_wav(io.BytesIO(await resp.read()))
            assert rate == 16_000 and len(samples) > rate and np.abs(samples).max() > 1000
        for body in ({"voice": "piper:/etc/passwd"}, {"voice": "x" * 10_000}, {}, {"voice": "piper:joe", "text": 5}):
            status, err = await _json(http, "POST", live_server.url + "/voices/preview", json=body)
            assert 400 <= status < 500 and err["error"], (body, status)


async def test_a_channel_on_air_for_days_forgets_what_it_has_finished_saying(tmp_path):
    """Utterances are remembered only while they can still start or end (memory stays flat)."""
    from live.server.channel import Channel, ChannelSpec
    from live.server.config import ServerConfig
    from live.server.tts_service import TtsService

    tts = TtsService.default()
    channel = Channel(ChannelSpec("memory-check"), ServerConfig(data_dir=tmp_path), tts)
    try:
        for _ in range(5000):
            channel.begin_audio_stream("a line").state = "done"
        assert len(channel._utterances) <= 201
        for _ in range(1000):                  # never ended (their audio failed before playing)
            channel.begin_audio_stream("lost")
        assert len(channel._utterances) <= 401
    finally:
        await channel.close("test over")
        tts.close()
