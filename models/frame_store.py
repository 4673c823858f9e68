"""Avatar frames on disk: JPEG images in one file plus an offset index.

Raw 720p frames of a one-minute video would take 4 GB; JPEG at quality 92 is ~25x
smaller and decodes in a few ms, which the renderer pays only on a cache miss.
"""

from __future__ import annotations

import mmap
import threading
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

FRAMES_FILE = "frames.bin"
INDEX_FILE = "frames_index.npy"
JPEG_QUALITY = 92


class FrameStoreWriter:
    """Appends frames; ``close()`` writes the index that makes the store readable.

    JPEG encoding runs on one background thread (OpenCV releases the GIL while it
    encodes), so it overlaps with decoding and face tracking on the second core.
    Frames are encoded in order; at most ``max_pending`` wait, which bounds memory.
    """

    def __init__(self, directory: Path, quality: int = JPEG_QUALITY, max_pending: int = 8) -> None:
        self._dir = Path(directory)
        self._file = open(self._dir / FRAMES_FILE, "wb")
        self._offsets = [0]
        self._params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jpeg")
        self._pending: deque[Future[None]] = deque()
        self._max_pending = max_pending
        self._count = 0
        self.shape: tuple[int, int] | None = None

    def append(self, frame_bgr: np.ndarray) -> int:
        """Queue a frame (the array must not change afterwards); returns its index."""
        h, w = frame_bgr.shape[:2]
        if self.shape is None:
            self.shape = (h, w)
        elif self.shape != (h, w):
            raise ValueError(f"frame size changed from {self.shape} to {(h, w)}")
        while len(self._pending) >= self._max_pending:
            self._pending.popleft().result()   # re-raises an encoding error here
        self._pending.append(self._encoder.submit(self._write, frame_bgr))
        self._count += 1
        return self._count - 1

    def _write(self, frame_bgr: np.ndarray) -> None:
        ok, buf = cv2.imencode(".jpg", frame_bgr, self._params)
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        self._file.write(buf.tobytes())
        self._offsets.append(self._offsets[-1] + len(buf))

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._encoder.shutdown(wait=True, cancel_futures=True)
            self._file.close()
        np.save(self._dir / INDEX_FILE, np.asarray(self._offsets, dtype=np.int64))

    def __enter__(self) -> "FrameStoreWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameStore:
    """Random access to stored frames with a small LRU of decoded images.

    Safe to share between threads; pickles to just its directory, so a process pool
    re-opens it on the other side instead of copying the mapping.
    """

    def __init__(self, directory: Path, cache_frames: int = 32) -> None:
        self._dir = Path(directory)
        self._cache_frames = cache_frames
        self._offsets = np.load(self._dir / INDEX_FILE)
        self._map = _map_file(self._dir / FRAMES_FILE)
        self._lru: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def encoded(self, i: int) -> bytes:
        """The stored JPEG bytes of frame ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range 0..{len(self) - 1}")
        return self._map[int(self._offsets[i]):int(self._offsets[i + 1])]

    def get(self, i: int) -> np.ndarray:
        """Frame ``i`` as BGR uint8. The array is shared with the cache: do not modify it."""
        with self._lock:
            hit = self._lru.get(i)
            if hit is not None:
                self._lru.move_to_end(i)
                return hit
        image = cv2.imdecode(np.frombuffer(self.encoded(i), dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise RuntimeError(f"stored frame {i} in {self._dir} is corrupt")
        image.setflags(write=False)
        with self._lock:
            self._lru[i] = image
            while len(self._lru) > self._cache_frames:
                self._lru.popitem(last=False)
        return image

    def close(self) -> None:
        if self._map is not None and not self._map.closed:
            self._map.close()

    def __getstate__(self) -> dict:
        return {"directory": self._dir, "cache_frames": self._cache_frames}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["directory"], state["cache_frames"])  # type: ignore[misc]


def _map_file(path: Path) -> mmap.mmap:
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
