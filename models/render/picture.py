"""A rendered frame as what it is: an avatar source frame plus the one region the renderer changed.

Lip-sync edits a mouth region of a few percent of the frame.  At 1080×1920 a full
BGR frame is 6 MB: decoding it, pasting the mouth into a copy and converting the
whole copy to the encoders' I420 cost more than the mouth itself.  Avatar frames are
stored as I420 (``models.avatar.frame_store``), so the renderer reads only the BGR
pixels of its region, hands back a ``RegionEdit``, and a ``Picture`` builds what its
consumer asks for:

* ``i420()``: the stored I420 frame (no conversion at all), copied, with only the
  edited region converted and written in; pixels the edit leaves as they were
  (``RegionEdit.changed``) keep their stored values bit for bit;
* ``bgr()``: the full BGR frame (background keying, files of frames, tests).

A picture without an edit (no face, the frame's own mouth) is the source frame
itself: its arrays are the shared, read-only ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from models.avatar.i420 import Box, bgr_to_i420, even_box, i420_planes, write_region

__all__ = ["Picture", "RegionEdit", "SourceFrames", "bgr_to_i420", "even_aligned", "i420_planes"]


@dataclass(frozen=True)
class RegionEdit:
    """``patch`` (BGR uint8) replaces the frame's pixels from (x, y) on.  ``changed``
    (bool, the patch's size; None: all of it) marks the pixels that may differ from the
    frame's: the rest of the patch is the frame's own."""

    x: int
    y: int
    patch: np.ndarray
    changed: np.ndarray | None = None

    @property
    def box(self) -> Box:
        h, w = self.patch.shape[:2]
        return self.x, self.y, self.x + w, self.y + h

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` with the patch written in place (the caller owns ``frame``)."""
        x0, y0, x1, y1 = self.box
        frame[y0:y1, x0:x1] = self.patch
        return frame


def even_aligned(edit: RegionEdit, height: int, width: int, pixels: Callable[[Box], np.ndarray]) -> RegionEdit:
    """The same edit widened to even bounds with the frame's own (unchanged) pixels,
    ``pixels(box)`` being the frame's BGR pixels of a box, so its 4:2:0 chroma blocks
    are exactly the frame's."""
    x0, y0, x1, y1 = edit.box
    ax0, ay0, ax1, ay1 = even_box(edit.box, height, width)
    if (ax0, ay0, ax1, ay1) == (x0, y0, x1, y1):
        return edit
    patch = np.array(pixels((ax0, ay0, ax1, ay1)), np.uint8, copy=True)
    inner = (slice(y0 - ay0, y1 - ay0), slice(x0 - ax0, x1 - ax0))
    patch[inner] = edit.patch
    changed = np.zeros(patch.shape[:2], bool)
    changed[inner] = True if edit.changed is None else edit.changed
    return RegionEdit(ax0, ay0, patch, changed)


class SourceFrames:
    """An avatar's frames as stored (I420) and as BGR.  One per session."""

    def __init__(self, avatar) -> None:
        self.avatar = avatar
        self.width, self.height = int(avatar.info.width), int(avatar.info.height)
        self.conversions = 0   # full-frame BGR→I420 conversions done: none, frames are stored as I420

    @property
    def i420_capable(self) -> bool:
        return self.width % 2 == 0 and self.height % 2 == 0

    def bgr(self, i: int) -> np.ndarray:
        return self.avatar.frame_readonly(i)

    def region(self, i: int, box: Box) -> np.ndarray:
        return self.avatar.region(i, box)

    def i420(self, i: int) -> np.ndarray:
        return self.avatar.frame_i420(i)


class Picture:
    """Source frame ``source_index`` of ``frames`` with ``edit`` applied (None: unchanged).
    Both outputs are computed on first use, kept, and read-only."""

    __slots__ = ("frames", "source_index", "edit", "_bgr", "_i420")

    def __init__(self, frames: SourceFrames, source_index: int, edit: RegionEdit | None) -> None:
        self.frames = frames
        self.source_index = int(source_index)
        if edit is not None:
            edit = even_aligned(edit, frames.height, frames.width,
                                lambda box: frames.region(self.source_index, box))
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
                e = self.edit
                write_region(out, self.frames.height, self.frames.width, e.x, e.y, e.patch, e.changed)
                out.setflags(write=False)
                self._i420 = out
        return self._i420
