"""How much later than its best the microphone's audio arrives.

A chunk of microphone audio that took the network's shortest path arrives
exactly one chunk's duration after the one before it; a delayed one arrives
later than that.  Counting the samples received so far gives each chunk the time
its last sample was spoken (on the sender's clock, up to a constant), so

    transit = arrival - samples_so_far / SAMPLE_RATE

is the chunk's trip time plus an unknown constant.  The spread of the transits
over the last few seconds -- a high quantile minus the minimum -- is how much
headroom the engine needs ahead of a frame so that a late chunk still arrives
in time.  On loopback that is a few milliseconds; on a jittery link tens.

A pause in arrivals longer than ``gap_s`` (the browser muted the microphone, or
stopped sending during silence) starts the estimate afresh: the samples the
sender did not send would otherwise read as a very late chunk.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from models.audio.pcm import SAMPLE_RATE


@dataclass
class ArrivalJitter:
    window_s: float = 2.0       # transits older than this are forgotten
    quantile: float = 98.0      # the late chunk to make room for: one in fifty may wait at the frame
    gap_s: float = 0.25         # a pause in arrivals this long restarts the estimate
    _transits: deque[tuple[float, float]] = field(default_factory=deque)   # (arrival, transit)
    _samples: int = 0
    _last: float = float("-inf")

    def add(self, samples: int, arrival: float) -> None:
        """``samples`` arrived at monotonic time ``arrival`` (in order)."""
        if arrival - self._last > self.gap_s:
            self._transits.clear()
            self._samples = 0
        self._last = arrival
        self._samples += samples
        self._transits.append((arrival, arrival - self._samples / SAMPLE_RATE))
        while self._transits[0][0] < arrival - self.window_s:
            self._transits.popleft()

    def spread_s(self) -> float:
        """Seconds by which a late chunk (the quantile) trails the fastest one; 0 with too few chunks."""
        if len(self._transits) < 2:
            return 0.0
        transits = np.fromiter((t for _, t in self._transits), float, len(self._transits))
        return float(np.percentile(transits, self.quantile) - transits.min())
