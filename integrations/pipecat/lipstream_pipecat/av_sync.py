"""Pairing the channel's audio and video as the server paired them.

The server sends a frame's picture and sound at the same moment of its one media
clock.  On the way here they wait in different buffers (a video frame until the
next one begins, audio until a few packets are queued), so the track that comes
through faster is held back by the difference of the two tracks' transit times --
what a browser does for lip sync.  Transit is *arrival - sender time*; the
unknown offset between the server's clock and ours is the same for both tracks,
so it cancels in the difference.  Frames without a sender time yet (before the
first RTCP report) are released on arrival.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from dataclasses import dataclass, field

from .whep import Received

WINDOW = 100           # frames per track over which the transit floor is taken (2-4 s)
FLOOR_PERCENTILE = 10  # not the minimum: a sender report's own error (up to a packet interval) would set it
MAX_HOLD_S = 0.08      # two video frames: never hold a track longer, whatever the estimates say


@dataclass(order=True)
class _Pending:
    release_at: float
    seq: int
    item: Received = field(compare=False)


class AvPairer:
    """Received frames in, the same frames out in the server's pairing (see module doc)."""

    def __init__(self, window: int = WINDOW, max_hold_s: float = MAX_HOLD_S) -> None:
        self._transit: dict[str, deque[float]] = {"audio": deque(maxlen=window), "video": deque(maxlen=window)}
        self._max_hold_s = max_hold_s
        self._heap: list[_Pending] = []
        self._seq = itertools.count()
        self._arrived = asyncio.Event()

    def transit_floor(self, kind: str) -> float | None:
        """The lowest *arrival - sender time* of recent ``kind`` frames (None before any)."""
        seen = self._transit[kind]
        if not seen:
            return None
        ordered = sorted(seen)
        return ordered[len(ordered) * FLOOR_PERCENTILE // 100]

    def hold_s(self, kind: str) -> float:
        """How long frames of ``kind`` are held for the other track to catch up."""
        own, other = self.transit_floor(kind), self.transit_floor("video" if kind == "audio" else "audio")
        if own is None or other is None:
            return 0.0
        # The floor of each track's transit: its fixed part, without the per-frame jitter.
        return min(self._max_hold_s, max(0.0, other - own))

    def push(self, item: Received) -> None:
        if item.sender_time is not None:
            self._transit[item.kind].append(item.arrival - item.sender_time)
        release = item.arrival + self.hold_s(item.kind)
        heapq.heappush(self._heap, _Pending(release, next(self._seq), item))
        self._arrived.set()

    async def next(self) -> Received:
        """The next frame due, waiting until it is."""
        while True:
            if self._heap:
                wait = self._heap[0].release_at - time.monotonic()
                if wait <= 0:
                    return heapq.heappop(self._heap).item
            else:
                wait = None
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except asyncio.TimeoutError:
                pass

    def clear(self) -> int:
        """Drop what is held (an interruption); returns how many frames were dropped."""
        n = len(self._heap)
        self._heap.clear()
        return n

    def __len__(self) -> int:
        return len(self._heap)
