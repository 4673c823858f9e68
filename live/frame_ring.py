"""Shared-memory slots through which a session's worker process hands over frames.

A 512x512 frame is 384 kB in I420; pickling that through a pipe 25 times a second
per session costs the server process copies it doesn't need.  Instead the worker
writes each frame into slot ``index % n_slots`` of a memory-mapped file and sends
only the index.  The server turns the slot into an ``av.VideoFrame`` (one copy) as
soon as the message arrives, and asks for at most one frame at a time, so a slot
is never rewritten while it is being read.

The file lives in /dev/shm (RAM) and is unlinked as soon as both processes have
mapped it, so nothing is left behind even if both are killed.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_SHM_DIR = Path("/dev/shm")


@dataclass(frozen=True)
class FrameGeometry:
    width: int
    height: int
    n_slots: int = 4

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2:
            raise ValueError(f"I420 frames need even dimensions, got {self.width}x{self.height}")

    @property
    def slot_bytes(self) -> int:
        return self.width * self.height * 3 // 2


class FrameRing:
    def __init__(self, path: Path, geometry: FrameGeometry, fd: int) -> None:
        self.path = path
        self.geometry = geometry
        self._map = mmap.mmap(fd, geometry.slot_bytes * geometry.n_slots)
        os.close(fd)  # the mapping keeps the memory alive
        self._array = np.frombuffer(self._map, dtype=np.uint8).reshape(
            geometry.n_slots, geometry.height * 3 // 2, geometry.width
        )

    @classmethod
    def create(cls, geometry: FrameGeometry) -> "FrameRing":
        directory = _SHM_DIR if _SHM_DIR.is_dir() else Path(tempfile.gettempdir())
        fd, name = tempfile.mkstemp(prefix="lipstream-frames-", dir=directory)
        os.ftruncate(fd, geometry.slot_bytes * geometry.n_slots)
        return cls(Path(name), geometry, fd)

    @classmethod
    def attach(cls, path: Path, geometry: FrameGeometry) -> "FrameRing":
        return cls(Path(path), geometry, os.open(path, os.O_RDWR))

    def slot(self, index: int) -> np.ndarray:
        """The (height*3/2, width) I420 plane stack for frame ``index``."""
        return self._array[index % self.geometry.n_slots]

    def unlink(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        self._array = None  # type: ignore[assignment]  # release the buffer export before closing
        try:
            self._map.close()
        except BufferError:
            pass  # a caller still holds a view; the mapping goes with the process
