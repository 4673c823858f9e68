"""Lip geometry from FaceMesh landmarks: a mouth-centred coordinate frame and lip curves.

Everything the renderer moves is described in *mouth space*: origin between the
mouth corners, u along the eye line (so a crooked smile does not tilt the frame),
v perpendicular to it pointing down the face, both in units of the outer-eye-corner
distance ``s``.  That makes every constant in the renderer resolution independent:
0.1 means a tenth of the eye distance on a 512 px photo and on a 1080p video alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# FaceMesh (468-point) indices, each contour ordered from the left mouth corner
# (image left) to the right one.
UPPER_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
LOWER_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
# The lower jaw line from below the left ear to below the right one.
JAW = (132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361)
# Points that do not move when the mouth does: eye corners, nose bridge and wings,
# upper cheeks.  Similarity transforms between frames are estimated from these.
STABLE = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 98, 327, 2, 64, 294, 116, 345, 123, 352)
EYE_OUTER = (33, 263)
MOUTH_CORNERS = (61, 291)
INNER_CORNERS = (78, 308)
SUBNASALE = 2
CHIN = 152


class GeometryError(ValueError):
    """The landmarks cannot describe a mouth (wrong shape, degenerate face)."""


@dataclass(frozen=True)
class MouthFrame:
    """A similarity frame: image px = origin + s * (u * axis_u + v * axis_v)."""

    origin: np.ndarray   # (2,) px
    axis_u: np.ndarray   # (2,) unit vector, along the eyes (image left → right)
    axis_v: np.ndarray   # (2,) unit vector, down the face
    s: float             # outer-eye-corner distance, px

    def to_mouth(self, px: np.ndarray) -> np.ndarray:
        d = np.asarray(px, dtype=np.float32) - self.origin
        return np.stack([d @ self.axis_u, d @ self.axis_v], axis=-1) / self.s

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        uv = np.asarray(uv, dtype=np.float32)
        return self.origin + self.s * (uv[..., :1] * self.axis_u + uv[..., 1:2] * self.axis_v)

    def image_vectors(self, du: np.ndarray, dv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mouth-space displacements (s units) → image-space (dx, dy) in px."""
        dx = self.s * (du * self.axis_u[0] + dv * self.axis_v[0])
        dy = self.s * (du * self.axis_u[1] + dv * self.axis_v[1])
        return dx, dy


def check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.ndim != 2 or lm.shape[0] < 468 or lm.shape[1] != 2:
        raise GeometryError(f"expected (468, 2) face landmarks, got shape {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise GeometryError("face landmarks contain NaN or infinite values")
    return lm


def mouth_frame(landmarks: np.ndarray) -> MouthFrame:
    lm = check_landmarks(landmarks)
    eye_l, eye_r = lm[EYE_OUTER[0]], lm[EYE_OUTER[1]]
    s = float(np.linalg.norm(eye_r - eye_l))
    if s < 4.0:
        raise GeometryError(f"face too small or degenerate (eye distance {s:.1f} px)")
    axis_u = (eye_r - eye_l) / s
    axis_v = np.array([-axis_u[1], axis_u[0]], dtype=np.float32)
    origin = 0.5 * (lm[MOUTH_CORNERS[0]] + lm[MOUTH_CORNERS[1]])
    return MouthFrame(origin.astype(np.float32), axis_u.astype(np.float32), axis_v, s)


@dataclass(frozen=True)
class LipCurves:
    """Lip and jaw contours in mouth space, each sampled as v(u) with u increasing."""

    upper_outer: tuple[np.ndarray, np.ndarray]
    upper_inner: tuple[np.ndarray, np.ndarray]
    lower_inner: tuple[np.ndarray, np.ndarray]
    lower_outer: tuple[np.ndarray, np.ndarray]
    jaw: tuple[np.ndarray, np.ndarray]
    corners: tuple[float, float]        # u of the outer mouth corners
    inner_corners: tuple[float, float]  # u of the inner-lip corners
    subnasale: float                    # v of the point under the nose
    chin: float                         # v of the chin tip

    @property
    def half_width(self) -> float:
        return 0.5 * (self.corners[1] - self.corners[0])

    @property
    def gap(self) -> float:
        """Opening between the inner lips at the centre (s units; 0 when closed)."""
        return max(0.0, float(at(self.lower_inner, 0.0) - at(self.upper_inner, 0.0)))


def at(curve: tuple[np.ndarray, np.ndarray], u: np.ndarray | float) -> np.ndarray:
    """Evaluate a contour at u, holding the end values beyond the corners."""
    return np.interp(u, curve[0], curve[1]).astype(np.float32)


def _curve(uv: np.ndarray, indices: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    pts = uv[list(indices)]
    order = np.argsort(pts[:, 0], kind="stable")
    u, v = pts[order, 0], pts[order, 1]
    # np.interp needs strictly increasing u; nudge duplicates apart.
    u = np.maximum.accumulate(u + np.arange(len(u)) * 1e-6)
    return u.astype(np.float32), v.astype(np.float32)


def lip_curves(landmarks: np.ndarray, frame: MouthFrame) -> LipCurves:
    lm = check_landmarks(landmarks)
    uv = frame.to_mouth(lm)
    upper_inner = _curve(uv, UPPER_INNER)
    lower_inner = _curve(uv, LOWER_INNER)
    # FaceMesh can let the inner contours cross by a pixel on a closed mouth; the
    # renderer splits the face along the lower inner lip, so keep it below the upper.
    lower_inner = (lower_inner[0], np.maximum(lower_inner[1], at(upper_inner, lower_inner[0])))
    return LipCurves(
        upper_outer=_curve(uv, UPPER_OUTER),
        upper_inner=upper_inner,
        lower_inner=lower_inner,
        lower_outer=_curve(uv, LOWER_OUTER),
        jaw=_curve(uv, JAW),
        corners=(float(uv[MOUTH_CORNERS[0], 0]), float(uv[MOUTH_CORNERS[1], 0])),
        inner_corners=(float(uv[INNER_CORNERS[0], 0]), float(uv[INNER_CORNERS[1], 0])),
        subnasale=float(uv[SUBNASALE, 1]),
        chin=float(uv[CHIN, 1]),
    )


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping src → dst, as 2×3."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    var = float((a * a).sum())
    if var < 1e-9:
        raise GeometryError("cannot align: reference points coincide")
    # Closed form for 2-D: the complex ratio that best maps a onto b.
    c = float((a * b).sum()) / var
    d = float((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum()) / var
    m = np.array([[c, -d], [d, c]])
    t = mu_d - m @ mu_s
    return np.hstack([m, t[:, None]]).astype(np.float32)


def roi_box(frame: MouthFrame, uv_corners: np.ndarray,
            image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Axis-aligned pixel box (x0, y0, x1, y1) around a mouth-space region, clipped to the image."""
    px = frame.to_image(uv_corners)
    h, w = image_hw
    x0 = int(np.clip(np.floor(px[:, 0].min()), 0, w - 1))
    y0 = int(np.clip(np.floor(px[:, 1].min()), 0, h - 1))
    x1 = int(np.clip(np.ceil(px[:, 0].max()) + 1, x0 + 1, w))
    y1 = int(np.clip(np.ceil(px[:, 1].max()) + 1, y0 + 1, h))
    return x0, y0, x1, y1


def lower_face_outline(landmarks: np.ndarray, jaw_drop: float = 0.0, margin: float = 0.1,
                       below: float = 0.2) -> np.ndarray:
    """Convex outline (px) of the part of the face that moves with speech.

    Lips, mouth corners and cheeks beside them, and the chin: ``margin`` around the
    jaw line and ``below`` further down (FaceMesh's jaw line tends to sit above the
    visible chin edge, and the skin under the chin moves with it); ``jaw_drop``
    lower still when the jaw will be opened further by a warp.  The top edge stays
    under the nose.
    """
    lm = check_landmarks(landmarks)
    frame = mouth_frame(lm)
    uv = frame.to_mouth(lm)
    jaw = uv[[150, 149, 176, 148, 152, 377, 400, 378, 379]]
    centre = 0.5 * (uv[MOUTH_CORNERS[0]] + uv[MOUTH_CORNERS[1]])
    out = jaw - centre
    out = centre + out * (1.0 + margin / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-3))
    corner_v = float(centre[1])
    half = 0.5 * abs(float(uv[MOUTH_CORNERS[1], 0] - uv[MOUTH_CORNERS[0], 0]))
    sub = float(uv[SUBNASALE, 1])
    pts = [out, out + np.array([0.0, jaw_drop + below], np.float32),
           np.array([[-half - 0.28, corner_v], [half + 0.28, corner_v],
                     [-0.22, sub + 0.05], [0.22, sub + 0.05], [0.0, sub + 0.04]], np.float32)]
    px = frame.to_image(np.concatenate(pts))
    return cv2.convexHull(px.astype(np.float32)).reshape(-1, 2)


def lip_outline(landmarks: np.ndarray) -> np.ndarray:
    """The outer lip contour (px), closed polygon."""
    lm = check_landmarks(landmarks)
    return np.concatenate([lm[list(UPPER_OUTER)], lm[list(LOWER_OUTER)][::-1]]).astype(np.float32)
