"""A real WebRTC viewer for tests and benchmarks (aiortc, no mocks).

``LipstreamClient`` connects to a running server exactly as a browser would
(``POST /offer``), optionally sends a microphone track played from a numpy array
in real time, and records what it receives: decoded video frames and audio, each
with its RTP timestamp and arrival time.  It also records the server's RTCP
sender reports, which tie each track's RTP timestamps to the sender's wall clock
-- the same information a browser uses for lip sync -- so ``sender_time()`` says
when the server sent any received sample or frame.  On one machine that clock is
this process's ``time.time()``, which makes latency measurable to a millisecond.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtcpSrPacket

NTP_UNIX_OFFSET = 2_208_988_800
MIC_RATE = 48_000
MIC_PIECE = 960  # 20 ms at 48 kHz


def ntp_to_unix(ntp: int) -> float:
    return (ntp >> 32) - NTP_UNIX_OFFSET + (ntp & 0xFFFFFFFF) / 2**32


def _resample(samples: np.ndarray, rate: int, out_rate: int) -> np.ndarray:
    if rate == out_rate:
        return samples.astype(np.float32)
    n = int(round(len(samples) * out_rate / rate))
    return np.interp(np.arange(n) * rate / out_rate, np.arange(len(samples)), samples).astype(np.float32)


class ArrayAudioTrack(MediaStreamTrack):
    """A microphone that plays ``samples`` in real time (then silence, or ends).

    ``send_times[k]`` is the ``time.time()`` at which 20 ms piece ``k`` (samples
    ``[k*320, (k+1)*320)`` of the 16 kHz input) was handed to the encoder.
    """

    kind = "audio"

    def __init__(self, samples: np.ndarray, sample_rate: int = 16_000, then_silence: bool = True,
                 loop: bool = False) -> None:
        super().__init__()
        self.samples = _resample(np.asarray(samples, dtype=np.float32), sample_rate, MIC_RATE)
        self.then_silence = then_silence
        self.loop = loop
        self.send_times: list[float] = []
        self._start: float | None = None
        self._k = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._k * MIC_PIECE / MIC_RATE
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lo = self._k * MIC_PIECE
        if self.loop and len(self.samples) >= MIC_PIECE:
            at = lo % (len(self.samples) - len(self.samples) % MIC_PIECE)
            chunk = self.samples[at : at + MIC_PIECE]
        else:
            chunk = self.samples[lo : lo + MIC_PIECE]
        if len(chunk) == 0 and not self.then_silence:
            self.stop()
            raise MediaStreamError
        if len(chunk) < MIC_PIECE:
            chunk = np.pad(chunk, (0, MIC_PIECE - len(chunk)))
        pcm = (np.clip(chunk, -1, 1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = MIC_RATE
        frame.pts = lo
        frame.time_base = fractions.Fraction(1, MIC_RATE)
        self.send_times.append(time.time())
        self._k += 1
        return frame


@dataclass
class VideoSample:
    pts: int          # 90 kHz, relative to the first received frame
    arrival: float    # time.time()
    data: object      # whatever the frame_fn kept (default: BGR ndarray)


@dataclass
class AudioSample:
    pts: int          # 48 kHz, relative to the first received packet
    arrival: float
    samples: np.ndarray  # float32 mono 48 kHz


@dataclass
class SenderReport:
    ntp_unix: float   # sender wall clock (time.time() on this machine)
    rtp: int          # raw RTP timestamp
    received: float


@dataclass
class LipstreamClient:
    base_url: str
    http: aiohttp.ClientSession | None = None
    frame_fn: Callable[[av.VideoFrame], object] = lambda f: f.to_ndarray(format="bgr24")
    video: list[VideoSample] = field(default_factory=list)
    audio: list[AudioSample] = field(default_factory=list)
    reports: dict[str, list[SenderReport]] = field(default_factory=lambda: {"audio": [], "video": []})
    session_id: str | None = None
    channel_id: str | None = None       # set by connect(whep=...): the say/events calls go to the channel
    whep_location: str | None = None    # the WHEP resource (DELETE it to leave)
    pc: RTCPeerConnection | None = None
    mic: ArrayAudioTrack | None = None
    _own_http: bool = False
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _receivers: dict[str, object] = field(default_factory=dict)
    _first_video: asyncio.Event = field(default_factory=asyncio.Event)

    # -- connection ----------------------------------------------------------

    async def connect(
        self,
        avatar: str | None = None,
        mic: np.ndarray | None = None,
        mic_rate: int = 16_000,
        mic_loop: bool = False,
        receive_audio: bool = True,
        timeout: float = 30.0,
        mic_track: MediaStreamTrack | None = None,
        edit_offer: Callable[[str], str] | None = None,
        before_answer: Callable[[str], Awaitable[None]] | None = None,
        whep: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Connect like a browser; ``edit_offer`` may rewrite the SDP before it is posted
        (tests add foreign ICE candidates with it); ``before_answer(session_id)`` runs between
        the server's answer and ICE (tests drive a session before its peer connects).

        ``whep="/channels/{id}/whep?…"``: join a channel as a WHEP player instead (RFC 9725:
        the bare SDP as the body, the answer as the reply, a Location to DELETE)."""
        if self.http is None:
            self.http = aiohttp.ClientSession()
            self._own_http = True
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        if mic is not None or mic_track is not None:
            self.mic = mic_track if mic_track is not None else ArrayAudioTrack(mic, mic_rate, loop=mic_loop)
            t = pc.addTransceiver(self.mic, direction="sendrecv" if receive_audio else "sendonly")
        elif receive_audio:
            t = pc.addTransceiver("audio", direction="recvonly")
        else:
            t = None
        v = pc.addTransceiver("video", direction="recvonly")
        if t is not None:
            self._hook(t.receiver, "audio")
        self._hook(v.receiver, "video")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            reader = self._read_video if track.kind == "video" else self._read_audio
            self._tasks.append(asyncio.ensure_future(reader(track)))

        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp if edit_offer is None else edit_offer(pc.localDescription.sdp)
        if whep is not None:
            return await self._whep(whep, sdp, headers or {}, timeout)
        body = {"sdp": sdp, "type": pc.localDescription.type}
        if avatar is not None:
            body["avatar"] = avatar
        async with self.http.post(f"{self.base_url}/offer", json=body) as resp:
            reply = await resp.json()
            if resp.status != 200:
                await pc.close()
                raise ConnectionError(f"offer refused: {resp.status} {reply}")
        self.session_id = reply["session_id"]
        if before_answer is not None:
            await before_answer(self.session_id)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type=reply["type"]))
        await asyncio.wait_for(self._first_video.wait(), timeout)
        return self.session_id

    async def _whep(self, path: str, sdp: str, headers: dict[str, str], timeout: float) -> str:
        async with self.http.post(f"{self.base_url}{path}", data=sdp.encode(),
                                  headers={"Content-Type": "application/sdp", **headers}) as resp:
            if resp.status != 201:
                await self.pc.close()
                raise ConnectionError(f"WHEP offer refused: {resp.status} {await resp.text()}")
            if resp.content_type != "application/sdp":
                raise ConnectionError(f"WHEP answer has Content-Type {resp.content_type!r}")
            answer_sdp = await resp.text()
            self.whep_location = resp.headers["Location"]
        self.channel_id = path.split("/")[2]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        await asyncio.wait_for(self._first_video.wait(), timeout)
        return self.whep_location

    @property
    def stream_path(self) -> str:
        return f"/channels/{self.channel_id}" if self.channel_id else f"/sessions/{self.session_id}"

    def _hook(self, receiver, kind: str) -> None:
        self._receivers[kind] = receiver
        original = receiver._handle_rtcp_packet

        async def handle(packet) -> None:
            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                self.reports[kind].append(SenderReport(ntp_to_unix(info.ntp_timestamp), info.rtp_timestamp, time.time()))
            await original(packet)

        receiver._handle_rtcp_packet = handle

    async def _read_video(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.video.append(VideoSample(int(frame.pts), time.time(), self.frame_fn(frame)))
                self._first_video.set()
        except MediaStreamError:
            pass

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                pcm = frame.to_ndarray()
                mono = pcm.reshape(-1, len(frame.layout.channels)).mean(axis=1) if pcm.shape[0] == 1 else pcm.mean(axis=0)
                self.audio.append(AudioSample(int(frame.pts), time.time(), (mono / 32768.0).astype(np.float32)))
        except MediaStreamError:
            pass

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self.pc is not None:
            await self.pc.close()
        if self._own_http and self.http is not None:
            await self.http.close()

    # -- API calls -----------------------------------------------------------

    async def request(self, method: str, path: str, **kwargs) -> tuple[int, dict]:
        assert self.http is not None
        async with self.http.request(method, f"{self.base_url}{path}", **kwargs) as resp:
            try:
                return resp.status, await resp.json()
            except (aiohttp.ContentTypeError, json.JSONDecodeError):
                return resp.status, {"text": await resp.text()}

    async def say(self, text: str, voice: str | None = None, interrupt: bool = False) -> dict:
        body: dict = {"text": text, "interrupt": interrupt}
        if voice:
            body["voice"] = voice
        status, reply = await self.request("POST", f"{self.stream_path}/say", json=body)
        if status != 202:
            raise RuntimeError(f"say failed: {status} {reply}")
        return reply

    async def interrupt(self) -> dict:
        status, reply = await self.request("POST", f"{self.stream_path}/interrupt")
        if status != 200:
            raise RuntimeError(f"interrupt failed: {status} {reply}")
        return reply

    async def stats(self) -> dict:
        return (await self.request("GET", self.stream_path))[1]

    async def events(self) -> AsyncIterator[dict]:
        """Parsed SSE events of this session, until it closes."""
        assert self.http is not None
        async with self.http.get(f"{self.base_url}{self.stream_path}/events",
                                 timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
            data = []
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and data:
                    yield json.loads("\n".join(data))
                    data = []

    async def wait_video(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.video) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.video)} of {n} video frames arrived in {timeout} s")
            await asyncio.sleep(0.02)

    # -- analysis ------------------------------------------------------------

    def rtp_origin(self, kind: str) -> int:
        """Raw RTP timestamp of the first received frame (pts are relative to it)."""
        mapper = getattr(self._receivers[kind], "_RTCRtpReceiver__timestamp_mapper")
        return int(mapper._origin)

    def sender_time(self, kind: str, pts: np.ndarray | int, window_s: float = 3.0) -> np.ndarray:
        """When the server sent the media at received ``pts`` (its wall clock, via RTCP SR).

        Each sender report maps one RTP timestamp to the wall time its packet left.
        One packet that left late (a busy moment) would shift everything mapped from
        its report, so each pts uses the median mapping of the reports within
        ``window_s`` of it (the mapping itself may move slowly as the server adapts).
        """
        reports = self.reports[kind]
        if not reports:
            raise RuntimeError(f"no RTCP sender report received for {kind} yet")
        rate = 90_000 if kind == "video" else 48_000
        origin = self.rtp_origin(kind)
        rel = np.array([(sr.rtp - origin + 2**31) % 2**32 - 2**31 for sr in reports], dtype=np.float64) / rate
        zero = np.array([sr.ntp_unix for sr in reports]) - rel   # wall time of received pts 0, per report
        order = np.argsort(rel)
        rel, zero = rel[order], zero[order]
        local = np.array([np.median(zero[np.abs(rel - r) <= window_s]) for r in rel])
        t = np.asarray(pts, dtype=np.float64) / rate
        i = np.clip(np.searchsorted(rel, t), 1, max(1, len(rel) - 1))
        if len(rel) == 1:
            return local[0] + t
        nearest = np.where(np.abs(t - rel[i - 1]) <= np.abs(rel[i] - t), i - 1, i)
        return local[nearest] + t

    def audio_signal(self) -> tuple[np.ndarray, int]:
        """Received audio laid out by pts (gaps as silence): (samples at 48 kHz, pts of sample 0)."""
        if not self.audio:
            return np.zeros(0, np.float32), 0
        start = self.audio[0].pts
        end = max(a.pts + len(a.samples) for a in self.audio)
        out = np.zeros(end - start, np.float32)
        for a in self.audio:
            out[a.pts - start : a.pts - start + len(a.samples)] = a.samples
        return out, start
