"""A small OpenAI-compatible TTS server with real speech (piper "joe"), for tests and demos.

    python -m testing.openai_tts_server [--port 8880] [--key sk-test]

``POST /v1/audio/speech`` takes ``{"model", "input", "voice", "response_format"}``
and streams the answer while piper synthesises it: ``pcm`` (24 kHz s16le mono,
OpenAI's format) or ``wav`` (a streaming header: the data size is unknown, 0xFFFFFFFF),
in ~100 ms chunks, each sentence as soon as it is ready.  ``GET /v1/audio/voices``
lists the voices.  With ``--key`` a request without ``Authorization: Bearer <key>``
gets OpenAI's 401.

Voices: ``joe`` and ``joe_slow`` (speaks slower) are real.  The others misbehave on
purpose, so tests can see each failure a real server can produce:

==============  ===================================================================
``error500``    500 with an OpenAI-style error JSON
``slow``        accepts, then sends nothing (the client's timeout must fire)
``hold``        sends the first sentence, then waits until ``POST /release`` (proves
                the client plays audio before the response is complete)
``cut``         sends some audio, then drops the connection
``html``        200 ``text/html`` (a proxy's error page)
``garbage``     200 ``audio/wav`` whose bytes are not a WAV file
``mp3``         200 ``audio/mpeg`` with an MP3 frame header (not what was asked for)
``empty``       200 with no audio at all
==============  ===================================================================

An unknown voice gets a 400, like OpenAI's.  The first line on stdout is
``listening on http://127.0.0.1:<port>`` (tests start it with ``--port 0``).
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from aiohttp import web

OUT_RATE = 24_000
CHUNK_BYTES = OUT_RATE * 2 // 10          # 100 ms of s16le mono
REAL_VOICES = {"joe": 1.0, "joe_slow": 1.4}   # voice -> piper length_scale
ODD_VOICES = ("error500", "slow", "hold", "cut", "html", "garbage", "mp3", "empty")
MAX_INPUT = 4096                          # OpenAI's limit

KEY: web.AppKey[str | None] = web.AppKey("key", str)
RELEASE: web.AppKey[asyncio.Event] = web.AppKey("release", asyncio.Event)
EXECUTOR: web.AppKey[ThreadPoolExecutor] = web.AppKey("executor", ThreadPoolExecutor)
COUNTS: web.AppKey[dict] = web.AppKey("counts", dict)
INPUTS: web.AppKey[list] = web.AppKey("inputs", list)


def _error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status)


def wav_stream_header(rate: int = OUT_RATE) -> bytes:
    """A 16-bit mono WAV header for audio of unknown length (as streaming servers send)."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", unknown) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt \
        + b"data" + struct.pack("<I", unknown)


def sentences_pcm(text: str, length_scale: float):
    """Blocking generator: 24 kHz s16le bytes, one item per sentence piper speaks."""
    from piper.config import SynthesisConfig

    from models.audio.audio_io import StreamResampler
    from models.audio.pcm import float_to_int16
    from tts import piper_voice

    loaded = piper_voice.load_voice(piper_voice.DEFAULT_VOICE, threads=1)
    cfg = SynthesisConfig(length_scale=length_scale)
    resampler = StreamResampler(out_rate=OUT_RATE)
    for chunk in loaded.voice.synthesize(text, syn_config=cfg):
        yield float_to_int16(resampler.push(chunk.audio_float_array, chunk.sample_rate)).tobytes()
    yield float_to_int16(resampler.flush()).tobytes()


async def _send(resp: web.StreamResponse, data: bytes) -> None:
    for i in range(0, len(data), CHUNK_BYTES):
        await resp.write(data[i:i + CHUNK_BYTES])


async def speech(request: web.Request) -> web.StreamResponse:
    key = request.app[KEY]
    if key is not None and request.headers.get("Authorization") != f"Bearer {key}":
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        shown = f"{given[:3]}***{given[-2:]}" if len(given) > 6 else "***"
        return _error(401, f"Incorrect API key provided: {shown}.", code="invalid_api_key")
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "We could not parse the JSON body of your request.")
    if not isinstance(body, dict):
        return _error(400, "The request body must be a JSON object.")
    text, voice, fmt = body.get("input"), body.get("voice"), body.get("response_format", "mp3")
    if not isinstance(text, str) or not text.strip():
        return _error(400, "'input' is a required property")
    if len(text) > MAX_INPUT:
        return _error(400, f"'input' is longer than {MAX_INPUT} characters")
    if voice not in REAL_VOICES and voice not in ODD_VOICES:
        return _error(400, f"Voice '{str(voice)[:40]}' is not available; voices: {', '.join(REAL_VOICES)}")
    if fmt not in ("pcm", "wav"):
        return _error(400, f"response_format '{str(fmt)[:20]}' is not supported here (pcm, wav)")
    request.app[COUNTS][voice] = request.app[COUNTS].get(voice, 0) + 1
    request.app[INPUTS][:] = [*request.app[INPUTS][-49:], text]

    if voice == "error500":
        return _error(500, "The server had an error while processing your request. Sorry about that!",
                      kind="server_error")
    if voice == "html":
        return web.Response(status=200, text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                            content_type="text/html")
    if voice == "garbage":
        noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
        return web.Response(status=200, body=b"JUNK" + noise, content_type="audio/wav")
    if voice == "mp3":
        return web.Response(status=200, body=b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 256,
                            content_type="audio/mpeg")

    resp = web.StreamResponse(headers={"Content-Type": "audio/pcm" if fmt == "pcm" else "audio/wav"})
    await resp.prepare(request)
    if voice == "empty":
        await resp.write_eof()
        return resp
    if voice == "slow":
        await asyncio.sleep(3600)
    if fmt == "wav":
        await resp.write(wav_stream_header())
    loop = asyncio.get_running_loop()
    sentences = sentences_pcm(text, REAL_VOICES.get(voice, 1.0))
    done = object()
    sent = 0
    while (pcm := await loop.run_in_executor(request.app[EXECUTOR], next, sentences, done)) is not done:
        if voice == "cut":
            await _send(resp, pcm[: len(pcm) // 4 * 2])
            request.transport.close()       # mid-answer: the client sees a truncated body
            return resp
        await _send(resp, pcm)
        sent += 1
        if voice == "hold" and sent == 1:
            await request.app[RELEASE].wait()
    await resp.write_eof()
    return resp


async def voices(request: web.Request) -> web.Response:
    return web.json_response({"voices": list(REAL_VOICES)})


async def release(request: web.Request) -> web.Response:
    """Let every ``hold`` answer finish (and the ones after it pass straight through)."""
    request.app[RELEASE].set()
    return web.json_response({"released": True})


async def hold(request: web.Request) -> web.Response:
    """Make ``hold`` answers wait again."""
    request.app[RELEASE].clear()
    return web.json_response({"held": True})


async def counts(request: web.Request) -> web.Response:
    """How many requests each voice got, and the last inputs (tests check what reached the server)."""
    return web.json_response({"voices": request.app[COUNTS], "inputs": request.app[INPUTS]})


def make_app(key: str | None = None) -> web.Application:
    app = web.Application()
    app[KEY] = key
    app[RELEASE] = asyncio.Event()
    app[EXECUTOR] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="piper")
    app[COUNTS] = {}
    app[INPUTS] = []
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_get("/v1/audio/voices", voices)
    app.router.add_post("/release", release)
    app.router.add_post("/hold", hold)
    app.router.add_get("/counts", counts)

    async def shutdown(app: web.Application) -> None:
        app[EXECUTOR].shutdown(wait=False, cancel_futures=True)

    app.on_cleanup.append(shutdown)
    return app


async def _main(host: str, port: int, key: str | None) -> None:
    from tts import piper_voice

    # Load the voice before saying we listen: the first request then costs only synthesis.
    await asyncio.get_running_loop().run_in_executor(None, piper_voice.load_voice, piper_voice.DEFAULT_VOICE, 1)
    runner = web.AppRunner(make_app(key), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"listening on http://{host}:{bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testing.openai_tts_server", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8880)
    ap.add_argument("--key", default=None, help="require this bearer token")
    args = ap.parse_args(argv)
    try:
        asyncio.run(_main(args.host, args.port, args.key))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
