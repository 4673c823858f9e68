"""A rendered frame as what it is: an avatar source frame plus the one region the renderer changed.

Lip-sync edits a mouth region of a few percent of the frame.  At 1080×1920 a full
BGR frame is 6 MB: copying it, pasting the mouth into the copy and converting the
whole copy to the encoders' I420 cost more than the mouth itself.  So the renderer
hands back a ``RegionEdit`` and a ``Picture`` builds what its consumer asks for:

* ``i420()``: the source frame's I420 (converted once per source frame and kept by
  ``SourceFrames``, so a held source frame, a photo's short loop or a repeated
  picture are not converted again), copied, with only the edited region converted
  and written in.  cv2's BGR→I420 conversion works on 2×2 blocks, and edits are
  widened to even pixel bounds, so the result is bit-identical to converting the
  whole BGR picture;
* ``bgr()``: the full BGR frame (background keying, files of frames, tests).

A picture without an edit (no face, the frame's own mouth) is the source frame
itself: its arrays are the shared, read-only ones.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

I420_CACHE_BYTES = 96 * 2**20   # per session: a 512² photo's whole idle loop, or ~30 frames at 1080×1920


@dataclass(frozen=True)
class RegionEdit:
    """``patch`` (BGR uint8) replaces the frame's pixels from (x, y) on."""

    x: int
    y: int
    patch: np.ndarray

    @property
    def box(self) -> tuple[int, int, int, int]:
        h, w = self.patch.shape[:2]
        return self.x, self.y, self.x + w, self.y + h

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` with the patch written in place (the caller owns ``frame``)."""
        x0, y0, x1, y1 = self.box
        frame[y0:y1, x0:x1] = self.patch
        return frame


def even_aligned(edit: RegionEdit, frame: np.ndarray) -> RegionEdit:
    """The same edit widened to even bounds with the frame's own (unchanged) pixels, so
    its 4:2:0 chroma blocks are exactly the frame's."""
    x0, y0, x1, y1 = edit.box
    h, w = frame.shape[:2]
    ax0, ay0 = x0 & ~1, y0 & ~1
    ax1, ay1 = min(w, x1 + (x1 & 1)), min(h, y1 + (y1 & 1))
    if (ax0, ay0, ax1, ay1) == (x0, y0, x1, y1):
        return edit
    patch = frame[ay0:ay1, ax0:ax1].copy()
    patch[y0 - ay0:y1 - ay0, x0 - ax0:x1 - ax0] = edit.patch
    return RegionEdit(ax0, ay0, patch)


def i420_planes(i420: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a packed (height*3/2, width) I420 array."""
    flat = i420.reshape(-1)
    n, q = height * width, height * width // 4
    return (flat[:n].reshape(height, width), flat[n:n + q].reshape(height // 2, width // 2),
            flat[n + q:n + 2 * q].reshape(height // 2, width // 2))


def bgr_to_i420(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV_I420)


class SourceFrames:
    """An avatar's frames as BGR (from its store) and as I420, the conversions kept in
    a least-recently-used cache bounded in bytes.  One per session (not thread-safe)."""

    def __init__(self, avatar, budget_bytes: int = I420_CACHE_BYTES) -> None:
        self.avatar = avatar
        self.width, self.height = int(avatar.info.width), int(avatar.info.height)
        self._budget = int(budget_bytes)
        self._i420: OrderedDict[int, np.ndarray] = OrderedDict()
        self._used = 0
        self.conversions = 0   # full-frame conversions done (what the cache saves shows here)

    @property
    def i420_capable(self) -> bool:
        return self.width % 2 == 0 and self.height % 2 == 0

    def bgr(self, i: int) -> np.ndarray:
        return self.avatar.frame_readonly(i)

    def i420(self, i: int) -> np.ndarray:
        hit = self._i420.get(i)
        if hit is not None:
            self._i420.move_to_end(i)
            return hit
        out = bgr_to_i420(self.bgr(i))
        out.setflags(write=False)
        self.conversions += 1
        self._i420[i] = out
        self._used += out.nbytes
        while self._used > self._budget and len(self._i420) > 1:
            _, old = self._i420.popitem(last=False)
            self._used -= old.nbytes
        return out


class Picture:
    """Source frame ``source_index`` of ``frames`` with ``edit`` applied (None: unchanged).
    Both outputs are computed on first use, kept, and read-only."""

    __slots__ = ("frames", "source_index", "edit", "_bgr", "_i420")

    def __init__(self, frames: SourceFrames, source_index: int, edit: RegionEdit | None) -> None:
        self.frames = frames
        self.source_index = int(source_index)
        if edit is not None and frames.i420_capable:
            edit = even_aligned(edit, frames.bgr(self.source_index))
        self.edit = edit
        self._bgr: np.ndarray | None = None
        self._i420: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.frames.width, self.frames.height

    def bgr(self) -> np.ndarray:
        if self._bgr is None:
            base = self.frames.bgr(self.source_index)
            if self.edit is None:
                self._bgr = base
            else:
                self._bgr = self.edit.apply(base.copy())
                self._bgr.setflags(write=False)
        return self._bgr

    def i420(self) -> np.ndarray:
        """(height*3/2, width) uint8 I420, BT.601 limited range (what cv2 converts to)."""
        if self._i420 is None:
            base = self.frames.i420(self.source_index)
            if self.edit is None:
                self._i420 = base
            else:
                out = base.copy()
                self._write_region(out)
                out.setflags(write=False)
                self._i420 = out
        return self._i420

    def _write_region(self, out: np.ndarray) -> None:
        assert self.edit is not None
        x0, y0, x1, y1 = self.edit.box
        h, w = y1 - y0, x1 - x0
        y, u, v = i420_planes(out, self.frames.height, self.frames.width)
        ry, ru, rv = i420_planes(bgr_to_i420(self.edit.patch), h, w)
        y[y0:y1, x0:x1] = ry
        u[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = ru
        v[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = rv
