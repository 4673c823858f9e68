"""Mouth motion synthesised from one still face: a lip/jaw warp plus a painted inner mouth.

Openness is absolute (0 = lips together): the picture's own lip gap is one point
on that scale (``rest_openness``, measured like ``face_landmarks.mouth_features``),
and the picture is exactly itself there.  Two warps leave it in either direction:

* opening: the face is split along the lower inner lip.  Everything above the split
  (upper lip, and any teeth the photo already shows, since upper teeth belong to the
  skull) rises a little; the lower lip and chin drop with the jaw.  The gap that
  opens between the two halves is painted: a dark cavity, upper teeth when the photo
  shows none, a hint of tongue and lower teeth for wide openings, all coloured from
  the face itself;
* closing: the upper lip comes down and the lower lip (the chin following a little)
  comes up until their inner edges meet; the teeth between them shrink away and the
  lip textures stretch over the gap (closed lips look fuller), with a faint shadow
  line where they meet.

Both are a smooth backward displacement field over a small mouth region, evaluated
on a coarse grid, upsampled and applied with one ``cv2.remap``; where the lips close
the field has a step (two lip edges meet over a gap that vanishes), so it is
evaluated exactly, pixel by pixel, over the lips.

Column by column the field is a 1-D monotone map through a few knots (nose, upper
lip edges, lower lip edges, chin, neck), so it cannot fold; horizontal motion
(spread / pucker) is a separate smooth stretch about the mouth centre.  All lengths
are in mouth space (units of the eye-corner distance, see ``mouth_geometry``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.avatar.face_landmarks import mouth_features
from models.mouth.mouth_shape import MouthShape
from models.render.mouth_geometry import LipCurves, MouthFrame, at, lip_curves, mouth_frame, roi_box

FULL_GAP = 0.35          # inner-lip gap at openness 1 (the scale face_landmarks measures)
MIN_ADDED_GAP = 0.16     # a photo that already shows teeth still opens this much at openness 1
UPPER_SHARE = 0.2        # fraction of the opening taken by the upper lip rising
CORNER_SPREAD = 0.06     # corner shift per unit of width (each side)
CORNER_PUCKER = 0.055    # inward corner shift at full rounding
LIP_PUCKER = 0.03        # lips thicken (protrude) at full rounding
STRETCH_REACH = 0.3      # how far beyond the corners the spread/pucker fades out
NECK_MARGIN = 0.55       # the warp fades to nothing this far below the chin
ROI_HALF_WIDTH = 0.9
GRID_CELLS = 40          # coarse field samples along the ROI's longer side
# Closing.  Real lips close mostly by the jaw rising; the upper lip comes down over
# the upper teeth less.  The outer lip edges follow their inner edges almost fully:
# the lips get a little fuller as they press together, but lips stretched much
# taller read (to people and to FaceMesh alike) as a mouth still ajar.
CLOSE_UPPER_SHARE = 0.25  # of the gap closed by the upper lip coming down
UPPER_OUTER_FOLLOW = 0.85
LOWER_OUTER_FOLLOW = 0.9
JAW_FOLLOW = 0.35        # the chin rises this fraction of the lower lip's rise at the centre
LIP_EAT = 0.012          # the lips meet this far inside their landmark edges (landmark slack),
                         # so no sliver of teeth survives between them
SEAM_DARK = 0.4          # darkening of the line where the lips meet
SEAM_SIGMA = 0.011       # its half-width (Gaussian sigma)
POCKET_SIGMA = 0.05      # height of the band where dark mouth-corner pockets are filled
POCKET_END = 1.3         # ... its reach, in half inner-mouth widths from the centre
POCKET_LIFT = 1.0        # ... and how far they are lifted towards the colour around them
POCKET_BLUR = 0.06       # the "around them" (Gaussian sigma)


@dataclass(frozen=True)
class MouthPalette:
    """Colours (BGR float) of the face's own mouth parts, plus what the photo shows."""

    lip: np.ndarray
    skin: np.ndarray
    teeth: np.ndarray
    cavity: np.ndarray
    tongue: np.ndarray
    shows_teeth: bool      # the source's open lips already reveal upper teeth


@dataclass(frozen=True)
class MouthPose:
    """The deformation to apply, in mouth-space units."""

    openness: float        # the target (drives teeth / tongue visibility)
    drop: float            # added inner-lip gap at the centre
    corner: float          # outward shift of each mouth corner (negative = inward)
    pucker: float          # lip thickening
    cavity_width: float    # fraction of the inner-lip width that opens
    exponent: float        # opening profile: small = boxy (spread), 0.5 = elliptic (round)
    repaint: bool = False  # paint the whole inner mouth, not only the newly opened gap
    close: float = 0.0     # fraction of the picture's own inner-lip gap to close (1 = lips meet)

    @property
    def is_identity(self) -> bool:
        return (self.drop < 1e-4 and self.close < 1e-4 and abs(self.corner) < 1e-4
                and self.pucker < 1e-4)


@dataclass(frozen=True)
class PhotoMouthPlan:
    """Per-landmark-set precomputation: the mouth frame, lip curves and warp grid."""

    frame: MouthFrame
    curves: LipCurves
    box: tuple[int, int, int, int]           # x0, y0, x1, y1 in image px
    grid_uv: tuple[np.ndarray, np.ndarray]   # coarse grid in mouth space
    lip_box: tuple[int, int, int, int]       # the lips, relative to box: the field is exact here
    rest_openness: float                     # the picture's own openness (MouthShape scale)

    @property
    def size(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.box
        return y1 - y0, x1 - x0

    def uv_in(self, x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """Mouth-space coordinates of the pixels of a sub-box given relative to the ROI."""
        xs = np.arange(self.box[0] + x0, self.box[0] + x1, dtype=np.float32)
        ys = np.arange(self.box[1] + y0, self.box[1] + y1, dtype=np.float32)
        return _to_uv(self.frame, *np.meshgrid(xs, ys))


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def plan_for(landmarks: np.ndarray, image_hw: tuple[int, int]) -> PhotoMouthPlan:
    frame = mouth_frame(landmarks)
    curves = lip_curves(landmarks, frame)
    top = curves.subnasale - 0.05
    bottom = max(curves.chin, float(curves.jaw[1].max())) + NECK_MARGIN + 0.05
    corners = np.array([[-ROI_HALF_WIDTH, top], [ROI_HALF_WIDTH, top],
                        [-ROI_HALF_WIDTH, bottom], [ROI_HALF_WIDTH, bottom]], np.float32)
    box = roi_box(frame, corners, image_hw)
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    step = max(h, w) / GRID_CELLS
    gh, gw = max(2, int(round(h / step))), max(2, int(round(w / step)))
    # Sample where cv2.resize will put the coarse pixel centres, so upsampling is exact.
    gx = x0 + (np.arange(gw) + 0.5) * (w / gw) - 0.5
    gy = y0 + (np.arange(gh) + 0.5) * (h / gh) - 0.5
    grid = _to_uv(frame, *np.meshgrid(gx.astype(np.float32), gy.astype(np.float32)))
    c = curves
    # The lips, and as far out as the mouth-corner pockets reach (_finish_closed_lips).
    mid = 0.5 * (c.inner_corners[0] + c.inner_corners[1])
    reach = max(c.corners[1] - mid + 0.04, mid - c.corners[0] + 0.04,
                0.5 * (c.inner_corners[1] - c.inner_corners[0]) * (POCKET_END + 0.2) + 0.02)
    top, low = float(c.upper_outer[1].min()) - 0.03, float(c.lower_outer[1].max()) + 0.03
    lips = np.array([[mid - reach, top], [mid + reach, top], [mid - reach, low], [mid + reach, low]],
                    np.float32)
    lx0, ly0, lx1, ly1 = roi_box(frame, lips, image_hw)
    lip_box = (max(lx0 - x0, 0), max(ly0 - y0, 0), min(lx1 - x0, w), min(ly1 - y0, h))
    rest = mouth_features(np.asarray(landmarks, np.float32))[0]
    return PhotoMouthPlan(frame, curves, box, grid, lip_box, float(rest))


def _to_uv(frame: MouthFrame, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dx, dy = x - frame.origin[0], y - frame.origin[1]
    u = (dx * frame.axis_u[0] + dy * frame.axis_u[1]) / frame.s
    v = (dx * frame.axis_v[0] + dy * frame.axis_v[1]) / frame.s
    return u.astype(np.float32), v.astype(np.float32)


def pose_for(shape: MouthShape, plan: PhotoMouthPlan) -> MouthPose:
    """Map a MouthShape onto this face's deformation.

    Openness is absolute: below the picture's own (``plan.rest_openness``) the lips
    close, reaching each other at 0; above it the mouth opens further, reaching the
    full FULL_GAP at 1 (at least MIN_ADDED_GAP more than the picture, so a photo that
    already shows its teeth still visibly opens).  Both are linear in openness and
    meet at the picture itself, so a sweep through it has no jump.  Width and
    rounding are taken relative to the picture (its expression is the neutral) and
    act at any openness: a rounded /u/ or /m/ of nearly closed lips is rounded too.
    """
    o = float(np.clip(shape.openness, 0.0, 1.0))
    w = float(np.clip(shape.width, -1.0, 1.0))
    r = float(np.clip(shape.rounding, 0.0, 1.0))
    rest = plan.rest_openness
    curves = plan.curves
    close = 1.0 - o / rest if o < rest else 0.0
    room = max(FULL_GAP - curves.gap, MIN_ADDED_GAP)
    drop = (o - rest) / max(1.0 - rest, 1e-3) * room if o > rest else 0.0
    return MouthPose(
        openness=o,
        drop=drop,
        corner=CORNER_SPREAD * w - CORNER_PUCKER * r,
        pucker=LIP_PUCKER * r,
        # Lips that already part over teeth cannot pucker narrower than those teeth.
        cavity_width=1.0 - (0.1 if curves.gap > 0.05 else 0.4) * r,
        exponent=0.45 + 0.12 * r - 0.12 * max(w, 0.0),
        close=close,
    )


def pose_towards(shape: MouthShape, plan: PhotoMouthPlan) -> MouthPose:
    """Move a *real* mouth to ``shape``'s openness on the absolute scale.

    Used on a video frame whose own mouth is the closest the person ever made but
    not open enough (or not closed enough): only the missing opening (or closing) is
    added, width and rounding stay the real ones.  When opening, the whole inner
    mouth is repainted, because the real one (lit from a narrower opening) would not
    continue into the painted gap.
    """
    o = float(np.clip(shape.openness, 0.0, 1.0))
    r = float(np.clip(shape.rounding, 0.0, 1.0))
    w = float(np.clip(shape.width, -1.0, 1.0))
    rest = plan.rest_openness
    close = 1.0 - o / rest if o < rest else 0.0
    return MouthPose(
        openness=o, drop=0.0 if close > 0 else max(0.0, o * FULL_GAP - plan.curves.gap),
        corner=0.0, pucker=0.0,
        cavity_width=1.0, exponent=0.45 + 0.12 * r - 0.12 * max(w, 0.0), repaint=close == 0.0,
        close=close,
    )


# ---------------------------------------------------------------------------------------
# The displacement field (backward: output point p samples the source at p - d)


def _horizontal(u: np.ndarray, v: np.ndarray, c: LipCurves, pose: MouthPose) -> np.ndarray:
    """Spread or pucker: corners move by pose.corner, fading out beyond them and off the lips."""
    if abs(pose.corner) < 1e-6:
        return np.zeros_like(u)
    mid = 0.5 * (c.corners[0] + c.corners[1])
    out_corner = c.half_width + pose.corner
    a = np.abs(u - mid)
    inside = pose.corner * a / out_corner
    outside = pose.corner * (1.0 - _smoothstep((a - out_corner) / STRETCH_REACH))
    d = np.where(a <= out_corner, inside, outside)
    # Full effect on the lips, fading out below them and, above, before the nose
    # (which also keeps the field zero on the region's border).
    band_top = float(c.upper_outer[1].min()) - 0.02
    fade_top = max(0.02, band_top - (c.subnasale - 0.02))
    band_bottom = float(c.lower_outer[1].max()) + pose.drop + 0.04
    fade = np.maximum((band_top - v) / fade_top, (v - band_bottom) / 0.2)
    return (np.sign(u - mid) * d * (1.0 - _smoothstep(fade))).astype(np.float32)


def _lens(u: np.ndarray, c: LipCurves, pose: MouthPose) -> np.ndarray:
    """Opening profile along the mouth: 1 at the centre, 0 at the (inner) corners."""
    mid = 0.5 * (c.inner_corners[0] + c.inner_corners[1])
    half = 0.5 * (c.inner_corners[1] - c.inner_corners[0]) * pose.cavity_width
    t = np.clip(1.0 - ((u - mid) / max(half, 1e-3)) ** 2, 0.0, 1.0)
    return (t ** pose.exponent).astype(np.float32)


def _outer_lens(u: np.ndarray, c: LipCurves) -> np.ndarray:
    mid = 0.5 * (c.corners[0] + c.corners[1])
    t = np.clip(1.0 - ((u - mid) / max(c.half_width, 1e-3)) ** 2, 0.0, 1.0)
    return (t ** 0.3).astype(np.float32)


def _vertical(u: np.ndarray, v: np.ndarray, c: LipCurves, pose: MouthPose) -> np.ndarray:
    """Jaw drop + upper-lip rise + pucker as a per-column monotone knot map."""
    lens, lens_o = _lens(u, c, pose), _outer_lens(u, c)
    up, down = UPPER_SHARE * pose.drop, (1.0 - UPPER_SHARE) * pose.drop
    mid = 0.5 * (c.corners[0] + c.corners[1])
    jaw_w = 1.0 - _smoothstep((np.abs(u - mid) - 0.3) / 0.45)
    split = at(c.lower_inner, u)
    s1 = np.minimum(at(c.upper_outer, u), split)
    s0 = np.minimum(np.full_like(u, c.subnasale), s1 - 0.02)
    s4 = np.maximum(at(c.lower_outer, u), split)
    s5 = np.maximum(at(c.jaw, u), s4 + 0.05)
    s6 = s5 + NECK_MARGIN
    d2 = -up * lens
    d3 = down * lens
    d1 = -(up + pose.pucker) * lens_o
    # Keep every segment monotone: a displacement that grows by more than twice the
    # segment's own length would fold the image under smoothstep interpolation.
    d1 = np.maximum(d1, d2 - 1.6 * (split - s1))
    d4 = np.minimum((down + pose.pucker) * lens_o, d3 + 1.6 * (s4 - split))
    d5 = np.minimum(down * jaw_w, d4 + 1.6 * (s5 - s4))
    zero = np.zeros_like(u)
    src = np.stack([s0, s1, split, split, s4, s5, s6])
    disp = np.stack([zero, d1, d2, d3, d4, d5, zero])
    out = src + disp
    return _knot_interp(v, out, disp)


def _closing(u: np.ndarray, c: LipCurves, pose: MouthPose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the lips' inner edges are taken from (top, bottom, source v) and how far
    they travel: the upper one down by the first returned value, the lower one up by
    the second; the third is the travel's sum (the gap that closes)."""
    ui, li = at(c.upper_inner, u), at(c.lower_inner, u)
    g = np.maximum(li - ui, 0.0)
    eat = pose.close * np.minimum(LIP_EAT, 0.5 * g)
    shut = pose.close * (g + 2.0 * eat)
    return ui - eat, li + eat, shut


def _vertical_close(u: np.ndarray, v: np.ndarray, c: LipCurves, pose: MouthPose) -> np.ndarray:
    """Lips closing: upper lip down, lower lip and (a little) the chin up, per column.

    The knots of the inner lip edges collapse onto one line at ``close`` = 1; between
    them the teeth are squeezed into what is left of the gap (linear segment)."""
    top, bottom, shut = _closing(u, c, pose)
    a, b = CLOSE_UPPER_SHARE * shut, (1.0 - CLOSE_UPPER_SHARE) * shut
    mid = 0.5 * (c.corners[0] + c.corners[1])
    centre = float(_closing(np.float32([mid]), c, pose)[2][0])
    jaw_w = 1.0 - _smoothstep((np.abs(u - mid) - 0.3) / 0.45)
    lens_o = _outer_lens(u, c)
    s1 = np.minimum(at(c.upper_outer, u), top)
    s0 = np.minimum(np.full_like(u, c.subnasale), s1 - 0.02)
    s4 = np.maximum(at(c.lower_outer, u), bottom)
    s5 = np.maximum(at(c.jaw, u), s4 + 0.05)
    s6 = s5 + NECK_MARGIN
    d2, d3 = a, -b
    # Segment bounds keep the map monotone (see _vertical): growth ≤ 1.6×, shrink < 1×.
    d1 = np.clip(UPPER_OUTER_FOLLOW * a - pose.pucker * lens_o, d2 - 1.6 * (top - s1), d2 + 0.95 * (top - s1))
    d1 = np.clip(d1, -0.95 * (s1 - s0), 1.6 * (s1 - s0))
    d4 = np.clip(-LOWER_OUTER_FOLLOW * b + pose.pucker * lens_o, d3 - 0.95 * (s4 - bottom),
                 d3 + 1.6 * (s4 - bottom))
    d5 = np.clip(-JAW_FOLLOW * (1.0 - CLOSE_UPPER_SHARE) * centre * jaw_w,
                 d4 - 0.95 * (s5 - s4), d4 + 1.6 * (s5 - s4))
    zero = np.zeros_like(u)
    src = np.stack([s0, s1, top, bottom, s4, s5, s6])
    disp = np.stack([zero, d1, d2, d3, d4, d5, zero])
    return _knot_interp(v, src + disp, disp)


def _knot_interp(v: np.ndarray, knots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-point interpolation through 7 knots; smoothstep per segment, linear in the gap."""
    shape = v.shape
    v = v.reshape(-1)
    knots, values = knots.reshape(len(knots), -1), values.reshape(len(values), -1)
    k = np.clip((v[None] >= knots).sum(axis=0) - 1, 0, len(knots) - 2)
    col = np.arange(v.size)
    lo, hi = knots[k, col], knots[k + 1, col]
    a, b = values[k, col], values[k + 1, col]
    t = np.clip((v - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)
    t = np.where(k == 2, t, t * t * (3.0 - 2.0 * t))  # segment 2 is the cavity: keep it linear
    d = a + (b - a) * t
    inside = (v >= knots[0]) & (v <= knots[-1])
    return np.where(inside, d, 0.0).astype(np.float32).reshape(shape)


def displacement(u: np.ndarray, v: np.ndarray, c: LipCurves,
                 pose: MouthPose) -> tuple[np.ndarray, np.ndarray]:
    """Backward displacement (du, dv) at output points; the source is (u - du, v - dv)."""
    du = _horizontal(u, v, c, pose)
    dv = (_vertical_close if pose.close > 0 else _vertical)(u - du, v, c, pose)
    return du, dv


# ---------------------------------------------------------------------------------------
# Colours


def palette_from(image: np.ndarray, landmarks: np.ndarray) -> MouthPalette:
    """Lip, skin and (if visible) teeth colours measured on the face; the rest derived."""
    plan = plan_for(landmarks, image.shape[:2])
    c = plan.curves
    x0, y0, x1, y1 = plan.box
    u, v = plan.uv_in(0, 0, x1 - x0, y1 - y0)
    roi = image[y0:y1, x0:x1].reshape(-1, 3).astype(np.float32)
    u, v = u.ravel(), v.ravel()
    upper_in, lower_in = at(c.upper_inner, u), at(c.lower_inner, u)
    between = (u > c.inner_corners[0]) & (u < c.inner_corners[1])
    lips = (((v > at(c.upper_outer, u)) & (v < upper_in)) | ((v > lower_in) & (v < at(c.lower_outer, u))))
    lips &= (u > c.corners[0]) & (u < c.corners[1])
    skin = (np.abs(u) < 0.18) & (v > at(c.lower_outer, u) + 0.06) & (v < at(c.jaw, u) - 0.06)
    lip = _median(roi[lips], fallback=np.array([110, 120, 170], np.float32))
    skin_c = _median(roi[skin], fallback=lip * 1.1)
    # Upper teeth show just under the upper lip: look at the top part of the opening.
    inner = roi[between & (v > upper_in + 0.01) & (v < upper_in + 0.4 * (lower_in - upper_in))]
    teeth, shows = _teeth(inner, skin_c, c.gap)
    lab = _lab(lip)
    cavity = _bgr(np.array([max(10.0, 0.11 * lab[0]), 128 + 0.5 * (lab[1] - 128),
                            128 + 0.3 * (lab[2] - 128)]))
    tongue = _bgr(np.array([0.42 * lab[0], 128 + 1.0 * (lab[1] - 128) + 8, 128 + 0.6 * (lab[2] - 128)]))
    return MouthPalette(lip, skin_c, teeth, cavity, tongue, shows)


def _teeth(inner: np.ndarray, skin: np.ndarray, gap: float) -> tuple[np.ndarray, bool]:
    skin_l = _lab(skin)[0]
    if gap > 0.05 and len(inner) >= 8:
        lum = inner.mean(axis=1)
        bright = inner[lum >= np.percentile(lum, 70)]
        teeth = bright.mean(axis=0)
        if _lab(teeth)[0] > 0.85 * skin_l:
            return teeth.astype(np.float32), True
    # Natural teeth: a little brighter than the skin, low saturation, slightly yellow.
    return _bgr(np.array([min(232.0, 0.35 * 255 + 0.7 * skin_l), 129.0, 138.0])), False


def _median(px: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    return np.median(px, axis=0).astype(np.float32) if len(px) >= 8 else fallback.astype(np.float32)


def _lab(bgr: np.ndarray) -> np.ndarray:
    px = np.clip(bgr, 0, 255).astype(np.uint8).reshape(1, 1, 3)
    return cv2.cvtColor(px, cv2.COLOR_BGR2LAB).reshape(3).astype(np.float32)


def _bgr(lab: np.ndarray) -> np.ndarray:
    px = np.clip(lab, 0, 255).astype(np.uint8).reshape(1, 1, 3)
    return cv2.cvtColor(px, cv2.COLOR_LAB2BGR).reshape(3).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Rendering


def synthesize(image: np.ndarray, plan: PhotoMouthPlan, pose: MouthPose,
               palette: MouthPalette) -> np.ndarray | None:
    """The mouth ROI (plan.box) of ``image`` deformed to ``pose``; None if nothing changes."""
    if pose.is_identity:
        return None
    roi = _warp(image, plan, pose)
    if pose.close > 0:
        _finish_closed_lips(roi, plan, pose, palette)
    elif pose.drop > 0 or pose.repaint:
        _paint_cavity(roi, plan, pose, palette)
    return roi


def _warp(image: np.ndarray, plan: PhotoMouthPlan, pose: MouthPose) -> np.ndarray:
    h, w = plan.size
    du, dv = displacement(*plan.grid_uv, plan.curves, pose)
    dx, dy = plan.frame.image_vectors(du, dv)
    dx = cv2.resize(dx.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    dy = cv2.resize(dy.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    if pose.close > 0:
        # Closing lips meet along a line where the field steps over the vanishing gap:
        # a coarse grid would smear the step into a streak of teeth, so compute it exactly.
        lx0, ly0, lx1, ly1 = plan.lip_box
        du, dv = displacement(*plan.uv_in(lx0, ly0, lx1, ly1), plan.curves, pose)
        dx[ly0:ly1, lx0:lx1], dy[ly0:ly1, lx0:lx1] = plan.frame.image_vectors(du, dv)
    x0, y0 = plan.box[:2]
    dx = np.arange(x0, x0 + w, dtype=np.float32)[None, :] - dx
    dy = np.arange(y0, y0 + h, dtype=np.float32)[:, None] - dy
    return cv2.remap(image, dx, dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _finish_closed_lips(roi: np.ndarray, plan: PhotoMouthPlan, pose: MouthPose,
                        pal: MouthPalette) -> None:
    """Where closing lips meet: fill the dark pockets left at the mouth corners and
    draw the faint shadow line between the lips, both fading in over the last part
    of the closing.

    The pockets are the far ends of the picture's opening (cavity behind the cheeks),
    which the closing squeezes but cannot remove; left alone they read as the corners
    of a mouth still ajar.  Pixels there darker than their surroundings take the
    colour of the lit lip and skin around them.  The line runs along the middle of
    what is left of the gap and on, fainter, to the mouth corners; it darkens (does
    not recolour) so the lips keep their own colour."""
    strength = float(_smoothstep(np.float32((pose.close - 0.4) / 0.6)))
    if strength < 1e-3:
        return
    lx0, ly0, lx1, ly1 = plan.lip_box
    c = plan.curves
    u, v = plan.uv_in(lx0, ly0, lx1, ly1)
    u = u - _horizontal(u, v, c, pose)
    line, x, x_out = _seam_line(u, c, pose)
    region = roi[ly0:ly1, lx0:lx1].astype(np.float32)
    pocket = _smoothstep((x - 0.55) / 0.3) * (1.0 - _smoothstep((x - POCKET_END) / 0.2))
    pocket = strength * pocket * np.exp(-0.5 * ((v - line) / POCKET_SIGMA) ** 2)
    # The colour around: a blur weighted by brightness, so the pocket itself does not count.
    lum = region.mean(axis=2)
    lip_l = float(pal.lip.mean())
    lit = _smoothstep((lum - 0.75 * lip_l) / (0.2 * lip_l))
    den, near = _wide_blur(lit, region * lit[..., None], max(1.0, POCKET_BLUR * plan.frame.s))
    den = den[..., None]
    near = np.where(den > 0.05, near / np.maximum(den, 1e-3), pal.lip)
    near_l = near.mean(axis=2)
    lift = POCKET_LIFT * pocket * _smoothstep((0.97 * near_l - lum) / (0.2 * near_l + 1e-3))
    region += lift[..., None] * (near - region)
    sigma = max(SEAM_SIGMA, 0.55 / plan.frame.s)
    along = (1.0 - 0.5 * _smoothstep((x - 0.6) / 0.4)) * (1.0 - _smoothstep((x_out - 0.92) / 0.12))
    shade = 1.0 - SEAM_DARK * strength * along * np.exp(-0.5 * ((v - line) / sigma) ** 2)
    roi[ly0:ly1, lx0:lx1] = np.clip(region * shade[..., None] + 0.5, 0, 255).astype(np.uint8)


def _wide_blur(a: np.ndarray, b: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blurs of two same-size float images.  Wide ones (they only estimate the
    colour around a pocket) run at half resolution: a quarter of the pixels and half
    the kernel; rendered mouths differ from full-size blurring by 3 grey levels at most."""
    if sigma < 3.0:
        return cv2.GaussianBlur(a, (0, 0), sigma), cv2.GaussianBlur(b, (0, 0), sigma)
    h, w = a.shape[:2]
    half = ((w + 1) // 2, (h + 1) // 2)
    out = []
    for img in (a, b):
        small = cv2.GaussianBlur(cv2.resize(img, half, interpolation=cv2.INTER_AREA), (0, 0), sigma / 2)
        out.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))
    return out[0], out[1]


def _seam_line(u: np.ndarray, c: LipCurves, pose: MouthPose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the lips meet (v at each u), and |u| from the centre in half inner and
    half outer mouth widths.  Between the inner corners: the middle of what is left
    of the gap; beyond them: straight on to the outer mouth corners."""
    top, bottom, shut = _closing(u, c, pose)
    line = 0.5 * (top + CLOSE_UPPER_SHARE * shut + bottom - (1.0 - CLOSE_UPPER_SHARE) * shut)
    mid = 0.5 * (c.inner_corners[0] + c.inner_corners[1])
    half_in = max(0.5 * (c.inner_corners[1] - c.inner_corners[0]), 1e-3)
    half_out = max(0.5 * (c.corners[1] - c.corners[0]), half_in + 1e-3)
    left = u < mid
    inner_v = np.where(left, at(c.lower_inner, c.inner_corners[0]), at(c.lower_inner, c.inner_corners[1]))
    outer_v = np.where(left, c.upper_outer[1][0], c.upper_outer[1][-1])
    d = np.abs(u - mid)
    t = np.clip((d - half_in) / (half_out - half_in), 0.0, 1.0)
    line = np.where(d > half_in, inner_v + t * (outer_v - inner_v), line)
    return line.astype(np.float32), d / half_in, d / half_out


def cavity_outline(plan: PhotoMouthPlan, pose: MouthPose, n: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower edge of the opened gap, (n, 2) each in mouth space (output)."""
    c = plan.curves
    mid = 0.5 * (c.inner_corners[0] + c.inner_corners[1])
    half = 0.5 * (c.inner_corners[1] - c.inner_corners[0]) * pose.cavity_width
    u_src = (mid - half * np.cos(np.linspace(0.0, np.pi, n))).astype(np.float32)
    lens = _lens(u_src, c, pose)
    split = at(c.lower_inner, u_src)
    top = (at(c.upper_inner, u_src) if pose.repaint else split) - UPPER_SHARE * pose.drop * lens
    bottom = split + (1.0 - UPPER_SHARE) * pose.drop * lens
    # Invert the horizontal stretch by fixed-point iteration, both edges at once.
    v = np.concatenate([top, bottom]).astype(np.float32)
    u_both = np.concatenate([u_src, u_src])
    u = u_both.copy()
    for _ in range(4):
        u = u_both + _horizontal(u, v, c, pose)
    edges = np.stack([u, v], axis=1)
    return edges[:n], edges[n:]


def _paint_cavity(roi: np.ndarray, plan: PhotoMouthPlan, pose: MouthPose, pal: MouthPalette) -> None:
    top, bottom = cavity_outline(plan, pose)
    x0, y0 = plan.box[0], plan.box[1]
    poly = np.concatenate([top, bottom[::-1]])
    poly_px = plan.frame.to_image(poly) - np.array([x0, y0], np.float32)
    pad = 2 + int(np.ceil(1.05 * plan.frame.s / 60.0))  # room for the edge blur below
    bx0, by0 = np.floor(poly_px.min(0)).astype(int) - pad
    bx1, by1 = np.ceil(poly_px.max(0)).astype(int) + pad + 1
    h, w = roi.shape[:2]
    bx0, by0, bx1, by1 = max(bx0, 0), max(by0, 0), min(bx1, w), min(by1, h)
    if bx1 - bx0 < 2 or by1 - by0 < 2:
        return
    mask = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
    pts = np.round((poly_px - [bx0, by0]) * 16).astype(np.int32)
    cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA, shift=4)
    if not mask.any():
        return
    alpha = mask.astype(np.float32) / 255.0
    px = plan.frame.s / 60.0  # pixels per "62 px face" unit, for blur sizes
    # The lips' inner edge is soft, and the lips shade what lies just behind them:
    # darken towards the outline, isotropically (a blur of the mask measures nearness).
    inner = cv2.GaussianBlur(alpha, (0, 0), max(0.6, 1.2 * px))
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.35, 0.35 * px))
    u, v = plan.uv_in(bx0, by0, bx1, by1)
    paint = _inner_mouth(u, v, top, bottom, pose, pal, 1.0 - _smoothstep(inner * 1.6 - 0.3))
    a = alpha[..., None]
    region = roi[by0:by1, bx0:bx1]
    region[:] = np.clip(region * (1.0 - a) + paint * a + 0.5, 0, 255).astype(np.uint8)


def _inner_mouth(u: np.ndarray, v: np.ndarray, top: np.ndarray, bottom: np.ndarray,
                 pose: MouthPose, pal: MouthPalette, rim: np.ndarray) -> np.ndarray:
    """Inner-mouth colours for the pixels (u, v) given the gap's edges.

    ``rim`` is 1 right at the outline and falls to 0 inside: the lips shade what lies
    just behind them, mostly under the upper lip (the light comes from the front).
    """
    y_top = np.interp(u, top[:, 0], top[:, 1])
    y_bot = np.interp(u, bottom[:, 0], bottom[:, 1])
    left, right = float(top[0, 0]), float(top[-1, 0])
    a = np.clip((u - 0.5 * (left + right)) / max(0.5 * (right - left), 1e-3), -1.0, 1.0)
    depth = max(float((bottom[:, 1] - top[:, 1]).max()), 1e-3)
    from_top = v - y_top
    from_bot = y_bot - v
    # The cavity is lit only through the lips: darkest under the upper teeth and
    # towards the cheeks, a little light reaching the floor of the mouth.
    light = 0.75 + 0.45 * _smoothstep(from_top / (0.8 * depth))
    light = light * (1.0 - 0.5 * _smoothstep((np.abs(a) - 0.35) / 0.65))
    out = pal.cavity * light[..., None]
    o = pose.openness
    # Tongue: a soft dome on the floor of the mouth, visible once the jaw is well open;
    # its upper surface faces the light coming in, its sides turn away into shade.
    dome = (0.5 * depth) * np.clip(1.0 - (a / 0.78) ** 2, 0.0, 1.0) ** 0.7
    tongue_a = _smoothstep((dome - from_bot) / (0.3 * depth + 1e-3) + 0.5)
    tongue_a = tongue_a * 0.8 * _smoothstep((o - 0.25) / 0.35)
    lit = (0.7 + 0.3 * _smoothstep(from_bot / (dome + 1e-3))) * (1.0 - 0.35 * np.abs(a))
    out = out + (pal.tongue * lit[..., None] - out) * tongue_a[..., None]
    half = 0.5 * (right - left)
    lower = 0.024 * _smoothstep((o - 0.5) / 0.3)
    if lower > 1e-3:  # tips of the lower incisors behind the lower lip, in its shade
        colour = 0.5 * pal.teeth + 0.12 * pal.lip
        out, _ = _teeth_row(out, a, from_bot, lower, half, colour, reach=0.15)
    teeth = np.zeros_like(a)
    if pose.repaint or not pal.shows_teeth:
        out, teeth = _teeth_row(out, a, from_top, min(0.085, 0.55 * depth), half, pal.teeth, reach=half)
    upper = _smoothstep((from_bot - from_top) / depth + 0.5)
    shade = 1.0 - rim * (0.38 * (0.35 + 0.65 * upper)) * (1.0 - 0.7 * teeth)
    return (out * shade[..., None]).astype(np.float32)


# Upper tooth boundaries from the midline, in eye distances, as seen from the front:
# central and lateral incisors, canine, premolars (narrower as the arch turns away).
TOOTH_EDGES = np.array([0.0, 0.09, 0.16, 0.21, 0.25, 0.285, 0.315, 0.34, 0.365], np.float32)


def _teeth_row(out: np.ndarray, a: np.ndarray, dist: np.ndarray, height: float, half: float,
               colour: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """A row of teeth growing ``height`` out of the lip at ``dist`` = 0: one rounded
    crown per tooth, receding into the shade of the cheeks; visible to ``reach``
    (eye distances) from the midline.  Returns the picture and the teeth's coverage."""
    x = np.abs(a) * half                                  # distance from the midline
    k = np.clip(np.searchsorted(TOOTH_EDGES, x), 1, len(TOOTH_EDGES) - 1)
    left, right = TOOTH_EDGES[k - 1], TOOTH_EDGES[k]
    t = np.clip((x - left) / (right - left), 0.0, 1.0)    # position across this tooth
    crown = 1.0 - 0.35 * (2.0 * t - 1.0) ** 4             # rounded corners at the biting edge
    length = np.where(k <= 2, 1.0, np.where(k == 3, 1.05, 0.85))  # canines are longest
    h = height * crown * length * (1.0 - 0.3 * np.clip(x / 0.3, 0, 1) ** 2)
    cover = _smoothstep((h - dist) / 0.008 + 0.5)
    cover = cover * (1.0 - _smoothstep((x - 0.8 * reach) / (0.25 * reach + 1e-3)))
    gap = 1.0 - 0.14 * np.exp(-((np.minimum(t, 1.0 - t) * (right - left)) / 0.004) ** 2)
    side = 0.62 + 0.38 * np.clip(1.0 - (x / max(half, 1e-3)) ** 2, 0.0, 1.0)
    lip_shadow = 0.78 + 0.22 * _smoothstep(dist / (0.35 * h + 1e-3))
    tip = 1.0 - 0.12 * _smoothstep((dist - 0.75 * h) / (0.25 * h + 1e-3))  # translucent edge
    teeth = colour * (side * gap * lip_shadow * tip)[..., None]
    return out + (teeth - out) * cover[..., None], cover
