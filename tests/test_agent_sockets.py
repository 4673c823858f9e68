"""The agent sockets against a real server: LLM deltas and streamed PCM into a channel and a session.

A real channel (engine worker, piper TTS) receives the deltas; speech events come back
on the same socket.  The audio socket gets real recorded speech at 24 kHz.
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


async def _channel(http: aiohttp.ClientSession, url: str) -> str:
    async with http.post(url + "/channels", json={}) as resp:
        assert resp.status == 201
        return (await resp.json())["channel_id"]


async def _next(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        msg = await asyncio.wait_for(ws.receive_json(), max(0.1, deadline - time.monotonic()))
        if msg["type"] == kind:
            return msg


async def test_text_deltas_speak_each_sentence_as_soon_as_it_is_complete(live_server):
    url = live_server.url
    async with aiohttp.ClientSession() as http:
        cid = await _channel(http, url)
        async with http.ws_connect(url + f"/channels/{cid}/text") as ws:
            # The LLM writes word by word; the first sentence ends mid-turn.
            for delta in ["Hel", "lo there", ". How are", " you"]:
                await ws.send_json({"type": "text", "text": delta})
            start = await _next(ws, "speech_start")
            assert start["text"] == "Hello there.", start
            await ws.send_json({"type": "text", "text": " today"})
            await ws.send_json({"type": "flush"})
            ends = []
            while len(ends) < 2:
                ends.append(await _next(ws, "speech_end"))
            assert [e["text"] for e in ends] == ["Hello there.", "How are you today"]

            # Barge-in: a long turn is cut, its queued sentences cancelled.
            await ws.send_json({"type": "text", "text": "One. Two. Three. Four. Five. Six. Seven."})
            await _next(ws, "speech_start")
            await ws.send_json({"type": "interrupt"})
            ack = await _next(ws, "interrupted")
            assert ack["interrupted"] and ack["cancelled"], ack

            # Bad messages: an error each, the socket stays usable.
            for bad in ["not json", '["a"]', '{"type": "text", "text": 5}', '{"type": "voice", "voice": "nope:x"}',
                        '{"type": "dance"}']:
                await ws.send_str(bad)
                err = await _next(ws, "error")
                assert err["message"]
            await ws.send_bytes(b"\x00\x01")
            assert (await _next(ws, "error"))["message"]
            await ws.send_json({"type": "voice", "voice": "espeak:cmn"})
            await ws.send_json({"type": "text", "text": "你好。"})
            assert (await _next(ws, "speech_start"))["text"] == "你好。"
        await http.delete(url + f"/channels/{cid}")


async def test_streamed_pcm_is_spoken_and_a_runaway_sender_is_refused_not_buffered(live_server):
    url = live_server.url
    speech = speech_sample("Front_Center")                      # 16 kHz float32, real recorded speech
    rate = 24_000
    pcm24 = np.interp(np.arange(int(len(speech) * rate / 16_000)) * 16_000 / rate, np.arange(len(speech)), speech)
    s16 = (np.clip(pcm24, -1, 1) * 32767).astype("<i2").tobytes()
    async with aiohttp.ClientSession() as http:
        cid = await _channel(http, url)
        viewer = LipstreamClient(url)
        await viewer.connect(whep=f"/channels/{cid}/whep")
        try:
            async with http.ws_connect(url + f"/channels/{cid}/audio-stream") as ws:
                await ws.send_bytes(s16[:960])                  # no header yet
                assert "header" in (await _next(ws, "error"))["message"]
                await ws.send_json({"sample_rate": 24_000, "channels": 1, "format": "s16le"})
                await _next(ws, "ready")
                n0 = len(viewer.audio)
                chunk = 24_000 // 10 * 2                        # 100 ms, sent a little faster than real time
                for i in range(0, len(s16), chunk):
                    await ws.send_bytes(s16[i:i + chunk])
                    await asyncio.sleep(0.05)
                await ws.send_json({"type": "end"})
                start = await _next(ws, "speech_start")
                await _next(ws, "speech_end")
                assert start["source"] == "stream"
                heard = np.concatenate([a.samples for a in viewer.audio[n0:]])
                assert np.sqrt(np.mean(heard.astype(np.float64) ** 2)) > 0.01

                # 60 s at once: the server keeps at most its backlog limit and says so.
                await ws.send_json({"sample_rate": 24_000, "channels": 1, "format": "s16le"})
                await _next(ws, "ready")
                second = b"\x00\x10" * 24_000
                refused = None
                for _ in range(60):
                    await ws.send_bytes(second)
                ws_msgs = []
                while refused is None:
                    msg = await asyncio.wait_for(ws.receive_json(), 30)
                    ws_msgs.append(msg)
                    if msg["type"] == "error":
                        refused = msg
                assert "queued" in refused["message"] and "limit" in refused["message"]
                queued = [m["seconds"] for m in ws_msgs if m["type"] == "queued"]
                assert queued and max(queued) < 40, queued
                await ws.send_json({"type": "interrupt"})
                await _next(ws, "interrupted")

                await ws.send_json({"sample_rate": 7, "channels": 1, "format": "s16le"})
                assert (await _next(ws, "error"))["message"]
                await ws.send_json({"sample_rate": 16000, "channels": 1, "format": "mp3"})
                assert (await _next(ws, "error"))["message"]
        finally:
            await viewer.close()
        await http.delete(url + f"/channels/{cid}")


async def test_sessions_take_the_same_sockets_and_foreign_origins_are_refused(make_server):
    token = "s" * 24
    server = await make_server(token=token)
    url = server.url
    client = LipstreamClient(url)
    client_http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})
    client.http = client_http
    try:
        await client.connect()
        async with client_http.ws_connect(url + f"/sessions/{client.session_id}/text") as ws:
            await ws.send_json({"type": "text", "text": "A session speaks too."})
            await ws.send_json({"type": "flush"})
            assert (await _next(ws, "speech_start"))["text"] == "A session speaks too."
        async with aiohttp.ClientSession() as anon:
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await anon.ws_connect(url + f"/sessions/{client.session_id}/text")
            assert e.value.status == 401
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await anon.ws_connect(url + f"/sessions/{client.session_id}/audio-stream?token={token}",
                                      headers={"Origin": "https://evil.example"})
            assert e.value.status == 403
            # a browser's WebSocket carries the token in the query
            async with anon.ws_connect(url + f"/sessions/{client.session_id}/audio-stream?token={token}") as ws:
                await ws.send_json({"type": "end"})
                assert (await _next(ws, "queued"))["seconds"] >= 0
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await anon.ws_connect(url + f"/sessions/nope/text?token={token}")
            assert e.value.status == 404
    finally:
        await client.close()
        await client_http.close()
