"""Idle motion for photo avatars: slight head sway, breathing and blinks.

A still photo with only a moving mouth looks like a cut-out. We turn the photo into
a short seamless loop instead: every motion is periodic in the loop length, so the
last frame flows into the first. The head moves rigidly (so the mouth keeps its
exact shape and the renderer can treat the loop like a video avatar); the motion
fades out with distance from the head so the background stays put.

Blinks close the upper lid by stretching the lid skin above it down to the lower
lid with ``cv2.remap`` in the photo's own coordinates, before the head motion.
The landmarks go through the same transforms, so they stay on the pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from models.avatar.face_landmarks import (
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    eye_span,
    landmark_box,
)


@dataclass(frozen=True)
class IdleMotion:
    """Loop parameters; amplitudes are relative to the face (eye-corner distance)."""

    seconds: float = 8.4                 # loop length; blinks and breaths fit it exactly
    sway_degrees: float = 1.3            # head roll amplitude
    sway_shift: float = 0.045            # sideways head drift, x eye span
    nod_shift: float = 0.025             # up-down head drift, x eye span
    breath_shift: float = 0.03           # rise of head and shoulders at full breath, x eye span
    breaths: int = 2                     # breaths per loop (4.2 s each at the default length)
    blink_times: tuple[float, ...] = (1.2, 5.0)   # seconds into the loop; 3.8 s and 4.6 s apart
    blink_close_s: float = 0.06          # lid travel down
    blink_open_s: float = 0.10           # lid travel up (opening is slower)


@dataclass(frozen=True)
class IdleFrame:
    image: np.ndarray        # BGR, photo size
    landmarks: np.ndarray    # (468, 2) float32 pixels, on this frame
    blink: float             # lid closure 0..1 (for tests and plots)


def idle_loop(photo: np.ndarray, landmarks: np.ndarray, fps: float,
              motion: IdleMotion = IdleMotion()) -> Iterator[IdleFrame]:
    """The loop's frames in order; ``round(motion.seconds * fps)`` of them."""
    n = max(2, int(round(motion.seconds * fps)))
    period = n / fps  # exact loop length in seconds after rounding to frames
    h, w = photo.shape[:2]
    field = _MotionField(landmarks, w, h)
    scale = float(eye_span(landmarks))
    for k in range(n):
        t = k / fps
        closure = blink_closure(t, period, motion)
        source = photo
        lm = np.asarray(landmarks, dtype=np.float32)
        if closure > 0.01:
            source, lm = close_eyes(photo, lm, closure)
        pose = head_pose(t, period, motion, scale)
        map_x, map_y = field.backward_maps(pose)
        image = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        yield IdleFrame(image, field.forward(lm, pose), closure)


# ---------------------------------------------------------------------------------------
# Time courses


@dataclass(frozen=True)
class HeadPose:
    angle: float     # radians, roll about the neck
    dx: float        # pixels
    dy: float        # pixels (head, includes breathing)
    breath: float    # pixels the shoulders rise


def head_pose(t: float, period: float, m: IdleMotion, face_scale: float) -> HeadPose:
    """Sums of a few harmonics of the loop frequency: smooth, non-repeating-looking, periodic."""
    ph = 2 * np.pi * t / period
    angle = np.deg2rad(m.sway_degrees) * (0.75 * np.sin(ph + 0.4) + 0.25 * np.sin(3 * ph + 1.3))
    dx = m.sway_shift * face_scale * (0.7 * np.sin(ph + 2.0) + 0.3 * np.sin(2 * ph + 0.5))
    dy = m.nod_shift * face_scale * np.sin(2 * ph + 1.1)
    breath = m.breath_shift * face_scale * 0.5 * (1 - np.cos(m.breaths * ph))
    return HeadPose(float(angle), float(dx), float(dy - breath), float(breath))


def blink_closure(t: float, period: float, m: IdleMotion) -> float:
    """Lid closure at ``t``: quick close, slower open, 0 between blinks (wraps the loop)."""
    closure = 0.0
    for t0 in m.blink_times:
        d = (t - t0 + period / 2) % period - period / 2   # signed distance, wrapped
        width = m.blink_close_s if d < 0 else m.blink_open_s
        closure = max(closure, float(np.exp(-0.5 * (d / (width / 2)) ** 2)))
    return closure if closure > 0.02 else 0.0


# ---------------------------------------------------------------------------------------
# Head motion as a smooth displacement field


class _MotionField:
    """Backward maps for cv2.remap: rigid head motion blended into a still background.

    The weights depend only on the output position, so they are computed once; the
    head's rigid motion is exact where the weight is 1 (the whole face, mouth included).
    """

    def __init__(self, landmarks: np.ndarray, width: int, height: int) -> None:
        x0, y0, x1, y1 = landmark_box(landmarks).tolist()
        fw, fh = x1 - x0, y1 - y0
        self.pivot = np.array([(x0 + x1) / 2, y1 + 0.35 * fh], dtype=np.float32)  # neck
        self._head_c = ((x0 + x1) / 2, (y0 + y1) / 2 - 0.1 * fh)
        self._head_r = (0.95 * fw, 1.0 * fh)
        self._chin_y, self._top_y = y1, y0 - 0.6 * fh
        xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
        self._xs, self._ys = xs, ys
        # The head term is w * (A p + k) with A, k changing per frame: keep w, w*x, w*y.
        self._w = self._head_weight(xs, ys)
        self._wx, self._wy = self._w * xs, self._w * ys
        self._w_breath = self._body_weight(ys) * (1 - self._w)

    def _head_weight(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = np.sqrt(((x - self._head_c[0]) / self._head_r[0]) ** 2 + ((y - self._head_c[1]) / self._head_r[1]) ** 2)
        return _smoothstep(2.0, 1.0, d)

    def _body_weight(self, y: np.ndarray) -> np.ndarray:
        return _smoothstep(self._top_y, self._chin_y, y)

    def _head_terms(self, pose: HeadPose) -> tuple[float, float, float, float]:
        """(c - 1, s, kx, ky): the inverse head motion minus identity is
        hx = (c-1) x - s y + kx,  hy = s x + (c-1) y + ky."""
        c, s = float(np.cos(-pose.angle)), float(np.sin(-pose.angle))
        ax, ay = self.pivot[0] + pose.dx, self.pivot[1] + pose.dy
        kx = -c * ax + s * ay + self.pivot[0]
        ky = -s * ax - c * ay + self.pivot[1]
        return c - 1, s, float(kx), float(ky)

    def _displacement(self, x: np.ndarray, y: np.ndarray, pose: HeadPose) -> tuple[np.ndarray, np.ndarray]:
        """Backward displacement at arbitrary points: output (x, y) shows (x + dx, y + dy)."""
        cm1, s, kx, ky = self._head_terms(pose)
        w = self._head_weight(x, y)
        breath = self._body_weight(y) * (1 - w) * pose.breath
        return w * (cm1 * x - s * y + kx), w * (s * x + cm1 * y + ky) + breath

    def backward_maps(self, pose: HeadPose) -> tuple[np.ndarray, np.ndarray]:
        """Same field as ``_displacement`` on the whole grid, from precomputed products."""
        cm1, s, kx, ky = self._head_terms(pose)
        map_x = self._xs + cm1 * self._wx - s * self._wy + kx * self._w
        map_y = self._ys + s * self._wx + cm1 * self._wy + ky * self._w + pose.breath * self._w_breath
        return map_x, map_y

    def forward(self, points: np.ndarray, pose: HeadPose) -> np.ndarray:
        """Where source points appear in the output: solve p + D(p) = q by fixed point."""
        q = np.asarray(points, dtype=np.float32)
        p = q.copy()
        for _ in range(8):
            dx, dy = self._displacement(p[:, 0], p[:, 1], pose)
            p = q - np.stack([dx, dy], axis=1)
        return p.astype(np.float32)


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Blinks


def close_eyes(photo: np.ndarray, landmarks: np.ndarray, closure: float) -> tuple[np.ndarray, np.ndarray]:
    """Both eyes closed by ``closure`` (0 open .. 1 shut); returns new image and landmarks."""
    image = photo.copy()
    lm = np.asarray(landmarks, dtype=np.float32).copy()
    for upper, lower in ((RIGHT_EYE_UPPER, RIGHT_EYE_LOWER), (LEFT_EYE_UPPER, LEFT_EYE_LOWER)):
        _close_eye(photo, image, lm, upper, lower, closure)
    return image, lm


def _close_eye(src: np.ndarray, dst: np.ndarray, lm: np.ndarray,
               upper: tuple[int, ...], lower: tuple[int, ...], closure: float) -> None:
    up, lo = lm[list(upper)], lm[list(lower)]
    xa, xb = float(min(up[0, 0], up[-1, 0])), float(max(up[0, 0], up[-1, 0]))
    eye_w = xb - xa
    if eye_w < 4:
        return
    skin = 0.4 * eye_w  # lid skin above the lid margin that unfolds over the eye
    h, w = src.shape[:2]
    rx0, rx1 = max(int(np.floor(xa)) - 1, 0), min(int(np.ceil(xb)) + 2, w)
    ry0 = max(int(np.floor(min(up[:, 1].min(), lo[:, 1].min()) - skin)) - 1, 0)
    ry1 = min(int(np.ceil(max(up[:, 1].max(), lo[:, 1].max()))) + 2, h)
    if rx1 - rx0 < 2 or ry1 - ry0 < 2:
        return
    xs = np.arange(rx0, rx1, dtype=np.float32)
    y_up = _polyline_y(up, xs)
    y_lo = np.maximum(_polyline_y(lo, xs), y_up)
    inside = (xs > xa) & (xs < xb)
    y_close = np.where(inside, y_up + closure * (y_lo - y_up), y_up)
    y_top = y_up - skin
    gx, gy = np.meshgrid(xs, np.arange(ry0, ry1, dtype=np.float32))
    # Rows between the skin top and the new lid line show the stretched lid skin;
    # rows below it show the eye unchanged (the lid covers it from above). The
    # stretch is quadratic, not linear: at the lid margin the scale is 1, so the
    # lashes keep their thickness, and the smooth skin higher up takes the stretch.
    span = np.maximum(y_close - y_top, 1e-3)
    u = np.clip((gy - y_top) / span, 0.0, 1.0)
    ratio = span / np.maximum(y_up - y_top, 1e-3)      # output length / source length >= 1
    a = np.clip(2.0 - ratio, 0.0, 1.0)
    stretched = y_top + (y_up - y_top) * (a * u + (1 - a) * u * u)
    in_lid = (gy >= y_top) & (gy <= y_close) & inside
    map_y = np.where(in_lid, stretched, gy).astype(np.float32)
    patch = cv2.remap(src, gx, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    dst[ry0:ry1, rx0:rx1] = patch
    # The upper-lid landmarks ride down with the lid margin.
    lm[list(upper), 1] = np.interp(up[:, 0], xs, y_close).astype(np.float32)


def _polyline_y(points: np.ndarray, xs: np.ndarray) -> np.ndarray:
    order = np.argsort(points[:, 0])
    return np.interp(xs, points[order, 0], points[order, 1]).astype(np.float32)
