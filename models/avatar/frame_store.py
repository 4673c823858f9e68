"""Avatar frames on disk, kept as I420 (the encoders' format): JPEG made straight from
the I420 planes in one file plus an offset index, and (for avatars small enough) the
same frames raw, memory-mapped.

I420, because that is what leaves the machine: a live stream or a file takes the
source frame as it is stored, and only the mouth region the renderer edits is
converted to BGR and back (``models.avatar.i420``).  At 1080×1920 a BGR frame costs
14 ms to decode from a BGR JPEG with OpenCV and 1.9 ms more to convert for the
encoder; the I420 JPEG decodes to the encoder's planes in about 6 ms (FFmpeg's MJPEG
decoder: no colour conversion, no chroma upsampling), and a raw I420 frame is half a
BGR one (a 512² photo loop: 83 MB; 13 s of 1080×1920 fit the 1 GiB budget).

    frames.bin          JPEG frames back to back; their Y/Cb/Cr components are the
                        frames' I420 planes (limited range), not a JFIF colour picture
    frames_index.npy    int64 byte offsets, n + 1
    frames.raw          optional: the frames as raw packed I420, frame after frame
    frames_raw.json     its shape (n, h*3/2, w); written last, so its presence means
                        frames.raw is whole

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

import av
import numpy as np
import simplejpeg

from models.avatar.i420 import Box, bgr_to_i420, i420_planes, i420_to_bgr, region_bgr

FRAMES_FILE = "frames.bin"
INDEX_FILE = "frames_index.npy"
RAW_FILE = "frames.raw"
RAW_SHAPE_FILE = "frames_raw.json"
RAW_LAYOUT = "i420"
JPEG_QUALITY = 92
RAW_BUDGET = 1 << 30      # bytes; avatars larger than this stay JPEG-only
# Decoded frames kept per store, bounded in bytes (a 1080×1920 I420 frame is 3 MB): a
# session needs the frame on screen and the few its mouths come from, not a history.
LRU_BYTES = 48 * 2**20
BGR_LRU_BYTES = 32 * 2**20   # full BGR conversions (photos, keying, matting)


class FrameStoreWriter:
    """Appends BGR frames, stored as I420; ``close()`` writes the index that makes the
    store readable.

    Conversion and JPEG encoding run on one background thread (both release the GIL),
    so they overlap with decoding and face tracking on the second core.  Frames are
    encoded in order; at most ``max_pending`` wait, which bounds memory.  Raw frames
    are written as they come (a copy into the page cache) until they would exceed
    ``raw_budget``; then the raw file is dropped.  With ``keep`` they go to that list
    instead of a file: the preparing process renders from memory (``FrameStore.adopt``)
    and nothing raw reaches the disk.
    """

    def __init__(self, directory: Path, quality: int = JPEG_QUALITY, max_pending: int = 8,
                 raw_budget: int = RAW_BUDGET, keep: list[np.ndarray] | None = None) -> None:
        self._dir = Path(directory)
        self._file = open(self._dir / FRAMES_FILE, "wb")
        self._offsets = [0]
        self._quality = int(quality)
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jpeg")
        self._pending: deque[Future[None]] = deque()
        self._max_pending = max_pending
        self._count = 0
        self._raw_budget = int(raw_budget)
        self._keep = keep if raw_budget > 0 else None
        self._raw = open(self._dir / RAW_FILE, "wb") if raw_budget > 0 and keep is None else None
        self.shape: tuple[int, int] | None = None

    def append(self, frame_bgr: np.ndarray) -> int:
        """Queue a BGR frame (the array must not change afterwards); returns its index."""
        if frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"frames must be BGR uint8, got {frame_bgr.dtype} {frame_bgr.shape}")
        h, w = frame_bgr.shape[:2]
        if h % 2 or w % 2:
            raise ValueError(f"frame sizes must be even (I420), got {w}x{h}")
        if self.shape is None:
            self.shape = (h, w)
        elif self.shape != (h, w):
            raise ValueError(f"frame size changed from {self.shape} to {(h, w)}")
        while len(self._pending) >= self._max_pending:
            self._pending.popleft().result()   # re-raises an encoding error here
        self._count += 1
        over = self._count * h * w * 3 // 2 > self._raw_budget
        self._pending.append(self._encoder.submit(self._write, frame_bgr, over))
        return self._count - 1

    def _write(self, frame_bgr: np.ndarray, over_budget: bool) -> None:
        i420 = bgr_to_i420(frame_bgr)
        h, w = frame_bgr.shape[:2]
        buf = simplejpeg.encode_jpeg_yuv_planes(*i420_planes(i420, h, w), quality=self._quality)
        self._file.write(buf)
        self._offsets.append(self._offsets[-1] + len(buf))
        if over_budget:
            self._drop_raw()
        elif self._keep is not None:
            i420.setflags(write=False)
            self._keep.append(i420)
        elif self._raw is not None:
            self._raw.write(i420.data)

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
                h, w = self.shape
                _write_raw_shape(self._dir, (self._count, h * 3 // 2, w))

    def __enter__(self) -> "FrameStoreWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameStore:
    """Random access to stored frames as I420 (``get_i420``, no conversion), a BGR box of
    one (``region``, that box converted alone) or a whole BGR frame (``get``).
    Memory-mapped raw frames when present, else JPEG decoding with a small LRU.

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
        self._bgr: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._decoders = threading.local()   # one FFmpeg decoder per thread
        self.height, self.width = self._size()
        self._raw: np.memmap | list[np.ndarray] | None = self._open_raw()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def is_raw(self) -> bool:
        """Whether frames come raw (the memory-mapped file, or adopted ones): no decoding."""
        return self._raw is not None

    def adopt(self, frames: list[np.ndarray]) -> None:
        """Serve frames from ``frames`` (the I420 frames a ``FrameStoreWriter`` kept while
        writing this store) instead of decoding them."""
        shape = (self.height * 3 // 2, self.width)
        if len(frames) != len(self) or not frames or frames[0].dtype != np.uint8:
            raise ValueError(f"adopt needs the store's {len(self)} uint8 frames, got {len(frames)}")
        if frames[0].shape != shape:
            raise ValueError(f"adopted frames are {frames[0].shape}, the store's are {shape}")
        for f in frames:
            f.setflags(write=False)
        with self._lock:   # what was decoded from the JPEGs gives way to the exact frames
            self._lru.clear()
            self._bgr.clear()
        self._raw = frames  # indexable like the memory map, and as cheap

    def encoded(self, i: int) -> bytes:
        """The stored JPEG bytes of frame ``i``."""
        self._check(i)
        return self._map[int(self._offsets[i]):int(self._offsets[i + 1])]

    def get_i420(self, i: int) -> np.ndarray:
        """Frame ``i`` as packed I420 (h*3/2, w) uint8, read-only: shared with the map or the cache."""
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
            _trim(self._lru, min(self._cache_frames, LRU_BYTES // max(image.nbytes, 1)))
        return image

    def get(self, i: int) -> np.ndarray:
        """Frame ``i`` as BGR uint8, read-only (converted from its I420; the last few kept)."""
        with self._lock:
            hit = self._bgr.get(i)
            if hit is not None:
                self._bgr.move_to_end(i)
                return hit
        image = i420_to_bgr(self.get_i420(i))
        image.setflags(write=False)
        with self._lock:
            self._bgr[i] = image
            _trim(self._bgr, BGR_LRU_BYTES // max(image.nbytes, 1))
        return image

    def region(self, i: int, box: Box) -> np.ndarray:
        """BGR pixels of ``box`` (x0, y0, x1, y1) of frame ``i``: exactly ``get(i)``'s, for
        the cost of converting the box alone."""
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= self.width and 0 <= y0 < y1 <= self.height):
            raise ValueError(f"box {box} is not inside the {self.width}x{self.height} frame")
        with self._lock:
            whole = self._bgr.get(i)
        if whole is not None:
            return whole[y0:y1, x0:x1]
        return region_bgr(self.get_i420(i), self.height, self.width, box)

    def decode(self, i: int) -> np.ndarray:
        """Frame ``i`` decoded from its JPEG as packed I420, bypassing the raw file and the cache."""
        data = self.encoded(i)
        ctx = getattr(self._decoders, "ctx", None)
        if ctx is None:
            ctx = self._decoders.ctx = av.CodecContext.create("mjpeg", "r")
            ctx.thread_count = 1
        try:
            frames = ctx.decode(av.Packet(data))
        except av.FFmpegError:
            frames = []
        if not frames or frames[0].format.name not in ("yuvj420p", "yuv420p") \
                or (frames[0].height, frames[0].width) != (self.height, self.width):
            raise RuntimeError(f"stored frame {i} in {self._dir} is corrupt")
        out = np.empty((self.height * 3 // 2, self.width), np.uint8)
        for plane, dst in zip(frames[0].planes, i420_planes(out, self.height, self.width)):
            rows = np.frombuffer(plane, np.uint8).reshape(dst.shape[0], plane.line_size)
            dst[:] = rows[:, :dst.shape[1]]
        out.setflags(write=False)
        return out

    def close(self) -> None:
        self._raw = None   # the mapping goes when the last view of it does
        if self._map is not None and not self._map.closed:
            self._map.close()

    def _check(self, i: int) -> None:
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range 0..{len(self) - 1}")

    def _size(self) -> tuple[int, int]:
        if len(self) == 0:
            return 0, 0
        header = simplejpeg.decode_jpeg_header(self.encoded(0))
        return int(header[0]), int(header[1])

    def _open_raw(self) -> np.memmap | None:
        shape = _read_raw_shape(self._dir)
        if shape is None and len(self) > 0 and self._raw_budget > 0:
            shape = self._upgrade()
        if shape is None or shape != (len(self), self.height * 3 // 2, self.width):
            return None
        try:
            return np.memmap(self._dir / RAW_FILE, dtype=np.uint8, mode="r", shape=shape)
        except (OSError, ValueError):
            return None   # damaged or truncated: the JPEGs still serve

    def _upgrade(self) -> tuple[int, ...] | None:
        """Write the raw file of a store made without one, if it fits."""
        shape = (len(self), self.height * 3 // 2, self.width)
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


def _trim(lru: OrderedDict, count: int) -> None:
    while len(lru) > max(1, count):
        lru.popitem(last=False)


def _write_raw_shape(directory: Path, shape: tuple[int, ...]) -> None:
    tmp = directory / f".{RAW_SHAPE_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_text(json.dumps({"shape": list(shape), "dtype": "uint8", "layout": RAW_LAYOUT}))
    os.replace(tmp, directory / RAW_SHAPE_FILE)


def _read_raw_shape(directory: Path) -> tuple[int, ...] | None:
    try:
        meta = json.loads((directory / RAW_SHAPE_FILE).read_text())
        shape = tuple(int(x) for x in meta["shape"])
        size = (directory / RAW_FILE).stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(shape) != 3 or meta.get("dtype") != "uint8" or meta.get("layout") != RAW_LAYOUT \
            or size != int(np.prod(shape)):
        return None
    return shape


def _map_file(path: Path) -> mmap.mmap:
    with open(path, "rb") as fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
