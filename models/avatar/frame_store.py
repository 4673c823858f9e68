"""Avatar frames on disk: JPEG images in one file plus an offset index, and (for
avatars small enough) the same frames raw, memory-mapped.

Raw 720p frames of a one-minute video would take 4 GB; JPEG at quality 92 is ~25x
smaller and decodes in a few ms.  But a live session loops over its avatar forever
and decoding is then paid on every frame shown (1.7 ms at 512², 5.5 ms at 720p,
14.5 ms at 1080p, one core).  So when the raw frames fit RAW_BUDGET (the default
512² photo loop is 165 MB) they are also written as one (n, h, w, 3) uint8 file and
read through a memory map: fetching a frame costs a memcpy, and the operating
system's page cache holds one copy for every session process on the machine.

    frames.bin          JPEG frames back to back
    frames_index.npy    int64 byte offsets, n + 1
    frames.raw          optional: the frames as raw BGR, frame after frame
    frames_raw.json     its shape; written last, so its presence means frames.raw is whole

Caches written before raw frames existed get them on first open (decoded once from
the JPEGs), so old avatars speed up without being prepared again.
"""

from __future__ import annotations

import json
import mmap
import os
import threading
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

FRAMES_FILE = "frames.bin"
INDEX_FILE = "frames_index.npy"
RAW_FILE = "frames.raw"
RAW_SHAPE_FILE = "frames_raw.json"
JPEG_QUALITY = 92
RAW_BUDGET = 1 << 30      # bytes; avatars larger than this stay JPEG-only
# Decoded JPEG frames kept per store: 32 of them at 512², but a 1080×1920 frame is 6 MB,
# so the count is also bounded in bytes (a session needs the frame on screen and the
# few its mouths come from, not a history).
LRU_BYTES = 48 * 2**20


class FrameStoreWriter:
    """Appends frames; ``close()`` writes the index that makes the store readable.

    JPEG encoding runs on one background thread (OpenCV releases the GIL while it
    encodes), so it overlaps with decoding and face tracking on the second core.
    Frames are encoded in order; at most ``max_pending`` wait, which bounds memory.
    Raw frames are appended as they come (a copy into the page cache) until they
    would exceed ``raw_budget``; then the raw file is dropped.  With ``keep`` they go
    to that list instead of a file: the preparing process renders from memory
    (``FrameStore.adopt``) and nothing raw reaches the disk.
    """

    def __init__(self, directory: Path, quality: int = JPEG_QUALITY, max_pending: int = 8,
                 raw_budget: int = RAW_BUDGET, keep: list[np.ndarray] | None = None) -> None:
        self._dir = Path(directory)
        self._file = open(self._dir / FRAMES_FILE, "wb")
        self._offsets = [0]
        self._params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jpeg")
        self._pending: deque[Future[None]] = deque()
        self._max_pending = max_pending
        self._count = 0
        self._raw_budget = int(raw_budget)
        self._keep = keep if raw_budget > 0 else None
        self._raw = open(self._dir / RAW_FILE, "wb") if raw_budget > 0 and keep is None else None
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
        self._write_raw(frame_bgr)
        return self._count - 1

    def _write(self, frame_bgr: np.ndarray) -> None:
        ok, buf = cv2.imencode(".jpg", frame_bgr, self._params)
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        self._file.write(buf.tobytes())
        self._offsets.append(self._offsets[-1] + len(buf))

    def _write_raw(self, frame_bgr: np.ndarray) -> None:
        if self._raw is None and self._keep is None:
            return
        fits = frame_bgr.dtype == np.uint8 and frame_bgr.ndim == 3 and frame_bgr.shape[2] == 3
        if not fits or self._count * frame_bgr.nbytes > self._raw_budget:
            self._drop_raw()
            return
        if self._keep is not None:
            self._keep.append(frame_bgr)
        else:
            assert self._raw is not None
            self._raw.write(np.ascontiguousarray(frame_bgr).data)

    def _drop_raw(self) -> None:
        if self._keep is not None:
            self._keep.clear()
            self._keep = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None
            (self._dir / RAW_FILE).unlink(missing_ok=True)

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            while self._pending:
                self._pending.popleft().result()
        except BaseException:
            self._drop_raw()
            raise
        finally:
            self._encoder.shutdown(wait=True, cancel_futures=True)
            self._file.close()
        np.save(self._dir / INDEX_FILE, np.asarray(self._offsets, dtype=np.int64))
        if self._raw is not None:
            self._raw.close()
            self._raw = None
            if self.shape is None:
                (self._dir / RAW_FILE).unlink(missing_ok=True)
            else:
                _write_raw_shape(self._dir, (self._count, *self.shape, 3))

    def __enter__(self) -> "FrameStoreWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameStore:
    """Random access to stored frames: memory-mapped raw frames when present, else
    JPEG decoding with a small LRU of decoded images.

    Safe to share between threads; pickles to just its directory, so a process pool
    re-opens it on the other side instead of copying the mapping.
    """

    def __init__(self, directory: Path, cache_frames: int = 32, raw_budget: int = RAW_BUDGET) -> None:
        self._dir = Path(directory)
        self._cache_frames = cache_frames
        self._raw_budget = raw_budget
        self._offsets = np.load(self._dir / INDEX_FILE)
        self._map = _map_file(self._dir / FRAMES_FILE)
        self._lru: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._raw: np.memmap | list[np.ndarray] | None = self._open_raw()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def is_raw(self) -> bool:
        """Whether frames come raw (the memory-mapped file, or adopted ones): no decoding."""
        return self._raw is not None

    def adopt(self, frames: list[np.ndarray]) -> None:
        """Serve frames from ``frames`` (what a ``FrameStoreWriter`` kept while writing
        this store) instead of decoding them."""
        if len(frames) != len(self) or not frames or frames[0].dtype != np.uint8:
            raise ValueError(f"adopt needs the store's {len(self)} uint8 frames, got {len(frames)}")
        first = self.decode(0)
        if frames[0].shape != first.shape:
            raise ValueError(f"adopted frames are {frames[0].shape}, the store's are {first.shape}")
        for f in frames:
            f.setflags(write=False)
        self._raw = frames  # indexable like the memory map, and as cheap

    def encoded(self, i: int) -> bytes:
        """The stored JPEG bytes of frame ``i``."""
        self._check(i)
        return self._map[int(self._offsets[i]):int(self._offsets[i + 1])]

    def get(self, i: int) -> np.ndarray:
        """Frame ``i`` as BGR uint8, read-only: shared with the map or the cache."""
        if self._raw is not None:
            self._check(i)
            return np.asarray(self._raw[i])
        with self._lock:
            hit = self._lru.get(i)
            if hit is not None:
                self._lru.move_to_end(i)
                return hit
        image = self.decode(i)
        with self._lock:
            self._lru[i] = image
            while len(self._lru) > max(1, min(self._cache_frames, LRU_BYTES // max(image.nbytes, 1))):
                self._lru.popitem(last=False)
        return image

    def decode(self, i: int) -> np.ndarray:
        """Frame ``i`` decoded from its JPEG, bypassing the raw file and the cache."""
        image = cv2.imdecode(np.frombuffer(self.encoded(i), dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise RuntimeError(f"stored frame {i} in {self._dir} is corrupt")
        image.setflags(write=False)
        return image

    def close(self) -> None:
        self._raw = None   # the mapping goes when the last view of it does
        if self._map is not None and not self._map.closed:
            self._map.close()

    def _check(self, i: int) -> None:
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range 0..{len(self) - 1}")

    def _open_raw(self) -> np.memmap | None:
        shape = _read_raw_shape(self._dir)
        if shape is None and len(self) > 0 and self._raw_budget > 0:
            shape = self._upgrade()
        if shape is None or shape[0] != len(self):
            return None
        try:
            return np.memmap(self._dir / RAW_FILE, dtype=np.uint8, mode="r", shape=shape)
        except (OSError, ValueError):
            return None   # damaged or truncated: the JPEGs still serve

    def _upgrade(self) -> tuple[int, ...] | None:
        """Write the raw file of a store made before raw files existed, if it fits."""
        first = self.decode(0)
        shape = (len(self), *first.shape)
        if int(np.prod(shape)) > self._raw_budget:
            return None
        tmp = self._dir / f".{RAW_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "wb") as out:
                for i in range(len(self)):
                    out.write(self.decode(i).data)
            os.replace(tmp, self._dir / RAW_FILE)
            _write_raw_shape(self._dir, shape)
        except OSError:
            tmp.unlink(missing_ok=True)   # a read-only cache: stay on JPEG
            return None
        return shape

    def __getstate__(self) -> dict:
        return {"directory": self._dir, "cache_frames": self._cache_frames, "raw_budget": self._raw_budget}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["directory"], state["cache_frames"], state.get("raw_budget", RAW_BUDGET))  # type: ignore[misc]


def _write_raw_shape(directory: Path, shape: tuple[int, ...]) -> None:
    tmp = directory / f".{RAW_SHAPE_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_text(json.dumps({"shape": list(shape), "dtype": "uint8"}))
    os.replace(tmp, directory / RAW_SHAPE_FILE)


def _read_raw_shape(directory: Path) -> tuple[int, ...] | None:
    try:
        meta = json.loads((directory / RAW_SHAPE_FILE).read_text())
        shape = tuple(int(x) for x in meta["shape"])
        size = (directory / RAW_FILE).stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(shape) != 4 or shape[3] != 3 or meta.get("dtype") != "uint8" or size != int(np.prod(shape)):
        return None
    return shape


def _map_file(path: Path) -> mmap.mmap:
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
