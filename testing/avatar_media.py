"""Synthetic avatar sources with known geometry, shared by the avatar tests and bench.

The astronaut photo pasted on a plain canvas at a position that follows a known
path, so a test can check that landmarks follow the face to the pixel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from skimage import data as skimage_data

Path2D = Callable[[float], tuple[float, float]]


@functools.lru_cache(maxsize=8)
def astronaut_bgr(side: int = 512) -> np.ndarray:
    """The photo at ``side`` px (cached and read-only: copy before drawing on it)."""
    img = np.ascontiguousarray(skimage_data.astronaut()[:, :, ::-1])
    img = img if side == 512 else cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    img.setflags(write=False)
    return img


def canvas_with_face(width: int, height: int, face_side: int, x: float, y: float,
                     face: np.ndarray | None = None) -> np.ndarray:
    """A gradient canvas with the astronaut (``face_side`` px square) at sub-pixel (x, y)."""
    face = astronaut_bgr(face_side) if face is None else face
    canvas = _gradient(width, height).copy()
    ix, iy = int(np.floor(x)), int(np.floor(y))
    fh, fw = face.shape[:2]
    # Shift by the fractional part inside a patch one pixel larger, then paste whole pixels.
    m = np.float32([[1, 0, x - ix], [0, 1, y - iy]])
    patch = cv2.warpAffine(face, m, (fw + 1, fh + 1), flags=cv2.INTER_LINEAR)
    mask = (cv2.warpAffine(np.full((fh, fw), 255, np.uint8), m, (fw + 1, fh + 1)) > 127).astype(np.uint8)
    x0, y0 = max(ix, 0), max(iy, 0)
    x1, y1 = min(ix + fw + 1, width), min(iy + fh + 1, height)
    if x1 <= x0 or y1 <= y0:
        return canvas
    sub = (slice(y0 - iy, y1 - iy), slice(x0 - ix, x1 - ix))
    region = canvas[y0:y1, x0:x1]
    cv2.copyTo(np.ascontiguousarray(patch[sub]), np.ascontiguousarray(mask[sub]), region)
    return canvas


@functools.lru_cache(maxsize=8)
def _gradient(width: int, height: int) -> np.ndarray:
    gx = np.linspace(40, 90, width, dtype=np.float32)
    gy = np.linspace(0, 40, height, dtype=np.float32)[:, None]
    return np.repeat((gx[None, :] + gy)[:, :, None], 3, axis=2).astype(np.uint8)


def write_video(path: Path, frames, fps: float | Fraction, codec: str = "libx264",
                timestamps: list[float] | None = None, display_rotation: int = 0) -> Path:
    """Encode BGR frames; ``timestamps`` (seconds) make a variable-frame-rate file;
    ``display_rotation`` (degrees counter-clockwise) tags it like a phone video."""
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as out:
        stream = None
        for i, frame in enumerate(frames):
            if stream is None:
                stream = out.add_stream(codec, rate=rate)
                stream.width, stream.height = frame.shape[1], frame.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = {"preset": "ultrafast"} if codec == "libx264" else {}
                if timestamps is not None:
                    stream.codec_context.time_base = Fraction(1, 1000)
                if display_rotation:
                    stream.set_display_rotation(display_rotation)
            vf = av.VideoFrame.from_ndarray(frame, format="bgr24")
            if timestamps is not None:
                vf.pts, vf.time_base = int(round(timestamps[i] * 1000)), Fraction(1, 1000)
            out.mux(stream.encode(vf))
        out.mux(stream.encode())
    return path


def moving_face_video(path: Path, *, seconds: float, fps: float, width: int, height: int,
                      face_side: int, route: Path2D, codec: str = "libx264") -> Path:
    n = int(round(seconds * fps))
    face = astronaut_bgr(face_side)
    frames = (canvas_with_face(width, height, face_side, *route(i / fps), face=face) for i in range(n))
    return write_video(path, frames, fps, codec=codec)


def default_route(width: int, height: int, face_side: int, seconds: float) -> Path2D:
    """Slow left-to-right drift with a small vertical bob, staying inside the canvas."""
    span_x = width - face_side

    def route(t: float) -> tuple[float, float]:
        u = t / seconds
        return 0.15 * span_x + 0.7 * span_x * u, (height - face_side) / 2 + 8 * np.sin(2 * np.pi * u)

    return route
