"""The channel's audio-stream WebSocket: TTS audio in, the channel's speech events out.

Protocol (lipstream ``/channels/{id}/audio-stream``): a JSON header
``{"sample_rate", "channels", "format": "s16le"}``, binary PCM chunks of any size,
``{"type": "end"}`` at the end of a turn, ``{"type": "interrupt"}`` to barge in.
The server answers with JSON events (``ready``, ``queued``, ``speech_start``,
``speech_end``, ``interrupted``, ``error`` ...), handed to ``on_event``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from .channel import LipstreamServer

log = logging.getLogger(__name__)

EventHandler = Callable[[dict], Awaitable[None]]


@dataclass(frozen=True)
class PcmFormat:
    sample_rate: int
    channels: int

    def header(self) -> dict:
        return {"sample_rate": self.sample_rate, "channels": self.channels, "format": "s16le"}


class AudioStream:
    """One audio-stream socket; reopened on the next send if the connection drops."""

    def __init__(self, http: aiohttp.ClientSession, server: LipstreamServer, channel_id: str,
                 on_event: EventHandler) -> None:
        self._http = http
        self._url = server.ws_url(server.channel_path(channel_id) + "/audio-stream")
        self._headers = server.headers()
        self._on_event = on_event
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None
        self._format: PcmFormat | None = None   # the header in force on this socket
        self._in_turn = False

    async def open(self) -> None:
        self._ws = await self._http.ws_connect(self._url, headers=self._headers, heartbeat=20.0)
        self._format = None
        self._reader = asyncio.create_task(self._read(self._ws), name="lipstream-audio-events")

    async def _socket(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None or self._ws.closed:
            await self.open()
        assert self._ws is not None
        return self._ws

    async def send(self, pcm: bytes, fmt: PcmFormat) -> None:
        """One chunk of the current turn (s16le, interleaved); a header goes first when needed."""
        ws = await self._socket()
        if fmt != self._format:
            # A new format starts a new utterance on the server, as a new turn would.
            await ws.send_json(fmt.header())
            self._format = fmt
        self._in_turn = True
        await ws.send_bytes(pcm)

    async def end(self) -> None:
        """The turn is complete: the server speaks what it holds to the end."""
        if self._in_turn and self._ws is not None and not self._ws.closed:
            await self._ws.send_json({"type": "end"})
        self._in_turn = False

    async def interrupt(self) -> None:
        """Barge in: the server drops what it has queued, and the lips close."""
        self._in_turn = False
        ws = await self._socket()
        await ws.send_json({"type": "interrupt"})

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                event = msg.json()
            except ValueError:
                continue
            if isinstance(event, dict):
                try:
                    await self._on_event(event)
                except Exception:   # a handler's bug must not end the socket
                    log.exception("lipstream event handler failed on %s", event.get("type"))

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        self._ws = self._reader = None
