"""Alpha mattes of an avatar, so its background can be replaced by a flat key colour.

A channel viewer (the OBS broadcast page with ``?bg=green``) asks for the host on a
flat colour that OBS's Chroma Key filter removes, to put the host over a product
page.  The matte of every source frame is computed once with MediaPipe's selfie
segmentation (the model ships inside the mediapipe wheel: nothing is downloaded)
and stored beside the avatar's cache; keying a frame then costs a decompression,
an upscale and one blend.

How a matte is made, per source frame (at most ``MATTE_SIDE`` px on its long side:
the model itself sees 256², so more pixels add nothing but bytes):

* the person's probability from a selfie model: the general one (256² input) for
  square and portrait avatars, the landscape one (256x144) for wide ones.  On the
  square astronaut the landscape model leaves half of the flag and of the shuttle
  in the foreground, where the general one separates them cleanly; on a 16:9 frame
  the general model sees the picture squashed to a square and takes in more of the
  background around a small person than the landscape model does;
* averaged over neighbouring frames (binomial weights over 5 frames, restarted at
  every shot cut, wrapping around a photo's periodic idle loop): the model has no
  memory of its own, and its edge wanders a pixel or two between frames of a still
  person, which shows as a shimmering outline once keyed;
* hardened (``RAMP``) and feathered (``FEATHER``), so the edge is soft but narrow;
* unioned with the face: the hull of the face landmarks, extended below the chin
  and grown by a margin.  The rendered mouth (and a photo's opened jaw) is pasted
  there, so it must never be keyed out, whatever the model thinks of a dark mouth.

Stored as ``<avatar dir>/matte-<key>/``: ``alpha.bin`` (zlib-compressed frames back
to back, memory-mapped when read, so processes share one copy in the page cache),
``alpha_index.npy`` (n + 1 int64 offsets) and ``matte.json``.  The key hashes the
fields of the avatar's ``info.json`` that name its frames (id, format, kind, fps,
size, frame count, creation time) with this module's parameters, so an avatar
prepared again, or a matte made with other parameters, is never reused.  The
directory is built under a temporary name and renamed into place, as avatars are
(``models.avatar.avatar_cache``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import mmap
import os
import re
import shutil
import tempfile
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.avatar.avatar import Avatar
from models.avatar.avatar_cache import read_info
from models.avatar.face_landmarks import eye_span
from models.avatar.shots import shot_spans

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ log spam on every graph start
import mediapipe as mp  # noqa: E402

__all__ = [
    "KEY_COLOURS", "AvatarMatte", "MatteError", "key_background", "matte_key", "parse_key_colour",
]

MATTE_VERSION = 1
MATTE_SIDE = 512            # long side of the stored matte, px (upscaled on lookup)
LANDSCAPE_ASPECT = 1.5      # width / height from which the landscape model is used (16:9 is 1.78)
TIME_WEIGHTS = (1.0, 4.0, 6.0, 4.0, 1.0)   # binomial, sigma ≈ 1 frame: steadies the edge, keeps up with motion
RAMP = (0.4, 0.8)           # probability -> alpha: below 0.4 is background, above 0.8 the person
FEATHER = 0.0025            # blur sigma of the edge, × the matte's long side (1.3 px at 512)
FACE_DROP = 0.6             # the face region reaches this many eye spans below the landmarks (chin, jaw drop)
FACE_MARGIN = 0.15          # and is grown by this many eye spans all round
# Mattes are mostly flat, so plain zlib at level 1 stores one in 16 kB at 512² (PNG: 15 kB)
# and is 3x faster to write and to read back (0.7 and 0.36 ms; PNG 2.0 and 0.9 ms).
ZLIB_LEVEL = 1
DIR_PREFIX = "matte-"

# Named key colours are OBS's Chroma Key presets exactly (obs-filters/chroma-key-filter.c:
# green 0x00FF00, blue 0xFF9900 read as R=00 G=99 B=FF, magenta 0xFF00FF), so picking the
# same name in OBS keys the background with its default similarity.  Pure #00FF00 rather
# than a paint green like #00B140: a digital matte has no lighting to survive, and the most
# saturated green lies farthest in chroma from skin, hair and clothes; in limited-range
# BT.709 it is Y=173, Cb=42, Cr=26, inside the legal range, so H.264 keeps it flat.
KEY_COLOURS: dict[str, str] = {"green": "#00FF00", "blue": "#0099FF", "magenta": "#FF00FF"}
# info.json fields that name the frames a matte was made from (not the display name)
_FRAME_FIELDS = ("avatar_id", "format", "kind", "fps", "width", "height", "n_frames", "created")
_HEX = re.compile(r"#?([0-9a-fA-F]{6})")
_MAX_COLOUR_TEXT = 16


class MatteError(RuntimeError):
    """The avatar's matte cannot be computed."""


# ---------------------------------------------------------------------------------------
# Key colours and keying


def parse_key_colour(text: str) -> tuple[int, int, int]:
    """``"green"``, ``"blue"``, ``"magenta"``, ``"#RRGGBB"`` or ``"RRGGBB"`` -> (B, G, R).

    Names are case-insensitive.  Anything else raises ValueError; the message quotes at
    most the first characters of the input, as it comes from a URL."""
    if not isinstance(text, str):
        raise ValueError("the key colour must be text such as 'green' or '#00FF00'")
    raw = text.strip()
    if len(raw) > _MAX_COLOUR_TEXT:
        raise ValueError(f"unknown key colour {raw[:_MAX_COLOUR_TEXT]!r}...: use "
                         f"{', '.join(KEY_COLOURS)} or #RRGGBB")
    hexa = KEY_COLOURS.get(raw.lower(), raw)
    match = _HEX.fullmatch(hexa)
    if match is None:
        raise ValueError(f"unknown key colour {raw!r}: use {', '.join(KEY_COLOURS)} or #RRGGBB")
    value = int(match.group(1), 16)
    return value & 0xFF, (value >> 8) & 0xFF, (value >> 16) & 0xFF


def key_background(image_bgr: np.ndarray, alpha_u8: np.ndarray, colour_bgr: tuple[int, int, int],
                   out: np.ndarray | None = None) -> np.ndarray:
    """``image × α + colour × (1 − α)``, α = ``alpha_u8`` / 255, in 8-bit integer math.

    Where α is 255 the image is returned bit-identical, where it is 0 the pixel is
    exactly ``colour_bgr``; ``image_bgr`` is not modified.  Four SIMD passes in OpenCV
    (the colour's share is a lookup table of α, so no float image is made) over
    per-thread scratch buffers: fresh 6 MB arrays each frame cost more in page faults
    than the arithmetic (1080p: 10 ms with them, 6 ms without).  Pass ``out`` to reuse
    the result's buffer too."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError("image must be (h, w, 3) uint8 BGR")
    if alpha_u8.shape != image_bgr.shape[:2] or alpha_u8.dtype != np.uint8:
        raise ValueError(f"alpha must be {image_bgr.shape[:2]} uint8, got {alpha_u8.shape} {alpha_u8.dtype}")
    if out is None:
        out = np.empty_like(image_bgr)
    elif out.shape != image_bgr.shape or out.dtype != np.uint8 or out is image_bgr:
        raise ValueError("out must be a separate array shaped like the image")
    a3, share = _scratch(image_bgr.shape)
    cv2.merge([alpha_u8, alpha_u8, alpha_u8], dst=a3)
    cv2.multiply(image_bgr, a3, dst=out, scale=1 / 255)
    cv2.LUT(a3, _colour_share(tuple(int(c) for c in colour_bgr)), dst=share)
    return cv2.add(out, share, dst=out)


_scratch_local = threading.local()


def _scratch(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Two (h, w, 3) uint8 buffers of this thread, kept for the last size asked."""
    buffers = getattr(_scratch_local, "buffers", None)
    if buffers is None or buffers[0].shape != shape:
        buffers = (np.empty(shape, np.uint8), np.empty(shape, np.uint8))
        _scratch_local.buffers = buffers
    return buffers


@functools.lru_cache(maxsize=16)
def _colour_share(colour_bgr: tuple[int, int, int]) -> np.ndarray:
    """(1, 256, 3) table: round(colour × (255 − α) / 255) per channel."""
    inv = 255 - np.arange(256, dtype=np.int32)
    table = np.stack([(c * inv + 127) // 255 for c in colour_bgr], axis=1).astype(np.uint8)
    return table.reshape(1, 256, 3)


# ---------------------------------------------------------------------------------------
# Mattes


def matte_key(avatar: Avatar) -> str:
    """Names the matte of this avatar's frames, made with these parameters."""
    return _key(_identity(avatar)[0])


def _identity(avatar: Avatar) -> tuple[dict, bool]:
    """The fields that name the avatar's frames, and whether its directory still holds them.

    Only fields that change with the frames count: renaming an avatar rewrites its
    info.json (``avatar_cache.update_info``) and must not cost a new matte, while a
    default avatar rebuilt at another fps keeps its id but gets a new creation time.
    An ``Avatar`` opened before such a rebuild still shows the old frames: its
    directory then describes another avatar, and its matte must not be stored there."""
    mine = avatar.info.to_json()
    disk = read_info(avatar.directory)
    same = disk is not None and all(disk.get(f) == mine.get(f) for f in _FRAME_FIELDS if f in mine)
    return {f: (disk if same else mine).get(f) for f in _FRAME_FIELDS}, same


def _key(identity: dict) -> str:
    params = {
        "version": MATTE_VERSION, "side": MATTE_SIDE, "landscape": LANDSCAPE_ASPECT, "time": TIME_WEIGHTS,
        "ramp": RAMP, "feather": FEATHER, "face": [FACE_DROP, FACE_MARGIN],
    }
    text = json.dumps({"avatar": identity, "matte": params}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Stored:
    """Compressed (h, w) uint8 mattes back to back, and where each one starts."""

    data: bytes | mmap.mmap
    offsets: np.ndarray          # int64, n + 1
    shape: tuple[int, int]       # (h, w) of each stored matte (``matte_size``)


class AvatarMatte:
    """The alpha matte of every source frame of one avatar (see the module docstring).

    ``alpha(i)`` is frame ``i``'s matte at the avatar's size, uint8, 255 = person.
    ``computed`` says whether ``for_avatar`` made it now (False: read from the cache);
    ``stored`` whether it is on disk (False when the avatar directory is read-only or
    was replaced meanwhile: the matte then lives in this object only)."""

    def __init__(self, stored: _Stored, size: tuple[int, int], key: str,
                 computed: bool, directory: Path | None) -> None:
        self._stored = stored
        self.size = size                 # (width, height) of the avatar
        self.key = key
        self.computed = computed
        self.directory = directory
        self._last: tuple[int, np.ndarray] | None = None   # a repeated frame decodes once

    def __len__(self) -> int:
        return len(self._stored.offsets) - 1

    @property
    def stored(self) -> bool:
        return self.directory is not None

    @classmethod
    def for_avatar(cls, avatar: Avatar, progress: Callable[[float], None] | None = None) -> "AvatarMatte":
        """The avatar's matte: read from its cache, or computed (several ms per frame:
        call it off the event loop) and stored there.  Threads of one process asking
        for the same matte wait for the first one's work instead of repeating it."""
        identity, current = _identity(avatar)
        key = _key(identity)
        final = avatar.directory / f"{DIR_PREFIX}{key}"
        size = (avatar.info.width, avatar.info.height)
        if not current:   # the directory holds a newer avatar now: keep this matte in memory
            return cls(_compute(avatar, progress), size, key, computed=True, directory=None)
        shape = matte_size(*size)[::-1]
        with _lock_for(final):
            stored = _read(final, len(avatar), shape)
            if stored is not None:
                return cls(stored, size, key, computed=False, directory=final)
            stored = _compute(avatar, progress)
            if not _publish(avatar.directory, final, stored, key):
                return cls(stored, size, key, computed=True, directory=None)
            # Serve from the mapped file: the page cache then holds the one copy.
            return cls(_read(final, len(avatar), shape) or stored, size, key, computed=True, directory=final)

    def alpha(self, source_index: int) -> np.ndarray:
        """Source frame ``source_index``'s matte, (height, width) uint8, read-only."""
        i = int(source_index)
        if not 0 <= i < len(self):
            raise IndexError(f"source frame {i} out of range 0..{len(self) - 1}")
        if self._last is not None and self._last[0] == i:
            return self._last[1]
        a, b = int(self._stored.offsets[i]), int(self._stored.offsets[i + 1])
        try:
            small = np.frombuffer(zlib.decompress(self._stored.data[a:b]), np.uint8).reshape(self._stored.shape)
        except (zlib.error, ValueError) as exc:
            raise MatteError(f"matte frame {i} is damaged") from exc
        w, h = self.size
        full = small if small.shape == (h, w) else cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        full.setflags(write=False)
        self._last = (i, full)
        return full

    def key_frame(self, image_bgr: np.ndarray, source_index: int, colour_bgr: tuple[int, int, int]) -> np.ndarray:
        """``key_background`` of a rendered frame with its source frame's matte."""
        return key_background(image_bgr, self.alpha(source_index), colour_bgr)


# ---------------------------------------------------------------------------------------
# Computing


def matte_size(width: int, height: int) -> tuple[int, int]:
    """(w, h) the matte of a width x height avatar is computed and stored at."""
    scale = min(1.0, MATTE_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


class Segmenter:
    """MediaPipe selfie segmentation: person probability of a BGR frame, same size, float32.
    ``landscape`` picks the model made for wide frames (see the module docstring)."""

    def __init__(self, landscape: bool = False) -> None:
        self._model = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=int(landscape))

    def close(self) -> None:
        self._model.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def probability(self, image_bgr: np.ndarray) -> np.ndarray:
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        return np.asarray(self._model.process(rgb).segmentation_mask, np.float32)


def _compute(avatar: Avatar, progress: Callable[[float], None] | None) -> _Stored:
    n = len(avatar)
    ws, hs = matte_size(avatar.info.width, avatar.info.height)
    scale = np.float32([ws / avatar.info.width, hs / avatar.info.height])
    blobs: list[bytes | None] = [None] * n
    done = 0
    with Segmenter(landscape=avatar.info.width >= LANDSCAPE_ASPECT * avatar.info.height) as seg:
        def probability(i: int) -> np.ndarray:
            frame = avatar.frame_readonly(i)
            if frame.shape[:2] != (hs, ws):
                frame = cv2.resize(frame, (ws, hs), interpolation=cv2.INTER_AREA)
            return seg.probability(frame)

        for indices, wrap in _runs(avatar):
            for i, p in _smooth_in_time(indices, wrap, probability):
                face = _face_region(avatar, i, scale, (hs, ws))
                blobs[i] = zlib.compress(_alpha_from(p, face).tobytes(), ZLIB_LEVEL)
                done += 1
                if progress is not None:
                    progress(done / n)
    if any(b is None for b in blobs):
        raise MatteError("internal error: a source frame got no matte")
    offsets = np.zeros(n + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])  # type: ignore[arg-type]
    return _Stored(b"".join(blobs), offsets, (hs, ws))  # type: ignore[arg-type]


def _runs(avatar: Avatar) -> list[tuple[list[int], bool]]:
    """Stretches of frames to smooth over: a photo's loop wraps around; a video's shots
    are smoothed each on its own, so no shot's matte leaks across a cut."""
    n = len(avatar)
    if avatar.info.kind == "photo":
        return [(list(range(n)), True)]
    return [(list(range(a, b)), False) for a, b in shot_spans(avatar.shot_ids)]


def _smooth_in_time(indices: list[int], wrap: bool,
                    probability: Callable[[int], np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
    """(index, weighted mean of the probabilities around it) for each of ``indices``,
    holding the run's end frames beyond its ends (or wrapping around).  Streams: at most
    len(TIME_WEIGHTS) probability maps are alive at a time."""
    r = len(TIME_WEIGHTS) // 2
    if wrap and len(indices) > 2 * r:
        padded = indices[-r:] + indices + indices[:r]
    else:
        padded = [indices[0]] * r + indices + [indices[-1]] * r
    weights = np.float32(TIME_WEIGHTS) / np.float32(sum(TIME_WEIGHTS))
    window: deque[np.ndarray] = deque(maxlen=len(weights))
    previous: tuple[int, np.ndarray] | None = None
    for k, i in enumerate(padded):
        p = previous[1] if previous is not None and previous[0] == i else probability(i)
        previous = (i, p)
        window.append(p)
        if len(window) == len(weights):
            acc = window[0] * weights[0]
            for w, q in zip(weights[1:], list(window)[1:]):
                acc += w * q
            yield padded[k - r], acc


_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 16, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, 16, endpoint=False))], axis=1).astype(np.float32)


@dataclass(frozen=True)
class _Face:
    """Where the mouth may be drawn (``inner``: the face, down past the chin) and that
    region grown by ``FACE_MARGIN`` (``outer``), uint8 0/1 masks."""

    inner: np.ndarray
    outer: np.ndarray


def _face_region(avatar: Avatar, i: int, scale: np.ndarray, shape: tuple[int, int]) -> _Face | None:
    """Frame ``i``'s face region at the matte's size, or None where it has no face."""
    if not bool(avatar.face_found[i]):
        return None
    lm = avatar.landmarks[i] * scale
    span = float(eye_span(lm))
    hull = cv2.convexHull(np.concatenate([lm, lm + np.float32([0.0, FACE_DROP * span])])).reshape(-1, 2)
    # A convex polygon grown by r is the hull of discs around its corners: exact, and
    # far cheaper than dilating the mask with a large kernel.
    grown = cv2.convexHull((hull[:, None, :] + FACE_MARGIN * span * _CIRCLE[None]).reshape(-1, 2))
    return _Face(_fill(hull, shape), _fill(grown.reshape(-1, 2), shape))


def _fill(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, np.round(polygon * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
    return mask


def _alpha_from(probability: np.ndarray, face: _Face | None) -> np.ndarray:
    lo, hi = RAMP
    a = np.clip((probability - lo) * (1.0 / (hi - lo)), 0.0, 1.0)
    if face is not None:
        np.maximum(a, face.outer, out=a)
    a = cv2.GaussianBlur(a, (0, 0), FEATHER * max(a.shape))
    out = np.round(a * 255).astype(np.uint8)
    if face is not None:
        # The feather reaches a little way into the grown region; the face itself stays
        # whole whatever the margin, so the mouth is never blended with the key colour.
        out[face.inner > 0] = 255
    return out


# ---------------------------------------------------------------------------------------
# The cache

_ALPHA_FILE = "alpha.bin"
_INDEX_FILE = "alpha_index.npy"
_META_FILE = "matte.json"
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


def _read(directory: Path, n_frames: int, shape: tuple[int, int]) -> _Stored | None:
    """The stored matte, or None if absent, incomplete or not of this many frames and size."""
    try:
        meta = json.loads((directory / _META_FILE).read_text())
        offsets = np.load(directory / _INDEX_FILE)
        if (not isinstance(meta, dict) or meta.get("version") != MATTE_VERSION
                or meta.get("shape") != list(shape) or offsets.shape != (n_frames + 1,)
                or offsets.dtype != np.int64):
            return None
        with open(directory / _ALPHA_FILE, "rb") as fh:
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    if int(offsets[-1]) != len(data) or int(offsets[0]) != 0 or (np.diff(offsets) < 0).any():
        data.close()
        return None
    return _Stored(data, offsets, shape)


def _publish(avatar_dir: Path, final: Path, stored: _Stored, key: str) -> bool:
    """Write the matte beside the avatar and rename it into place; False if it can't be
    (a read-only cache, or the avatar directory was replaced while we worked)."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{DIR_PREFIX}", suffix=".tmp", dir=avatar_dir))
    except OSError:
        return False
    try:
        (tmp / _ALPHA_FILE).write_bytes(stored.data)
        np.save(tmp / _INDEX_FILE, stored.offsets)
        (tmp / _META_FILE).write_text(json.dumps({"version": MATTE_VERSION, "key": key,
                                                  "frames": len(stored.offsets) - 1,
                                                  "shape": list(stored.shape)}))
        _place(tmp, final, stored)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        # Another process published the same matte meanwhile: theirs is equivalent.
        return _read(final, len(stored.offsets) - 1, stored.shape) is not None
    _drop_stale(avatar_dir, keep=final.name)
    return True


def _place(tmp: Path, final: Path, stored: _Stored) -> None:
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.exists() or _read(final, len(stored.offsets) - 1, stored.shape) is not None:
            raise
        # A damaged matte (a crash, a full disk) is set aside, then replaced.
        aside = Path(tempfile.mkdtemp(prefix=f".{DIR_PREFIX}", suffix=".old", dir=final.parent))
        os.rename(final, aside / final.name)
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(tmp, final)


def _drop_stale(avatar_dir: Path, keep: str) -> None:
    """Mattes made with other parameters are never read again."""
    for old in avatar_dir.glob(f"{DIR_PREFIX}*"):
        if old.name != keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
