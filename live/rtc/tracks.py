"""The two outgoing WebRTC tracks of a session, stamped from one media clock.

The session's frame pump puts each rendered frame into both tracks at once: the
image into the video track and the frame's audio (the very samples the engine
says play with it) into the audio track.  Timestamps come from the frame index
(``MediaClock``), never from when aiortc happens to pull a frame, so the RTP
timestamps of the two tracks describe the same moment for frame ``i`` and a
receiver's lip-sync (RTCP sender reports) lines them up by construction.

Both tracks carry media the session's worker already encoded (VP8/H.264 frames,
20 ms Opus packets); aiortc only packetises and sends them, so the server
process stays free for networking.  Audio is never dropped (that would shift it against the video); at an
interrupt its queued pieces are silenced instead.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from live.rtc.media_clock import VIDEO_TIME_BASE, MediaClock
from models.audio.pcm import SAMPLE_RATE

OUT_FACTOR = 3
OUT_RATE = SAMPLE_RATE * OUT_FACTOR  # Opus runs at 48 kHz
OUT_TIME_BASE = Fraction(1, OUT_RATE)
AUDIO_PIECE = OUT_RATE // 50         # one Opus packet: 20 ms
MAX_VIDEO_QUEUE = 25                # 1 s of encoded frames waiting for a stuck sender


class AvatarVideoTrack(MediaStreamTrack):
    """Frames arrive already encoded (by the session's worker); aiortc only packetises them."""

    kind = "video"

    def __init__(
        self,
        clock: MediaClock,
        on_leave: Callable[[int, float], None] | None = None,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.on_leave = on_leave          # (frame index, monotonic time) as aiortc takes the frame
        self.on_overflow = on_overflow    # frames were dropped: the next one must be a keyframe
        self.frames_sent = 0
        self.frames_dropped = 0
        self._queue: deque[tuple[int, av.Packet | av.VideoFrame]] = deque()
        self._ready = asyncio.Event()

    def put(self, index: int, frame: av.Packet | av.VideoFrame) -> None:
        frame.pts = self.clock.video_pts(index)
        frame.time_base = VIDEO_TIME_BASE
        self._queue.append((index, frame))
        if len(self._queue) > MAX_VIDEO_QUEUE:
            # Encoded frames depend on each other: drop them all and restart from a keyframe.
            self.frames_dropped += len(self._queue)
            self._queue.clear()
            if self.on_overflow is not None:
                self.on_overflow()
        self._ready.set()

    async def recv(self) -> av.Packet | av.VideoFrame:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        index, frame = self._queue.popleft()
        self.frames_sent += 1
        if self.on_leave is not None:
            self.on_leave(index, time.monotonic())
        return frame

    def stop(self) -> None:
        super().stop()
        self._ready.set()


class AvatarAudioTrack(MediaStreamTrack):
    """The frame's speech, already Opus-encoded by the worker (20 ms packets at 48 kHz)."""

    kind = "audio"

    def __init__(self, clock: MediaClock) -> None:
        super().__init__()
        self.clock = clock
        self.packets_sent = 0
        # Video leaves when it has been rendered (a little off its moment); audio
        # leaves this much off its moment too, so that the sender reports of both
        # tracks put frame i's picture and sound at the same wall-clock time.
        self.send_delay_s = 0.0
        self._next_pts: int | None = None
        self._queue: deque[list] = deque()            # [pts, payload]
        self._waiting: list | None = None             # taken by aiortc, waiting for its moment
        self._ready = asyncio.Event()

    def put(self, index: int, packets: list[bytes] | tuple[bytes, ...]) -> None:
        """Queue the Opus packets that frame ``index``'s audio completed."""
        if self._next_pts is None:
            self._next_pts = self.clock.audio_pts(index) * OUT_FACTOR
        for payload in packets:
            self._queue.append([self._next_pts, payload])
            self._next_pts += AUDIO_PIECE
        self._ready.set()

    def silence_pending(self, silence: bytes) -> int:
        """Replace every queued packet by ``silence`` (an interrupt); returns how many."""
        pending = list(self._queue) + ([self._waiting] if self._waiting is not None else [])
        for item in pending:
            item[1] = silence
        return len(pending)

    @property
    def queued_packets(self) -> int:
        return len(self._queue)

    async def recv(self) -> av.Packet:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        item = self._waiting = self._queue.popleft()
        pts = item[0]
        # Pace against the clock: a packet never leaves before its moment, so the
        # receiver's jitter buffer sees a steady 20 ms rhythm rather than bursts.
        await self.clock.sleep_until(self.clock.time_of_sample(pts // OUT_FACTOR) + self.send_delay_s)
        self._waiting = None
        if self.readyState != "live":
            raise MediaStreamError
        packet = av.Packet(item[1])
        packet.pts = pts
        packet.time_base = OUT_TIME_BASE
        self.packets_sent += 1
        return packet

    def stop(self) -> None:
        super().stop()
        self._ready.set()
