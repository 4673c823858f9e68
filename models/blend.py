"""Putting a mouth patch into a frame without a visible edge: feathered masks, colour match.

Masks are drawn and blurred at a reduced scale (a feather tens of pixels wide costs
the same as a 3 px one there) and upsampled; the colour match is a per-channel
mean/std transfer in LAB applied through lookup tables, so it stays cheap on a
1080p mouth region.
"""

from __future__ import annotations

import cv2
import numpy as np

WORK_SCALE_PX = 40.0   # masks are drawn where the face's eye distance is this many px
GAIN_LIMITS = (0.75, 1.33)


def feather_mask(polygons: list[np.ndarray], size_hw: tuple[int, int], s: float,
                 feather: float, shrink: float = 0.0) -> np.ndarray:
    """Union of filled polygons (px, in the region's coordinates), blurred: float32 in [0, 1].

    ``feather`` is the blur's sigma and ``shrink`` an erosion applied before it, both
    in units of the face scale ``s`` (px), so the transition looks the same on any
    resolution.  Shrinking by about 2 sigma keeps the blurred edge inside the polygons.
    """
    h, w = size_hw
    k = min(1.0, WORK_SCALE_PX / max(s, 1e-3))
    sh, sw = max(2, int(round(h * k))), max(2, int(round(w * k)))
    small = np.zeros((sh, sw), np.uint8)
    scale = np.array([sw / w, sh / h], np.float32)
    for poly in polygons:
        pts = np.round(np.asarray(poly, np.float32) * scale * 16).astype(np.int32)
        cv2.fillPoly(small, [pts], 255, lineType=cv2.LINE_AA, shift=4)
    if shrink > 0:
        r = max(1, int(round(shrink * s * k)))
        small = cv2.erode(small, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    sigma = max(0.5, feather * s * k)
    soft = cv2.GaussianBlur(small.astype(np.float32) / 255.0, (0, 0), sigma)
    return cv2.resize(soft, (w, h), interpolation=cv2.INTER_LINEAR)


def colour_transfer(patch: np.ndarray, reference: np.ndarray, region: np.ndarray,
                    step: int = 3) -> np.ndarray:
    """``patch`` recoloured so its LAB mean/std inside ``region`` match ``reference``'s.

    Both images must be the same size; ``region`` is a bool mask of where they show
    the same kind of surface (skin around the mouth, not the mouth itself).
    """
    sel = region[::step, ::step]
    if sel.sum() < 16:
        return patch
    lab_p = cv2.cvtColor(patch, cv2.COLOR_BGR2LAB)
    lab_r = cv2.cvtColor(reference[::step, ::step], cv2.COLOR_BGR2LAB)
    src = lab_p[::step, ::step][sel].astype(np.float32)
    dst = lab_r[sel].astype(np.float32)
    mu_s, sd_s = src.mean(0), src.std(0) + 1.0
    mu_d, sd_d = dst.mean(0), dst.std(0) + 1.0
    gain = np.clip(sd_d / sd_s, *GAIN_LIMITS)
    x = np.arange(256, dtype=np.float32)[:, None]
    lut = np.clip((x - mu_s) * gain + mu_d + 0.5, 0, 255).astype(np.uint8)  # (256, 3)
    lab_p = cv2.LUT(lab_p, lut.reshape(256, 1, 3))
    return cv2.cvtColor(lab_p, cv2.COLOR_LAB2BGR)


def composite(base: np.ndarray, patch: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """base * (1 - alpha) + patch * alpha, uint8, only where alpha is non-zero."""
    ys, xs = np.nonzero(alpha > 1.0 / 512)
    out = base.copy()
    if len(ys) == 0:
        return out
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    a = alpha[y0:y1, x0:x1, None]
    b = base[y0:y1, x0:x1].astype(np.float32)
    p = patch[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = (b + (p - b) * a + 0.5).astype(np.uint8)
    return out
