"""Small running statistics of a stream: recent windows and whole-stream histograms."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

WINDOW = 250           # frames / latency samples kept for the recent figures


@dataclass
class Window:
    """Recent values of one statistic."""

    values: deque = field(default_factory=lambda: deque(maxlen=WINDOW))

    def add(self, v: float) -> None:
        self.values.append(v)

    def pct(self, q: float) -> float | None:
        return float(np.percentile(np.fromiter(self.values, float), q)) if self.values else None

    def mean(self) -> float | None:
        return float(np.mean(np.fromiter(self.values, float))) if self.values else None


@dataclass
class Histogram:
    """Whole-stream distribution in 1 ms bins (the window above forgets; this doesn't)."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(2001, dtype=np.int64))

    def add(self, ms: float) -> None:
        self.counts[min(max(int(ms), 0), len(self.counts) - 1)] += 1

    def pct(self, q: float) -> float | None:
        total = int(self.counts.sum())
        if total == 0:
            return None
        return float(np.searchsorted(np.cumsum(self.counts), q / 100.0 * total))


def rounded(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)
