"""OpenAI-compatible TTS voices (``openai:<voice>``) against a real local server speaking with piper.

The server (testing/openai_tts_server.py) runs in its own process, streams real
speech and misbehaves on request (its voice names ``error500``, ``slow``, ``hold``
...).  The client is tested on its own, then inside a real live server with a real
aiortc session, and in the studio.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from testing.studio_helpers import new_batch
from testing.webrtc_client import LipstreamClient
from tts.alignment import SpeechError
from tts.openai_tts import OpenAiTts, OpenAiTtsSettings, check_voice_name, speech_url

pytestmark = pytest.mark.timeout(240)

KEY = "sk-test-4f9a2c7e1b"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tts_server() -> Iterator[str]:
    """The stand-in server's base URL (it loads piper before it says it listens)."""
    proc = subprocess.Popen([sys.executable, "-m", "testing.openai_tts_server", "--port", "0", "--key", KEY],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("listening on "), f"the TTS server did not start: {line!r}"
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(10)


def tts(url: str, **kw) -> OpenAiTts:
    return OpenAiTts(OpenAiTtsSettings(url, key=kw.pop("key", KEY), **kw))


async def control(url: str, action: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/{action}") as resp:
            assert resp.status == 200


async def served(url: str) -> dict:
    """What the stand-in server received: requests per voice, the last inputs."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/counts") as resp:
            return await resp.json()


async def collect(engine: OpenAiTts, text: str, voice: str) -> np.ndarray:
    parts = [chunk async for chunk in engine.stream(text, voice)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


# -- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["http://h:8880", "http://h:8880/", "http://h:8880/v1", "http://h:8880/v1/",
                                   "http://h:8880/v1/audio/speech"])
def test_the_url_may_be_given_with_or_without_v1(given):
    assert speech_url(given) == "http://h:8880/v1/audio/speech"
    assert speech_url("https://api.example.com/openai/v1") == "https://api.example.com/openai/v1/audio/speech"


@pytest.mark.parametrize("bad, needle", [
    ("ftp://h/v1", "http"), ("http://user:pw@h/v1", "--openai-tts-key"), ("http://h/v1?x=1", "query"), ("", "empty"),
])
def test_bad_urls_are_refused_at_start(bad, needle):
    with pytest.raises(ValueError, match=needle):
        OpenAiTtsSettings(bad)


def test_settings_never_show_the_key_and_check_their_fields():
    s = OpenAiTtsSettings("http://h/v1", key="sk-very-secret")
    assert "sk-very-secret" not in repr(s) and "sk-very-secret" not in repr(OpenAiTts(s))
    with pytest.raises(ValueError, match="response format"):
        OpenAiTtsSettings("http://h", response_format="mp3")
    with pytest.raises(ValueError, match="letters, digits"):
        OpenAiTtsSettings("http://h", voices=("bad voice",))


@pytest.mark.parametrize("name", ["alloy", "af_bella+af_sky", "af_bella(2)", "中文女", "en-US.v2"])
def test_voice_names_servers_use_are_accepted(name):
    assert check_voice_name(name) == name


@pytest.mark.parametrize("name, needle", [
    ("../../etc/passwd", "letters, digits"), ("a/b", "letters, digits"), ("a b", "letters, digits"),
    ('x"}', "letters, digits"), ("x\n", "letters, digits"), ("a" * 49, "too long"), ("", "needs a name"),
])
def test_malformed_voice_names_are_refused(name, needle):
    with pytest.raises(SpeechError, match=needle):
        check_voice_name(name)


# -- the client against the real server ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["pcm", "wav"])
async def test_real_speech_streams_in_both_formats(tts_server, fmt):
    engine = tts(tts_server, response_format=fmt)
    try:
        assert await engine.discover() == ("joe", "joe_slow")
        chunks = [c async for c in engine.stream("Hello there. This is streamed speech. It has three sentences.",
                                                 "joe")]
        audio = np.concatenate(chunks)
        assert len(chunks) >= 2                          # handed on as it came, not in one piece
        assert 2.0 < len(audio) / 16_000 < 8.0
        assert np.sqrt(np.mean(audio ** 2)) > 0.03       # speech, not silence or noise floor
        slow = await collect(engine, "Hello there. This is streamed speech. It has three sentences.", "joe_slow")
        assert len(slow) > 1.2 * len(audio)              # the voice name reached the server
    finally:
        await engine.close()


async def test_the_first_audio_arrives_before_the_answer_is_complete(tts_server):
    await control(tts_server, "hold")
    engine = tts(tts_server)
    chunks = engine.stream("The first sentence comes now. The second waits for a release.", "hold")
    try:
        # The server sends the first sentence, then holds the response open: only a streaming
        # client can return audio now.
        first = await asyncio.wait_for(anext(chunks), 60)
        assert len(first) > 0.1 * 16_000 and np.abs(first).max() > 0.1
        await control(tts_server, "release")
        rest = [c async for c in chunks]
        assert sum(map(len, rest)) > 16_000            # the second sentence followed
    finally:
        await control(tts_server, "release")
        await chunks.aclose()
        await engine.close()


@pytest.mark.parametrize("voice, needle", [
    ("error500", "HTTP 500): The server had an error"),
    ("nobody", "HTTP 400): Voice 'nobody' is not available"),
    ("slow", "did not answer within 3 s"),
    ("html", "answered with text/html, not audio"),
    ("garbage", "audio is not readable: not a WAV file"),
    ("mp3", "sent audio/mpeg; lipstream asks for pcm"),
    ("empty", "returned no audio"),
    ("cut", "closed the connection in the middle of the audio"),
])
async def test_server_failures_become_clear_errors(tts_server, voice, needle):
    engine = tts(tts_server, timeout_s=3)
    try:
        with pytest.raises(SpeechError) as err:
            await collect(engine, "Hello there. And a second sentence.", voice)
        assert needle in str(err.value)
    finally:
        await engine.close()


async def test_a_wrong_key_is_refused_and_never_repeated(tts_server):
    engine = tts(tts_server, key="sk-wrong-key-1234567")
    try:
        with pytest.raises(SpeechError, match=r"refused the API key \(HTTP 401\): Incorrect API key") as err:
            await collect(engine, "Hello.", "joe")
        assert "wrong-key" not in str(err.value)
    finally:
        await engine.close()


def unused_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_an_unreachable_server_is_a_clear_error():
    engine = tts(f"http://127.0.0.1:{unused_port()}")
    with pytest.raises(SpeechError, match="cannot reach the TTS server"):
        await collect(engine, "Hello.", "joe")
    await engine.close()


async def test_the_blocking_call_works_from_a_worker_thread(tts_server):
    """What the studio does: ``synthesize`` in a thread, on a private event loop."""
    engine = tts(tts_server, response_format="wav")
    audio = await asyncio.to_thread(engine.synthesize, "Hello from a thread.", "joe")
    assert 0.5 < len(audio) / 16_000 < 5 and np.abs(audio).max() > 0.1
    await engine.close()


# -- in the live server and the studio ------------------------------------------------------------


class Events:
    """A session's SSE events, collected in the background."""

    def __init__(self, client: LipstreamClient) -> None:
        self.items: list[dict] = []
        self._task = asyncio.ensure_future(self._run(client))

    async def _run(self, client: LipstreamClient) -> None:
        async for ev in client.events():
            self.items.append(ev)

    async def wait(self, kind: str, utterance_id: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.items:
                if ev["type"] == kind and ev.get("utterance_id") == utterance_id:
                    return ev
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind} for {utterance_id}; got {[e['type'] for e in self.items]}")
            await asyncio.sleep(0.05)

    def close(self) -> None:
        self._task.cancel()


async def _wait_voice_listed(url: str, path: str, voice: str, timeout: float = 60.0) -> list[dict]:
    """The voices at ``path`` once ``voice`` is among them (the server asks the TTS server at start-up)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(url + path) as resp:
                voices = (await resp.json())["voices"]
            if any(v["id"] == voice for v in voices) or time.monotonic() > deadline:
                return voices
            await asyncio.sleep(0.2)


async def test_a_live_session_speaks_with_an_openai_voice_and_survives_its_failures(make_server, tts_server):
    # A long timeout: the barge-in below must not wait for it.
    server = await make_server(openai_tts=OpenAiTtsSettings(tts_server, key=KEY, timeout_s=120))
    voices = await _wait_voice_listed(server.url, "/voices", "openai:joe")
    assert {"openai:joe", "openai:joe_slow"} <= {v["id"] for v in voices}
    studio_voices = await _wait_voice_listed(server.url, "/studio/voices", "openai:joe")
    assert "openai:joe" in {v["id"] for v in studio_voices}

    client = LipstreamClient(server.url)
    await client.connect()
    events = Events(client)
    try:
        for voice, needle in [("openai:../../etc", "letters, digits"), ("openai:" + "a" * 50, "too long"),
                              ("openai:", "not a voice name")]:
            status, reply = await client.request("POST", f"/sessions/{client.session_id}/say",
                                                 json={"text": "Hello.", "voice": voice})
            assert status == 400 and needle in reply["error"], (voice, status, reply)

        said = await client.say("Hello from a remote voice. It costs $12.50 today.", voice="openai:joe")
        start = await events.wait("speech_start", said["utterance_id"])
        await events.wait("speech_end", said["utterance_id"])
        assert start["text"].startswith("Hello from a remote voice")
        # Sentence by sentence, with the price written out for the voice.
        inputs = (await served(tts_server))["inputs"]
        assert inputs[-2:] == ["Hello from a remote voice.", "It costs twelve dollars fifty today."]
        await asyncio.sleep(0.3)    # the last packets of the utterance
        received, _ = client.audio_signal()
        assert np.abs(received).max() > 0.05, "the peer heard nothing"

        # Each failure of the TTS server is an error event; the session goes on.
        for voice, needle in [("error500", "HTTP 500"), ("html", "text/html, not audio"),
                              ("garbage", "not a WAV file"), ("mp3", "audio/mpeg"),
                              ("cut", "closed the connection")]:
            failed = await client.say("This will not work.", voice=f"openai:{voice}")
            error = await events.wait("error", failed["utterance_id"])
            assert needle in error["message"] and KEY not in error["message"], (voice, error)

        # Barge-in while the TTS server holds its answer open: the first sentence plays (it was
        # streamed into the queue), the interrupt does not wait for the server, and what is said
        # next is spoken at once.
        await control(tts_server, "hold")
        held = await client.say("This sentence is streamed first. This one never comes.", voice="openai:hold")
        await events.wait("speech_start", held["utterance_id"])
        await client.interrupt()
        after = await client.say("After the barge-in.", voice="openai:joe")
        await events.wait("speech_end", after["utterance_id"], timeout=30)
        assert not any(e["type"] == "error" and e.get("utterance_id") in (held["utterance_id"], after["utterance_id"])
                       for e in events.items)
    finally:
        await control(tts_server, "release")
        events.close()
        await client.close()

    await _studio_speaks(server.url)


async def test_a_tts_server_that_never_answers_is_an_error_event(make_server, tts_server):
    server = await make_server(openai_tts=OpenAiTtsSettings(tts_server, key=KEY, timeout_s=3, voices=("joe", "slow")))
    client = LipstreamClient(server.url)
    await client.connect()
    events = Events(client)
    try:
        failed = await client.say("Nobody answers this.", voice="openai:slow")
        error = await events.wait("error", failed["utterance_id"])
        assert "did not answer within 3 s" in error["message"]
        ok = await client.say("But this works.", voice="openai:joe")
        await events.wait("speech_end", ok["utterance_id"])
    finally:
        events.close()
        await client.close()


async def _studio_speaks(url: str) -> None:
    """The studio speaks with the same voices."""
    async with aiohttp.ClientSession() as http:
        bid = await new_batch(http, url)
        async with http.post(f"{url}/studio/batches/{bid}/tts",
                             json={"text": "Hello from the studio. It costs $12.50.", "voice": "openai:joe"}) as r:
            assert r.status == 201, await r.text()
            assert 1.0 < (await r.json())["duration"] < 10.0
        async with http.post(f"{url}/studio/batches/{bid}/tts",
                             json={"text": "Hello.", "voice": "openai:error500"}) as r:
            assert r.status == 400 and "HTTP 500" in (await r.json())["error"]


def test_run_live_flags_make_the_settings(monkeypatch):
    import run_live

    monkeypatch.setenv("LIPSTREAM_OPENAI_TTS_KEY", "sk-from-env")
    args = run_live.build_parser().parse_args(
        ["--openai-tts-url", "http://127.0.0.1:8880/v1/", "--openai-tts-model", "kokoro",
         "--openai-tts-voices", "af_bella, af_sky", "--openai-tts-format", "wav", "--openai-tts-timeout", "5"])
    s = run_live.server_config(args).openai_tts
    assert (s.url, s.model, s.key, s.voices, s.response_format, s.timeout_s) == (
        "http://127.0.0.1:8880/v1/audio/speech", "kokoro", "sk-from-env", ("af_bella", "af_sky"), "wav", 5.0)
    assert run_live.server_config(run_live.build_parser().parse_args([])).openai_tts is None
    bad = run_live.build_parser().parse_args(["serve", "--openai-tts-url", "http://127.0.0.1/v1",
                                              "--openai-tts-voices", "a/b"])
    with pytest.raises(ValueError, match="letters, digits"):
        run_live.server_config(bad)
