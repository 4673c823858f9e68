"""Synthetic avatar sources with known geometry, shared by the avatar tests and bench.

The astronaut photo pasted on a plain canvas at a position that follows a known
path, so a test can check that landmarks follow the face to the pixel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
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


# ---------------------------------------------------------------------------------------
# Sources as people shoot them: fades, cuts, cut-aways, a face that leaves (issue 10)


@functools.lru_cache(maxsize=4)
def second_face_bgr(side: int) -> np.ndarray:
    """Another "person" for cut tests: the astronaut mirrored and with red and blue
    swapped.  FaceMesh tracks it like any face, and no thumbnail or landmark of it
    matches the original's, so a test can tell which shot it is looking at."""
    img = np.ascontiguousarray(astronaut_bgr(side)[:, ::-1, ::-1])
    img.setflags(write=False)
    return img


@functools.lru_cache(maxsize=4)
def empty_scene(width: int, height: int) -> np.ndarray:
    """A room with nobody in it: a floor, a wall and a window; no face anywhere."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = (150, 170, 185)
    img[int(0.7 * height):] = (60, 80, 110)
    cv2.rectangle(img, (width // 8, height // 6), (width // 3, height // 2), (220, 200, 160), -1)
    cv2.rectangle(img, (width // 8, height // 6), (width // 3, height // 2), (40, 40, 40), 3)
    cv2.circle(img, (3 * width // 4, int(0.62 * height)), height // 8, (30, 110, 40), -1)
    img.setflags(write=False)
    return img


@dataclass(frozen=True)
class ShotPlan:
    """One shot of a generated clip: ``frames`` frames of ``face`` drifting from (x, y)
    by (dx, dy) px a frame (``face=None``: the empty room), faded from black over its
    first ``fade_in`` frames, on its own background."""

    frames: int
    face: str | None = "astronaut"        # "astronaut", "other" or None
    x: float = 40.0
    y: float = 20.0
    dx: float = 1.0
    dy: float = 0.0
    fade_in: int = 0
    black: bool = False                   # a black leader instead of a picture
    path: Callable[[int], tuple[float, float]] | None = None   # (x, y) at frame k, instead of x + k dx

    def position(self, k: int) -> tuple[float, float]:
        return self.path(k) if self.path is not None else (self.x + k * self.dx, self.y + k * self.dy)


@dataclass(frozen=True)
class ShotClip:
    """Frames of a generated clip plus what a test needs to know about them."""

    frames: list[np.ndarray]
    cuts: list[int]            # first frame of each shot after the first
    face_side: int


def shot_clip(plans: list[ShotPlan], width: int = 320, height: int = 240, face_side: int = 200) -> ShotClip:
    """Render ``plans`` back to back (BGR frames, before any encoding)."""
    frames: list[np.ndarray] = []
    cuts: list[int] = []
    for s, plan in enumerate(plans):
        if s:
            cuts.append(len(frames))
        for k in range(plan.frames):
            frames.append(_shot_frame(plan, k, width, height, face_side))
    return ShotClip(frames, cuts, face_side)


def _shot_frame(plan: ShotPlan, k: int, width: int, height: int, face_side: int) -> np.ndarray:
    if plan.black:
        return np.zeros((height, width, 3), np.uint8)
    if plan.face is None:
        image = empty_scene(width, height).copy()
    else:
        face = astronaut_bgr(face_side) if plan.face == "astronaut" else second_face_bgr(face_side)
        image = canvas_with_face(width, height, face_side, *plan.position(k), face=face)
    if k < plan.fade_in:
        image = (image.astype(np.float32) * ((k + 1) / (plan.fade_in + 1))).round().astype(np.uint8)
    return image
