"""WebSockets for voice agents: an LLM's words, or a TTS's audio, streamed into a channel or session.

    GET /channels/{id}/text          (and /sessions/{id}/text)
        client -> {"type": "text", "text": "…"}     LLM deltas, any size
                  {"type": "flush"}                 end of the turn: speak the rest
                  {"type": "interrupt"}             barge in: drop queued text and audio
                  {"type": "voice", "voice": "…"}   the voice of what follows
    GET /channels/{id}/audio-stream  (and /sessions/{id}/audio-stream)
        client -> {"sample_rate": 24000, "channels": 1, "format": "s16le"}   then binary PCM
                  chunks of any size, then {"type": "end"}; {"type": "interrupt"} as above
        server -> {"type": "queued", "seconds": …} as it goes; a chunk beyond
                  ``MAX_BACKLOG_S`` is refused with an error message, never buffered

Both send the stream's speech events back as JSON (``speech_start`` / ``speech_end``
with their text, ``speech_cancelled``, ``error``, ``closed``).  Text speaks as soon
as a sentence is complete (``tts.text_stream``), so the first words are heard
while the LLM is still writing the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import numpy as np
from aiohttp import WSMsgType, web

from live.http.guard import CONTROL, access
from live.server.channel import Channel, Utterance
from live.server.routes import TTS, stream_from_path
from live.server.tts_service import TtsError
from models.audio.audio_io import AudioDecodeError
from models.audio.pcm_stream import PcmFormat, PcmStream
from tts.text_stream import SentenceStream

log = logging.getLogger(__name__)

MAX_MESSAGE = 1 << 20            # one binary chunk or JSON message
MAX_PENDING_TEXT = 20_000        # characters waiting for a sentence end
MAX_BACKLOG_S = 30.0             # streamed audio the engine may hold ahead of playback
_FORWARDED = frozenset({"speech_queued", "speech_start", "speech_end", "speech_cancelled", "error", "closed"})
_QUEUED_EVERY_S = 0.25


class _Refused(ValueError):
    """A message the socket answers with an error and otherwise ignores."""


async def _open(request: web.Request) -> tuple[Channel, web.WebSocketResponse, asyncio.Task]:
    stream = stream_from_path(request)
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    return stream, ws, asyncio.create_task(_forward_events(stream, ws), name="ws-events")


async def _forward_events(stream: Channel, ws: web.WebSocketResponse) -> None:
    q = stream.events.subscribe()
    try:
        while True:
            event = await q.get()
            if event is None:
                break
            if event.kind in _FORWARDED and not ws.closed:
                await ws.send_json({"type": event.kind, **event.data})
    except (ConnectionResetError, RuntimeError):
        pass
    finally:
        stream.events.unsubscribe(q)
        if not ws.closed:
            await ws.close()


def _json_message(data: str) -> dict:
    try:
        msg = json.loads(data)
    except ValueError:
        raise _Refused("messages are JSON objects") from None
    if not isinstance(msg, dict):
        raise _Refused("messages are JSON objects")
    return msg


async def _serve(ws: web.WebSocketResponse, events: asyncio.Task, handle) -> web.WebSocketResponse:
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
            try:
                await handle(msg)
            except _Refused as e:
                await ws.send_json({"type": "error", "message": str(e)})
    finally:
        events.cancel()
        await asyncio.gather(events, return_exceptions=True)
    return ws


# -- text ------------------------------------------------------------------------------


@access(CONTROL, query_token=True)   # a browser's WebSocket cannot send a header
async def text_socket(request: web.Request) -> web.WebSocketResponse:
    stream, ws, events = await _open(request)
    sentences = SentenceStream()
    voice: str | None = None
    tts = request.app[TTS]

    async def say(parts: list[str]) -> None:
        for part in parts:
            try:
                stream.say(part, voice)
            except TtsError as e:
                await ws.send_json({"type": "error", "message": str(e), "text": part[:200]})

    async def handle(msg) -> None:
        nonlocal voice
        if msg.type != WSMsgType.TEXT:
            raise _Refused('send JSON text messages: {"type": "text", "text": "…"}')
        m = _json_message(msg.data)
        kind = m.get("type")
        if kind == "text":
            delta = m.get("text")
            if not isinstance(delta, str):
                raise _Refused('"text" must be a string')
            if len(sentences.pending) + len(delta) > MAX_PENDING_TEXT:
                raise _Refused(f"more than {MAX_PENDING_TEXT} characters without a sentence end: send a flush")
            stream.touch()
            await say(sentences.push(delta))
        elif kind == "flush":
            await say(sentences.flush())
        elif kind == "interrupt":
            sentences.clear()
            result = stream.interrupt()
            await ws.send_json({"type": "interrupted", **result})
        elif kind == "voice":
            name = m.get("voice")
            if name is not None and not isinstance(name, str):
                raise _Refused('"voice" must be a string like "piper:joe"')
            try:
                if name is not None:
                    tts.resolve(name)
            except TtsError as e:
                raise _Refused(f'"voice": {e}') from None
            voice = name
        else:
            raise _Refused(f'unknown message type {str(kind)[:40]!r} (text, flush, interrupt, voice)')

    return await _serve(ws, events, handle)


# -- audio -------------------------------------------------------------------------------


class _AudioTurn:
    """One utterance arriving as PCM chunks."""

    def __init__(self, stream: Channel, fmt: PcmFormat, label: str) -> None:
        self.stream = stream
        self.fmt = fmt
        self.label = label
        self.pcm = PcmStream(fmt)
        self.utterance: Utterance | None = None

    def push(self, data: bytes) -> None:
        self._send(self.pcm.push(data), last=False)

    def end(self) -> None:
        self._send(self.pcm.flush(), last=True)
        self.pcm = PcmStream(self.fmt)
        self.utterance = None

    def _send(self, samples: np.ndarray, last: bool) -> None:
        if self.utterance is None:
            if not len(samples) and last:
                return
            self.utterance = self.stream.begin_audio_stream(self.label)
            first = True
        else:
            first = False
        self.stream.stream_audio(self.utterance, samples, first=first, last=last)


def _audio_format(m: dict) -> PcmFormat:
    rate, channels, fmt = m.get("sample_rate"), m.get("channels", 1), m.get("format", "s16le")
    if isinstance(rate, bool) or not isinstance(rate, int) or isinstance(channels, bool) or not isinstance(channels, int):
        raise _Refused('the header is {"sample_rate": 24000, "channels": 1, "format": "s16le"} (integers)')
    if not isinstance(fmt, str):
        raise _Refused('"format" must be "s16le" or "f32le"')
    try:
        return PcmFormat(rate, channels, fmt[:20])
    except AudioDecodeError as e:
        raise _Refused(str(e)) from None


@access(CONTROL, query_token=True)
async def audio_socket(request: web.Request) -> web.WebSocketResponse:
    stream, ws, events = await _open(request)
    turn: _AudioTurn | None = None
    last_report = 0.0

    async def report(force: bool = False) -> None:
        nonlocal last_report
        now = time.monotonic()
        if force or now - last_report >= _QUEUED_EVERY_S:
            last_report = now
            await ws.send_json({"type": "queued", "seconds": round(stream.audio_backlog_s(), 3)})

    async def handle(msg) -> None:
        nonlocal turn
        if msg.type == WSMsgType.BINARY:
            if turn is None:
                raise _Refused('send the header first: {"sample_rate": 24000, "channels": 1, "format": "s16le"}')
            backlog = stream.audio_backlog_s()
            if backlog > MAX_BACKLOG_S:
                raise _Refused(f"{backlog:.1f} s of audio is already queued (limit {MAX_BACKLOG_S:.0f} s): "
                               "this chunk was dropped; send in real time or wait for the queue to drain")
            stream.touch()
            try:
                turn.push(msg.data)
            except AudioDecodeError as e:
                raise _Refused(f"unusable audio: {e}") from None
            await report()
            return
        if msg.type != WSMsgType.TEXT:
            return
        m = _json_message(msg.data)
        kind = m.get("type")
        if "sample_rate" in m and kind in (None, "start"):
            if turn is not None and turn.utterance is not None:
                turn.end()
            label = m.get("label") if isinstance(m.get("label"), str) else "audio stream"
            turn = _AudioTurn(stream, _audio_format(m), label[:200])
            await ws.send_json({"type": "ready", "sample_rate": turn.fmt.sample_rate})
        elif kind == "end":
            if turn is not None:
                turn.end()
            await report(force=True)
        elif kind == "interrupt":
            if turn is not None:
                turn.pcm = PcmStream(turn.fmt)
                turn.utterance = None
            result = stream.interrupt()
            await ws.send_json({"type": "interrupted", **result})
        else:
            raise _Refused(f'unknown message type {str(kind)[:40]!r} (a header with "sample_rate", end, interrupt)')

    return await _serve(ws, events, handle)


def setup_agent_sockets(app: web.Application) -> None:
    for prefix in ("/channels/{channel_id}", "/sessions/{session_id}"):
        app.router.add_get(f"{prefix}/text", text_socket)
        app.router.add_get(f"{prefix}/audio-stream", audio_socket)
