"""The two outgoing WebRTC tracks of a session, stamped from one media clock.

The session's frame pump puts each rendered frame into both tracks at once: the
image into the video track and the frame's audio (the very samples the engine
says play with it) into the audio track.  Timestamps come from the frame index
(``MediaClock``), never from when aiortc happens to pull a frame, so the RTP
timestamps of the two tracks describe the same moment for frame ``i`` and a
receiver's lip-sync (RTCP sender reports) lines them up by construction.

Audio goes out as 20 ms pieces at 48 kHz: aiortc's Opus encoder stamps all the
packets of one call with a single timestamp (so one call must make one packet),
and only 48 kHz passes its resampler without being held back a packet (see
``live.upsampler``).  Audio is never dropped (that would shift it against the video); at an
interrupt its queued pieces are silenced instead.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from live.media_clock import VIDEO_TIME_BASE, MediaClock
from live.mel_stream import SAMPLE_RATE
from live.upsampler import Upsampler3

OUT_FACTOR = 3
OUT_RATE = SAMPLE_RATE * OUT_FACTOR  # 48 kHz: what Opus encodes without resampling (and delaying) it
OUT_TIME_BASE = Fraction(1, OUT_RATE)
AUDIO_PIECE = OUT_RATE // 50         # 20 ms
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
    kind = "audio"

    def __init__(self, clock: MediaClock) -> None:
        super().__init__()
        self.clock = clock
        self.samples_sent = 0            # at 48 kHz
        # Video leaves when it has been rendered (a little off its moment); audio
        # leaves this much off its moment too, so that the sender reports of both
        # tracks put frame i's picture and sound at the same wall-clock time.
        self.send_delay_s = 0.0
        self._upsampler = Upsampler3()
        self._pending = np.zeros(0, dtype=np.float32)   # 48 kHz samples not yet a whole piece
        self._next_pts = 0                               # 48 kHz pts of the next piece
        self._queue: deque[av.AudioFrame] = deque()
        self._waiting: av.AudioFrame | None = None   # taken by aiortc, waiting for its moment
        self._ready = asyncio.Event()

    def put(self, index: int, audio: np.ndarray) -> None:
        """Queue frame ``index``'s int16 16 kHz audio as 20 ms pieces at 48 kHz."""
        pcm = np.asarray(audio, dtype=np.int16).reshape(-1).astype(np.float32) / 32768.0
        if not self._queue and not len(self._pending) and self._next_pts == 0:
            self._next_pts = self.clock.audio_pts(index) * OUT_FACTOR
        self._pending = np.concatenate([self._pending, self._upsampler.push(pcm)])
        while len(self._pending) >= AUDIO_PIECE:
            piece, self._pending = self._pending[:AUDIO_PIECE], self._pending[AUDIO_PIECE:]
            s16 = np.clip(np.round(piece * 32768.0), -32768, 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(s16[None, :], format="s16", layout="mono")
            frame.sample_rate = OUT_RATE
            frame.pts = self._next_pts
            frame.time_base = OUT_TIME_BASE
            self._next_pts += AUDIO_PIECE
            self._queue.append(frame)
        self._ready.set()

    def silence_pending(self) -> int:
        """Zero every queued piece (an interrupt); returns how many 48 kHz samples were silenced."""
        n = len(self._pending)
        self._pending[:] = 0.0
        pending = list(self._queue) + ([self._waiting] if self._waiting is not None else [])
        for frame in pending:
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            n += frame.samples
        return n

    @property
    def queued_samples(self) -> int:
        return sum(f.samples for f in self._queue)

    async def recv(self) -> av.AudioFrame:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        frame = self._waiting = self._queue.popleft()
        # Pace against the clock: a piece never leaves before its moment, so the
        # receiver's jitter buffer sees a steady 20 ms rhythm rather than bursts.
        await self.clock.sleep_until(self.clock.time_of_sample(int(frame.pts) // OUT_FACTOR) + self.send_delay_s)
        self._waiting = None
        if self.readyState != "live":
            raise MediaStreamError
        self.samples_sent += frame.samples
        return frame

    def stop(self) -> None:
        super().stop()
        self._ready.set()
