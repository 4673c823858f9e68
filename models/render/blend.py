"""Putting a mouth patch into a frame without a visible edge: feathered masks, colour match.

Masks are drawn and blurred at a reduced scale (a feather tens of pixels wide costs
the same as a 3 px one there) and upsampled; the colour match is a per-channel
mean/std transfer measured in LAB and applied through per-channel lookup tables,
so it stays cheap on a 1080p mouth region.
"""

from __future__ import annotations

import cv2
import numpy as np

WORK_SCALE_PX = 40.0   # masks are drawn where the face's eye distance is this many px
GAIN_LIMITS = (0.75, 1.33)


def feather_mask(polygons: list[np.ndarray], size_hw: tuple[int, int], s: float, feather: float,
                 shrink: float = 0.0, patch: np.ndarray | None = None, base: np.ndarray | None = None,
                 reach: float = 0.0, threshold: int = 24) -> np.ndarray:
    """Union of filled polygons (px, in the region's coordinates), blurred: float32 in [0, 1].

    ``feather`` is the blur's sigma and ``shrink`` an erosion applied before it, both
    in units of the face scale ``s`` (px), so the transition looks the same on any
    resolution.  Shrinking by about 2 sigma keeps the blurred edge inside the polygons.

    With ``patch`` and ``base`` given, the mask also grows (up to ``reach`` beyond the
    polygons) over every place where the two pictures differ, so the soft edge lies
    where they agree: a chin that sits lower in one of them is taken whole instead of
    showing through the feather as a ghost.
    """
    h, w = size_hw
    k = min(1.0, WORK_SCALE_PX / max(s, 1e-3))
    sh, sw = max(2, int(round(h * k))), max(2, int(round(w * k)))
    small = np.zeros((sh, sw), np.uint8)
    scale = np.array([sw / w, sh / h], np.float32)
    for poly in polygons:
        pts = np.round(np.asarray(poly, np.float32) * scale * 16).astype(np.int32)
        cv2.fillPoly(small, [pts], 255, lineType=cv2.LINE_AA, shift=4)
    core = _morph(small, shrink * s * k, cv2.erode) if shrink > 0 else small
    if patch is not None and base is not None and reach > 0:
        a = shrink_image(patch, (sw, sh)).astype(np.int16)
        b = shrink_image(base, (sw, sh)).astype(np.int16)
        differs = (np.abs(a - b).max(axis=2) > threshold).astype(np.uint8) * 255
        differs &= _morph(small, reach * s * k, cv2.dilate)
        # Grow the differing area by the blur's reach so the feather starts outside it.
        core = np.maximum(core, _morph(differs, 2.0 * feather * s * k, cv2.dilate))
    sigma = max(0.5, feather * s * k)
    soft = cv2.GaussianBlur(core.astype(np.float32) / 255.0, (0, 0), sigma)
    return cv2.resize(soft, (w, h), interpolation=cv2.INTER_LINEAR)


def shrink_image(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """``image`` averaged down to ``size_wh``: bilinear to twice the size, then 2×2 means.
    Close to INTER_AREA, which costs ten times more at a non-integer factor (2.6 ms for a
    1080p mouth region)."""
    sw, sh = size_wh
    h, w = image.shape[:2]
    if 2 * sw >= w or 2 * sh >= h:
        return cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
    twice = cv2.resize(image, (2 * sw, 2 * sh), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(twice, (sw, sh), interpolation=cv2.INTER_AREA)


def _morph(mask: np.ndarray, radius_px: float, op) -> np.ndarray:
    r = max(1, int(round(radius_px)))
    return op(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))


def colour_step(s: float) -> int:
    """Sampling step of ``colour_transfer`` for a face of eye distance ``s`` px: every 3rd
    pixel up to a 512² face, sparser on larger ones (the same few thousand samples)."""
    return max(3, int(round(s / 30.0)))


def colour_transfer(patch: np.ndarray, reference: np.ndarray, region: np.ndarray,
                    step: int = 3) -> np.ndarray:
    """``patch`` recoloured so its LAB mean/std inside ``region`` match ``reference``'s.

    Both images must be the same size; ``region`` is a bool mask of where they show
    the same kind of surface (skin around the mouth, not the mouth itself).  The
    statistics are taken in LAB on every ``step``-th pixel; the correction is then
    fitted as one lookup table per BGR channel, because converting the whole patch
    to LAB and back costs more than everything else in a video frame's blend.
    """
    sel = region[::step, ::step]
    if sel.sum() < 16:
        return patch
    small = np.ascontiguousarray(patch[::step, ::step])
    lab_p = cv2.cvtColor(small, cv2.COLOR_BGR2LAB)
    lab_r = cv2.cvtColor(np.ascontiguousarray(reference[::step, ::step]), cv2.COLOR_BGR2LAB)
    src = lab_p[sel].astype(np.float32)
    dst = lab_r[sel].astype(np.float32)
    mu_s, sd_s = src.mean(0), src.std(0) + 1.0
    mu_d, sd_d = dst.mean(0), dst.std(0) + 1.0
    gain = np.clip(sd_d / sd_s, *GAIN_LIMITS)
    x = np.arange(256, dtype=np.float32)[:, None]
    lab_lut = np.clip((x - mu_s) * gain + mu_d + 0.5, 0, 255).astype(np.uint8).reshape(256, 1, 3)
    target = cv2.cvtColor(cv2.LUT(lab_p, lab_lut), cv2.COLOR_LAB2BGR)[sel].astype(np.float32)
    before = small[sel].astype(np.float32)
    lut = np.empty((256, 1, 3), np.uint8)
    for c in range(3):
        slope, icept = _line_fit(before[:, c], target[:, c])
        lut[:, 0, c] = np.clip(x[:, 0] * slope + icept + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(patch, lut)


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares y = a x + b with the slope kept within GAIN_LIMITS."""
    vx = float(x.var())
    a = float(((x - x.mean()) * (y - y.mean())).mean() / vx) if vx > 1.0 else 1.0
    a = float(np.clip(a, *GAIN_LIMITS))
    return a, float(y.mean() - a * x.mean())


def composite(base: np.ndarray, patch: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """base * (1 - alpha) + patch * alpha as uint8; exactly ``base`` where alpha is 0."""
    return cv2.blendLinear(patch, base, alpha, 1.0 - alpha)
