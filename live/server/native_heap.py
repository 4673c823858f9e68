"""Keeping the server process's C heap from creeping up over days on air.

The server's own Python objects stay flat (tracemalloc over a long soak), yet its
resident memory crept up by a few MB per 10 minutes.  The process runs many
threads (the TTS executor, the default executor, aiohttp's resolver): glibc gives
each its own malloc arena and returns freed memory inside an arena to the system
only at the arena's top, so a steady churn of frame-sized buffers (each channel
relays 25 pictures and 25 PCM blocks a second) slowly fragments the arenas.
Fewer arenas and a periodic ``malloc_trim`` (which also releases whole free pages
inside them) keep the resident size where the work needs it.

Other C libraries (musl, macOS) have neither call; there this does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8          # mallopt parameter (glibc's malloc.h)
ARENAS = 2                 # the event loop's thread and one shared by all the workers' threads
TRIM_EVERY_S = 60.0
DISABLE_ENV = "LIPSTREAM_NO_HEAP_TRIM"   # for measuring the difference (bench/channel_soak.py)


def _glibc() -> ctypes.CDLL | None:
    if os.environ.get(DISABLE_ENV):
        return None
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.mallopt, libc.malloc_trim   # noqa: B018 -- glibc only
    except (OSError, AttributeError):
        return None
    return libc


class NativeHeap:
    """``limit_arenas()`` once at start (before threads are made), then ``run()`` as a task."""

    def __init__(self, every_s: float = TRIM_EVERY_S) -> None:
        self.every_s = every_s
        self._libc = _glibc()
        self.trims = 0

    @property
    def available(self) -> bool:
        return self._libc is not None

    def limit_arenas(self, arenas: int = ARENAS) -> None:
        if self._libc is not None and not self._libc.mallopt(_M_ARENA_MAX, arenas):
            log.warning("mallopt(M_ARENA_MAX, %d) was refused", arenas)

    def trim(self) -> None:
        if self._libc is not None:
            self._libc.malloc_trim(0)
            self.trims += 1

    async def run(self) -> None:
        if self._libc is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.every_s)
            # A few ms with a large heap, holding each arena's lock in turn: off the loop.
            with contextlib.suppress(RuntimeError):   # executor shut down at exit
                await loop.run_in_executor(None, self.trim)
