"""Watching a channel over WHEP with aiortc: decoded frames, each with the server's send time.

The channel stamps its audio and video from one media clock.  Each track's RTP
timestamps start at a random origin, and the RTCP sender reports tie them to the
server's wall clock -- the information a browser uses for lip sync.  ``Received``
carries that *sender time* (None until the track's first report), so the two tracks
can be paired as the server paired them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtcpSrPacket

from .channel import LipstreamError, LipstreamServer

log = logging.getLogger(__name__)

_NTP_UNIX = 2_208_988_800
_RATES = {"audio": 48_000, "video": 90_000}


@dataclass
class Received:
    kind: str                   # "audio" | "video"
    frame: av.AudioFrame | av.VideoFrame
    arrival: float              # time.monotonic() when decoded
    sender_time: float | None   # the server's time.time() when it sent this frame


@dataclass
class _SenderReport:
    ntp_unix: float
    rtp: int


class _TrackClock:
    """Maps a received frame's pts to the sender's clock via the latest RTCP sender report."""

    def __init__(self, kind: str, receiver) -> None:
        self.kind = kind
        self.rate = _RATES[kind]
        self.receiver = receiver
        self.report: _SenderReport | None = None
        self._hook()

    def _hook(self) -> None:
        # aiortc exposes no sender reports: wrap its RTCP handler (without it, frames
        # just carry no sender time and are paired by arrival).
        original = getattr(self.receiver, "_handle_rtcp_packet", None)
        if original is None:
            return

        async def handle(packet) -> None:
            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                ntp = info.ntp_timestamp
                self.report = _SenderReport((ntp >> 32) - _NTP_UNIX + (ntp & 0xFFFFFFFF) / 2**32, info.rtp_timestamp)
            await original(packet)

        self.receiver._handle_rtcp_packet = handle

    def _origin(self) -> int | None:
        mapper = getattr(self.receiver, "_RTCRtpReceiver__timestamp_mapper", None)
        return getattr(mapper, "_origin", None)

    def sender_time(self, pts: int | None) -> float | None:
        origin = self._origin()
        if self.report is None or origin is None or pts is None:
            return None
        # pts is relative to the first packet's RTP timestamp; the report's is raw (and wraps).
        delta = (origin + pts - self.report.rtp + 2**31) % 2**32 - 2**31
        return self.report.ntp_unix + delta / self.rate


AUDIO_PREFETCH = 2   # Opus packets (20 ms each) aiortc queues before releasing audio


def _shorten_audio_prefetch(receiver) -> None:
    # aiortc holds 4 audio packets (80 ms) before releasing one, while a video frame
    # waits only for the next one to begin (40 ms at 25 fps).  The picture would then
    # be held 40 ms to stay in sync with the sound; 2 packets still absorb the jitter
    # of the loopback or LAN link this client runs over.  Private in aiortc: skipped
    # when absent, which only costs that latency.
    buffer = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
    if buffer is not None and hasattr(buffer, "_prefetch"):
        buffer._prefetch = AUDIO_PREFETCH


class WhepPlayer:
    """A receive-only WHEP client of one channel; ``on_frame`` gets every decoded frame."""

    def __init__(self, http: aiohttp.ClientSession, server: LipstreamServer, channel_id: str,
                 on_frame: Callable[[Received], None], *, view_key: str | None = None) -> None:
        self._http = http
        self._server = server
        self._channel_id = channel_id
        self._on_frame = on_frame
        self._view_key = view_key
        self._pc: RTCPeerConnection | None = None
        self._location: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._clocks: dict[str, _TrackClock] = {}

    def _auth(self) -> dict[str, str]:
        # The control token, or else the channel's view key, authorizes watching.
        secret = self._server.token or self._view_key
        return {"Authorization": f"Bearer {secret}"} if secret else {}

    async def connect(self) -> None:
        self._pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        for kind in ("audio", "video"):
            t = pc.addTransceiver(kind, direction="recvonly")
            self._clocks[kind] = _TrackClock(kind, t.receiver)
            if kind == "audio":
                _shorten_audio_prefetch(t.receiver)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.create_task(self._read(track), name=f"whep-{track.kind}"))

        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Content-Type": "application/sdp", **self._auth()}
        path = self._server.channel_path(self._channel_id) + "/whep"
        async with self._http.post(self._server.url(path), data=pc.localDescription.sdp.encode(),
                                   headers=headers) as resp:
            if resp.status != 201:
                await pc.close()
                raise LipstreamError(f"WHEP offer refused: {resp.status} {(await resp.text())[:200]}")
            answer = await resp.text()
            self._location = resp.headers.get("Location")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def _read(self, track: MediaStreamTrack) -> None:
        clock = self._clocks[track.kind]
        try:
            while True:
                frame = await track.recv()
                self._on_frame(Received(track.kind, frame, time.monotonic(), clock.sender_time(frame.pts)))
        except MediaStreamError:
            pass

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._location:
            try:
                async with self._http.delete(self._server.url(self._location), headers=self._auth()):
                    pass
            except aiohttp.ClientError:
                pass   # the server may already be gone; the peer connection closes anyway
        if self._pc is not None:
            await self._pc.close()
