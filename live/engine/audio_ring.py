"""A bounded buffer of the 16 kHz stream, addressed by absolute sample index.

The engine speaks in stream positions ("the audio of frame 1234 starts at
sample 789_760"), never in buffer offsets, so that an endless session keeps a
fixed memory footprint and an interrupt can discard exactly the unplayed part.
"""

from __future__ import annotations

import numpy as np


class AudioRingError(IndexError):
    """A read asked for samples that are not (or no longer) in the ring."""


class AudioRing:
    """Fixed-capacity float32 ring holding stream samples ``[start, end)``.

    Writing past capacity forgets the oldest samples (``start`` moves on), so a
    producer that outruns its consumer loses old audio rather than memory.
    """

    def __init__(self, capacity: int, start: int = 0) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self.start = int(start)
        self.end = int(start)
        self.samples_overwritten = 0  # samples lost because nobody dropped them in time

    def __len__(self) -> int:
        return self.end - self.start

    def write(self, samples: np.ndarray) -> int:
        """Append samples at ``end``; return the new ``end``."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if len(x) > self.capacity:
            # Only the newest `capacity` samples can survive; skip the rest outright.
            skipped = len(x) - self.capacity
            self.samples_overwritten += len(self) + skipped
            self.end += skipped
            self.start = self.end
            x = x[skipped:]
        self._store(self.end, x)
        self.end += len(x)
        if len(self) > self.capacity:
            lost = len(self) - self.capacity
            self.samples_overwritten += lost
            self.start += lost
        return self.end

    def available_from(self, index: int) -> int:
        """How many consecutive samples can be read starting at ``index``."""
        if index < self.start or index >= self.end:
            return 0
        return self.end - index

    def read(self, start: int, n: int) -> np.ndarray:
        """Samples ``[start, start + n)``; AudioRingError if any of them is missing."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if start < self.start or start + n > self.end:
            raise AudioRingError(
                f"samples [{start}, {start + n}) requested but the ring holds [{self.start}, {self.end})"
            )
        return self._load(start, n)

    def read_padded(self, start: int, n: int, fill: float = 0.0) -> np.ndarray:
        """Samples ``[start, start + n)`` with ``fill`` wherever the ring has none
        (before the stream began, already dropped, or not yet written)."""
        out = np.full(n, fill, dtype=np.float32)
        lo, hi = max(start, self.start), min(start + n, self.end)
        if hi > lo:
            out[lo - start : hi - start] = self._load(lo, hi - lo)
        return out

    def drop_until(self, index: int) -> None:
        """Forget samples before ``index`` (they have been consumed)."""
        self.start = max(self.start, min(int(index), self.end))

    def clear_after(self, index: int) -> None:
        """Discard samples from ``index`` on (an interrupt); the next write lands at
        ``index``.  Clearing before ``start`` empties the ring at ``index``."""
        index = int(index)
        if index >= self.end:
            return
        self.end = index
        self.start = min(self.start, index)

    def _store(self, at: int, x: np.ndarray) -> None:
        pos = at % self.capacity
        first = min(len(x), self.capacity - pos)
        self._buf[pos : pos + first] = x[:first]
        self._buf[: len(x) - first] = x[first:]

    def _load(self, at: int, n: int) -> np.ndarray:
        pos = at % self.capacity
        first = min(n, self.capacity - pos)
        if first == n:
            return self._buf[pos : pos + n].copy()
        return np.concatenate([self._buf[pos:], self._buf[: n - first]])
