"""How late the server's event loop runs: the number that says whether it is overloaded.

Everything real-time in the server process (pacing frames into the tracks, RTP,
ICE consent answers) waits on the event loop; if the loop falls behind, every
session feels it.  A tiny task sleeps 50 ms at a time and records how much
longer than that it actually took.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np

_PERIOD_S = 0.05


class LoopMonitor:
    def __init__(self, window: int = 1200) -> None:
        self._lags: deque[float] = deque(maxlen=window)   # last minute at 50 ms
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(_PERIOD_S)
            self._lags.append((time.monotonic() - t0 - _PERIOD_S) * 1000.0)

    def summary(self) -> dict[str, float | None]:
        if not self._lags:
            return {"p50": None, "p95": None, "max": None}
        lags = np.fromiter(self._lags, float)
        return {"p50": round(float(np.percentile(lags, 50)), 1), "p95": round(float(np.percentile(lags, 95)), 1),
                "max": round(float(lags.max()), 1)}
