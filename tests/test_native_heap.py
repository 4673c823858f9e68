"""The server's C heap: freed frame-sized buffers go back to the system (live.server.native_heap)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from live.server.native_heap import NativeHeap


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def test_trim_returns_freed_buffers_that_survivors_pin_inside_a_threads_arena():
    heap = NativeHeap()
    if not heap.available:
        pytest.skip("not glibc: nothing to trim")
    survivors: list[bytes] = []

    def churn() -> None:
        # What a channel's relay does for hours: frame-sized buffers made and freed in a
        # worker thread, with the odd one kept (a backlog, a stats window).
        blocks = [bytes(4000 + (i % 7) * 300) for i in range(50_000)]
        survivors.extend(blocks[::50])

    t = threading.Thread(target=churn)
    t.start()
    t.join()
    before = _rss_mb()
    heap.trim()
    after = _rss_mb()
    assert heap.trims == 1
    # ~250 MB were freed but stay resident until trimmed: the survivors pin the arena's top.
    assert after < before - 100.0, f"resident {before:.0f} MB -> {after:.0f} MB after trim"
    assert len(survivors) == 1000
