"""The two outgoing WebRTC tracks of a session, stamped from one media clock.

The session's frame pump puts each rendered frame into both tracks at once: the
image into the video track and the frame's audio (the very samples the engine
says play with it) into the audio track.  Timestamps come from the frame index
(``MediaClock``), never from when aiortc happens to pull a frame, so the RTP
timestamps of the two tracks describe the same moment for frame ``i`` and a
receiver's lip-sync (RTCP sender reports) lines them up by construction.

Audio is cut into pieces of at most 20 ms: aiortc's Opus encoder stamps all the
packets of one call with a single timestamp, so one call must yield at most one
packet.  Audio is never dropped (that would shift it against the video); at an
interrupt its queued pieces are silenced instead.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from live.media_clock import AUDIO_TIME_BASE, VIDEO_TIME_BASE, MediaClock
from live.mel_stream import SAMPLE_RATE

AUDIO_PIECE = SAMPLE_RATE // 50     # 20 ms
MAX_VIDEO_QUEUE = 3                 # frames waiting for a slow encoder before the oldest is dropped


class AvatarVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, clock: MediaClock, on_leave: Callable[[int, float], None] | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.on_leave = on_leave          # (frame index, monotonic time) as aiortc takes the frame
        self.frames_sent = 0
        self.frames_dropped = 0
        self._queue: deque[tuple[int, av.VideoFrame]] = deque()
        self._ready = asyncio.Event()

    def put(self, index: int, frame: av.VideoFrame) -> None:
        frame.pts = self.clock.video_pts(index)
        frame.time_base = VIDEO_TIME_BASE
        self._queue.append((index, frame))
        while len(self._queue) > MAX_VIDEO_QUEUE:
            self._queue.popleft()
            self.frames_dropped += 1
        self._ready.set()

    async def recv(self) -> av.VideoFrame:
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
        self.samples_sent = 0
        # Video leaves when it has been rendered (a little after its moment); audio
        # leaves this much after its moment too, so that the sender reports of both
        # tracks put frame i's picture and sound at the same wall-clock time.
        self.send_delay_s = 0.0
        self._queue: deque[av.AudioFrame] = deque()
        self._waiting: av.AudioFrame | None = None   # taken by aiortc, waiting for its moment
        self._ready = asyncio.Event()

    def put(self, index: int, audio: np.ndarray) -> None:
        """Queue frame ``index``'s int16 16 kHz audio, as pieces of at most 20 ms."""
        pcm = np.ascontiguousarray(audio, dtype=np.int16).reshape(-1)
        start = self.clock.audio_pts(index)
        for off in range(0, len(pcm), AUDIO_PIECE):
            piece = pcm[off : off + AUDIO_PIECE]
            frame = av.AudioFrame.from_ndarray(piece[None, :], format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start + off
            frame.time_base = AUDIO_TIME_BASE
            self._queue.append(frame)
        self._ready.set()

    def silence_pending(self) -> int:
        """Zero every queued piece (an interrupt); returns how many samples were silenced."""
        n = 0
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
        await self.clock.sleep_until(self.clock.time_of_sample(int(frame.pts)) + self.send_delay_s)
        self._waiting = None
        if self.readyState != "live":
            raise MediaStreamError
        self.samples_sent += frame.samples
        return frame

    def stop(self) -> None:
        super().stop()
        self._ready.set()
