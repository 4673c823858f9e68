"""The one clock a live session's media runs on.

Both outgoing tracks stamp their frames from the frame index alone (video:
``index * 90000 / fps``; audio: the 16 kHz samples before the frame, which the
Opus encoder counts again at 48 kHz), and frames are paced against
``start + index / fps`` on the monotonic clock, never by adding up sleeps.
So however long a session runs, audio and video timestamps cannot drift apart
and neither can drift from wall time: a late frame is late once, not forever.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from fractions import Fraction

from models.audio.mel_stream import SAMPLE_RATE
from models.mouth.timeline import Timeline

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)
AUDIO_TIME_BASE = Fraction(1, SAMPLE_RATE)


@dataclass
class MediaClock:
    fps: float = 25.0
    start: float | None = None  # monotonic seconds of frame 0; set by ``begin``
    timeline: Timeline = field(init=False)

    def __post_init__(self) -> None:
        self.timeline = Timeline(self.fps)

    @property
    def started(self) -> bool:
        return self.start is not None

    def begin(self, at: float | None = None) -> None:
        if self.start is None:
            self.start = time.monotonic() if at is None else at

    def time_of_frame(self, index: int) -> float:
        """Monotonic time at which frame ``index`` is due."""
        assert self.start is not None, "clock not started"
        return self.start + index / self.fps

    def time_of_sample(self, sample: int) -> float:
        assert self.start is not None, "clock not started"
        return self.start + sample / SAMPLE_RATE

    def frame_at(self, t: float) -> int:
        """Index of the frame being shown at monotonic time ``t``."""
        assert self.start is not None, "clock not started"
        return int((t - self.start) * self.fps)

    def video_pts(self, index: int) -> int:
        # Computed from the index each time (not accumulated), so 29.97 fps can't drift.
        return int(round(index * VIDEO_CLOCK_RATE / self.fps))

    def audio_pts(self, index: int) -> int:
        """16 kHz sample index where frame ``index``'s audio starts."""
        return self.timeline.frame_start_sample(index)

    async def sleep_until(self, t: float) -> None:
        delay = t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
