"""A synthetic channel for broadcast outputs: real H.264 frames and PCM, with a sync probe.

Every ``flash_every``-th frame is a white picture and carries a 1 kHz beep in its
audio; everything else is a dark moving picture over silence.  Played back from
a receiver, flash and beep must land at the same time: ``av_offsets`` pairs them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from live.broadcast.frames import BroadcastFrame
from live.broadcast.h264 import is_keyframe
from live.rtc.video_encoder import VideoEncoder
from models.audio.pcm import SAMPLE_RATE, float_to_int16

BEEP_HZ = 1000.0
FLASH_LUMA = 235
DARK_LUMA = 40


class FlashBeepSource:
    """Encodes the probe picture of frame ``index`` with the channel's own H.264 encoder."""

    def __init__(self, width: int, height: int, fps: float = 25.0, flash_every: int = 25,
                 keyframe_s: float = 2.0) -> None:
        self.width, self.height, self.fps, self.flash_every = width, height, fps, flash_every
        self.encoder = VideoEncoder("h264", width, height, fps, keyframe_s=keyframe_s, constant_bitrate=True)
        self.samples_per_frame = round(SAMPLE_RATE / fps)
        t = np.arange(self.samples_per_frame) / SAMPLE_RATE
        self._beep = float_to_int16(0.5 * np.sin(2 * np.pi * BEEP_HZ * t)).tobytes()
        self._silence = bytes(2 * self.samples_per_frame)

    def request_keyframe(self) -> None:
        self.encoder.request_keyframe()

    def is_flash(self, index: int) -> bool:
        return index % self.flash_every == 0

    def frame(self, index: int) -> BroadcastFrame:
        flash = self.is_flash(index)
        video = self.encoder.encode(self._picture(index, flash), round(index * 90_000 / self.fps))
        return BroadcastFrame(index=index, video=video, keyframe=is_keyframe(video),
                              pcm=self._beep if flash else self._silence)

    def _picture(self, index: int, flash: bool) -> np.ndarray:
        h, w = self.height, self.width
        i420 = np.full((h * 3 // 2, w), 128, np.uint8)
        if flash:
            i420[:h] = FLASH_LUMA
        else:
            i420[:h] = DARK_LUMA
            x = (index * 7) % max(1, w - w // 8)
            i420[h // 4: h // 2, x: x + w // 8] = 120   # a moving bar: real P-frames
        return i420


async def feed_realtime(source: FlashBeepSource, sinks: list[Callable[[BroadcastFrame], None]],
                        stop: asyncio.Event, *, first_index: int = 0, frames: int | None = None,
                        hole: Callable[[int], bool] | None = None) -> int:
    """Encode and hand frames to ``sinks`` on a real-time 1/fps clock until ``stop`` (or ``frames``).

    Like a channel, frame ``i`` is due at ``start + i / fps``; a late frame is late once.
    ``sinks`` is read at every frame, so outputs can join a running feed.  Frames for which
    ``hole(index)`` is true are never made (neither encoded nor sent), like frames a channel lost.
    Returns the next index.
    """
    loop = asyncio.get_running_loop()
    start, index = loop.time(), first_index
    while not stop.is_set() and (frames is None or index - first_index < frames):
        if hole is None or not hole(index):
            frame = source.frame(index)
            for put in sinks:
                put(frame)
        index += 1
        delay = start + (index - first_index) / source.fps - loop.time()
        if delay > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    return index


# ---------------------------------------------------------------------------
# the probe, read back


@dataclass(frozen=True)
class SyncReport:
    flashes_s: list[float]      # receiver timestamps of flash pictures
    beeps_s: list[float]        # receiver timestamps of beep onsets
    offsets_ms: list[float]     # beep minus flash, for each flash that has a beep within half a period


def flash_times(times_s: Iterable[float], luma: Iterable[float]) -> list[float]:
    """Timestamps where the picture turns white (the first frame of each flash)."""
    out, previous = [], False
    for t, y in zip(times_s, luma):
        bright = y > (FLASH_LUMA + DARK_LUMA) / 2
        if bright and not previous:
            out.append(t)
        previous = bright
    return out


def beep_times(audio: np.ndarray, rate: int, start_s: float, min_gap_s: float = 0.3) -> list[float]:
    """Onsets of the beeps in mono float ``audio`` whose first sample is at ``start_s``."""
    hop = max(1, rate // 1000)   # 1 ms resolution
    n = len(audio) // hop
    if n == 0:
        return []
    env = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    loud = env > 0.1
    out: list[float] = []
    last = -1e9
    for i in np.flatnonzero(loud & ~np.concatenate([[False], loud[:-1]])):
        t = start_s + i * hop / rate
        if t - last >= min_gap_s:
            out.append(t)
        last = t
    return out


def av_offsets(flashes_s: list[float], beeps_s: list[float], period_s: float) -> SyncReport:
    offsets = []
    for f in flashes_s:
        near = [b - f for b in beeps_s if abs(b - f) < period_s / 2]
        if near:
            offsets.append(1000 * min(near, key=abs))
    return SyncReport(flashes_s=flashes_s, beeps_s=beeps_s, offsets_ms=offsets)
