"""I420 pictures: what avatar frames are stored as and what the encoders take.

A packed I420 array is (height*3/2, width) uint8: the Y plane, then U, then V at
half size, BT.601 limited range as OpenCV converts BGR.  Sizes are even (avatars
always are: ``avatar_source.fit_size``).  cv2's conversions work on 2×2 blocks
(chroma is averaged from BGR per block and replicated back per block), so
converting an even-aligned box of a picture gives exactly that box of the whole
picture's conversion, both ways.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]   # x0, y0, x1, y1


def bgr_to_i420(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV_I420)


def i420_to_bgr(i420: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(i420), cv2.COLOR_YUV2BGR_I420)


def i420_planes(i420: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a packed (height*3/2, width) I420 array."""
    flat = i420.reshape(-1)
    n, q = height * width, height * width // 4
    return (flat[:n].reshape(height, width), flat[n:n + q].reshape(height // 2, width // 2),
            flat[n + q:n + 2 * q].reshape(height // 2, width // 2))


def even_box(box: Box, height: int, width: int) -> Box:
    """``box`` widened to even bounds (inside the picture)."""
    x0, y0, x1, y1 = box
    return x0 & ~1, y0 & ~1, min(width, x1 + (x1 & 1)), min(height, y1 + (y1 & 1))


def crop_i420(i420: np.ndarray, height: int, width: int, box: Box) -> np.ndarray:
    """The packed I420 of an even-aligned ``box`` of the picture."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    y, u, v = i420_planes(i420, height, width)
    out = np.empty((h * 3 // 2, w), np.uint8)
    oy, ou, ov = i420_planes(out, h, w)
    oy[:] = y[y0:y1, x0:x1]
    ou[:] = u[y0 // 2:y1 // 2, x0 // 2:x1 // 2]
    ov[:] = v[y0 // 2:y1 // 2, x0 // 2:x1 // 2]
    return out


def region_bgr(i420: np.ndarray, height: int, width: int, box: Box) -> np.ndarray:
    """BGR pixels of ``box`` (any bounds): exactly that part of the whole picture's
    conversion, at the cost of converting the box alone."""
    ex0, ey0, ex1, ey1 = even_box(box, height, width)
    bgr = i420_to_bgr(crop_i420(i420, height, width, (ex0, ey0, ex1, ey1)))
    x0, y0, x1, y1 = box
    if (x0, y0, x1, y1) == (ex0, ey0, ex1, ey1):
        return bgr
    return bgr[y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0]


def write_region(i420: np.ndarray, height: int, width: int, x0: int, y0: int, patch_bgr: np.ndarray,
                 changed: np.ndarray | None = None) -> None:
    """Write a BGR patch (even position and size) into ``i420`` in place, converting it
    alone.  With ``changed`` (bool, the patch's size), only the pixels it marks are
    written, and only the 2×2 chroma blocks holding one of them: the rest keeps the
    picture's own values bit for bit."""
    h, w = patch_bgr.shape[:2]
    y, u, v = i420_planes(i420, height, width)
    ry, ru, rv = i420_planes(bgr_to_i420(patch_bgr), h, w)
    ty, tu, tv = y[y0:y0 + h, x0:x0 + w], u[y0 // 2:(y0 + h) // 2, x0 // 2:(x0 + w) // 2], \
        v[y0 // 2:(y0 + h) // 2, x0 // 2:(x0 + w) // 2]
    if changed is None:
        ty[:] = ry
        tu[:] = ru
        tv[:] = rv
        return
    blocks = changed[0::2, 0::2] | changed[1::2, 0::2] | changed[0::2, 1::2] | changed[1::2, 1::2]
    np.copyto(ty, ry, where=changed)
    np.copyto(tu, ru, where=blocks)
    np.copyto(tv, rv, where=blocks)
