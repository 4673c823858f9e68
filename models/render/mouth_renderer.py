"""Avatar frame + MouthShape → the output frame, at the avatar's full resolution.

Two strategies, both working on a small mouth region and leaving the rest of the
frame bit-identical:

* photo avatars (one still picture, idle motion only): the lips and jaw are warped
  and the inner mouth is painted (``models.render.photo_mouth``);
* video avatars: the person's own mouth from the best-matching frame of their video
  (``models.render.mouth_library``) is aligned onto the current frame, colour-matched and
  feathered in (``models.render.blend``); if the video never opens the mouth that wide, the
  closest real mouth is first warped further open with the photo method, and if the
  person's lips never meet in the video (a smile that parts them), the most closed
  real mouth is closed with the photo method's closing warp.

Frames without a usable face (a fade, a cut-away, a hand over the face: the
avatar's ``face_found``) are returned exactly as stored: no mouth is pasted where
there is no face to paste it on.  Where the face re-enters mid-shot the mouth fades
in over a few frames; at a cut it switches at once (``models.avatar.shots.paste_weights``).

``render_region`` returns only what changes (a ``models.render.picture.RegionEdit``,
or None for a frame shown as stored): the live and offline paths composite and
colour-convert that region alone.  Video frames are read as the BGR pixels of the
regions used (``Avatar.region``), never as whole frames: frames are stored as I420.  ``render`` is the same edit written into a copy
of the frame.

One renderer serves one session: it remembers its previous library pick, so the
mouth plays on through the person's real motion instead of flickering between far
apart frames (an identical request repeats the pick, so it returns an identical
frame).  ``reset()`` forgets it, e.g. after an interrupt.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import cv2
import numpy as np

from models.avatar.shots import paste_weights
from models.mouth.mouth_shape import MouthShape
from models.render.blend import colour_step, colour_transfer, composite, feather_mask
from models.render.mouth_geometry import lip_outline, lower_face_outline
from models.render.mouth_library import CLOSED_OPENNESS, OPEN_SLACK, LibraryPick, MouthLibrary
from models.render.picture import RegionEdit
from models.render.photo_mouth import (
    MouthPalette,
    PhotoMouthPlan,
    palette_from,
    plan_for,
    pose_for,
    pose_towards,
    synthesize,
)

FEATHER = 0.045            # blur sigma of the video blend mask, × eye distance
SHRINK = 0.07              # erosion before the blur, so the feather stays inside the outline
REACH = 0.2                # how far beyond the outline the mask may grow over differences
BOX_MARGIN = REACH + 0.25  # region around the blend outline (reach + feather tails)
CROP_MARGIN = BOX_MARGIN + 0.35  # library crops also allow for pose differences
PLAN_CACHE = 512                 # plans are small (a coarse grid and a few curves)
CROP_CACHE_BYTES = 192 * 2**20   # decoded library mouth regions kept per renderer
STILL_CACHE_BYTES = 64 * 2**20   # closed-mouth regions of a photo's loop frames (30 kB each at 512²)
CLOSE_FADE = 0.03                # a library mouth this much too open is closed fully (see openness_to_show)

T = TypeVar("T")


class RenderError(ValueError):
    """A render request that cannot be served (bad frame index or shape)."""


class _Lru(Generic[T]):
    """A small least-recently-used cache bounded by a total size."""

    def __init__(self, budget: int, size: Callable[[T], int] | None = None) -> None:
        self._items: OrderedDict[Hashable, T] = OrderedDict()
        self._budget, self._size, self._used = budget, size or _one, 0

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            return item
        item = make()
        self._items[key] = item
        self._used += self._size(item)
        while self._used > self._budget and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._used -= self._size(old)
        return item


@dataclass(frozen=True)
class _Crop:
    """A library frame's lower face, kept so the frame need not be decoded again."""

    image: np.ndarray
    origin: np.ndarray    # (2,) its top-left corner in frame pixels
    landmarks: np.ndarray  # the frame's landmarks relative to the crop


class MouthRenderer:
    def __init__(self, avatar) -> None:
        self.avatar = avatar
        self.kind = avatar.info.kind
        self._hw = (int(avatar.info.height), int(avatar.info.width))
        self._landmarks = np.asarray(avatar.landmarks, np.float32)
        self._plans: _Lru[PhotoMouthPlan] = _Lru(PLAN_CACHE)
        self._crops: _Lru[_Crop] = _Lru(CROP_CACHE_BYTES, _crop_bytes)
        self._still: _Lru[np.ndarray] = _Lru(STILL_CACHE_BYTES, _array_bytes)
        self._palette: MouthPalette | None = None
        n = len(self._landmarks)
        found = np.asarray(getattr(avatar, "face_found", np.ones(n, bool)), bool)
        shots = np.asarray(getattr(avatar, "shot_ids", np.zeros(n, np.int32)), np.int32)
        self._weights = paste_weights(found, shots)
        self._library = (
            MouthLibrary(avatar.mouth_features, self._landmarks, found, shots)
            if self.kind == "video" else None
        )
        self._previous: int | None = None
        self._last: tuple[int, tuple, LibraryPick] | None = None
        self._palette_for(0)  # measured now, so the first frame of a session is not late

    def reset(self) -> None:
        self._previous = None
        self._last = None

    def render(self, frame_index: int, shape: MouthShape) -> np.ndarray:
        """The avatar's frame ``frame_index`` (BGR uint8, full size, a new array) saying ``shape``."""
        edit = self.render_region(frame_index, shape)
        out = self.avatar.frame(int(frame_index))
        return out if edit is None else edit.apply(out)

    def render_region(self, frame_index: int, shape: MouthShape) -> RegionEdit | None:
        """What changes in frame ``frame_index`` to say ``shape``: one region of new
        pixels, or None where the frame is shown as stored."""
        i = self._check_index(frame_index)
        key = _shape_key(shape)
        weight = float(self._weights[i])
        if weight <= 0.0:
            return None   # no usable face: the source frame, untouched
        if self._library is None:
            return self._render_photo(i, shape, key)
        # The same request twice in a row gets the same library pick, so the pick's
        # own continuity bonus cannot move it on to the next frame.
        if self._last is not None and self._last[:2] == (i, key):
            pick = self._last[2]
        else:
            pick = self._library.pick(shape.as_vector(), i, self._previous)
        self._previous = pick.index
        self._last = (i, key, pick)
        edit = self._render_video(i, shape, pick)
        if edit is not None and weight < 1.0:   # the face re-enters mid-shot: fade the mouth in
            base = self.avatar.region(i, edit.box)
            edit = RegionEdit(edit.x, edit.y, cv2.addWeighted(edit.patch, weight, base, 1.0 - weight, 0.0),
                              edit.changed)
        return edit

    # ---------------------------------------------------------------------- photo

    def _render_photo(self, i: int, shape: MouthShape, key: tuple) -> RegionEdit | None:
        frame = self.avatar.frame_readonly(i)
        plan = self._plans.get(i, lambda: plan_for(self._landmarks[i], frame.shape[:2]))

        def make() -> np.ndarray:
            roi = synthesize(frame, plan, pose_for(shape, plan), self._palette_for(i))
            return np.empty((0, 0, 3), np.uint8) if roi is None else roi
        # Silence is the common case (an idle session loops for hours): its closed
        # mouths are kept per loop frame, so idling costs a copy, not a warp.
        roi = self._still.get(i, make) if key == _SILENT else make()
        if not roi.size:
            return None
        x0, y0, _, _ = plan.box
        return RegionEdit(int(x0), int(y0), roi)

    def _palette_for(self, i: int) -> MouthPalette:
        # One palette per avatar, so colours cannot flicker from frame to frame.  For
        # a video, measure it on the most open frame: that one shows the real teeth.
        if self._palette is None:
            if self._library is not None:   # (frames without a face have no real mouth)
                openness = np.where(self._weights > 0, self.avatar.mouth_features[:, 0], -np.inf)
                i = int(np.argmax(openness))
            self._palette = palette_from(self.avatar.frame_readonly(i), self._landmarks[i])
        return self._palette

    # ---------------------------------------------------------------------- video

    def _render_video(self, i: int, shape: MouthShape, pick: LibraryPick) -> RegionEdit | None:
        assert self._library is not None
        j = pick.index
        crop, drop = self._crop(j), 0.0
        have = float(self._library.features[j, 0])
        show = openness_to_show(have, have + pick.open_deficit)
        if show is not None:
            crop, drop, warped = self._moved(j, crop, dataclasses.replace(shape, openness=show))
            if j == i:  # the frame's own mouth, moved: the warp is seamless by itself
                if warped is None:
                    return None
                # Only the warped box differs from the frame (the rest of the crop is its own pixels).
                x0, y0 = (int(v) for v in crop.origin)
                bx0, by0, bx1, by1 = warped
                return RegionEdit(x0 + bx0, y0 + by0, crop.image[by0:by1, bx0:bx1])
        elif j == i:
            return None
        m = self._library.alignment(j, i)
        lm_i, lm_j = self._landmarks[i], _apply(m, self._landmarks[j])
        s = float(np.linalg.norm(lm_i[263] - lm_i[33]))
        outlines = [lower_face_outline(lm_i), lower_face_outline(lm_j, jaw_drop=drop)]
        x0, y0, x1, y1 = _box(np.concatenate(outlines), BOX_MARGIN * s, self._hw)
        offset = np.array([x0, y0], np.float32)
        size = (y1 - y0, x1 - x0)
        # Frame j's pixel p lands at m·p in frame i; the crop and the region are offsets.
        shifted = m.copy()
        shifted[:, 2] += m[:, :2] @ crop.origin - offset
        patch = cv2.warpAffine(crop.image, shifted, (size[1], size[0]), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        base = self.avatar.region(i, (x0, y0, x1, y1))
        alpha = feather_mask([o - offset for o in outlines], size, s, FEATHER, SHRINK,
                             patch=patch, base=base, reach=REACH)
        skin = _skin_region(alpha, [lm_i, lm_j], offset, size, s)
        # Only where the mask is above zero does anything change: the colour match and the
        # blend run there alone (at 1080p about half the region), and the edit is that box.
        rows, cols = np.flatnonzero(alpha.max(axis=1) > 0), np.flatnonzero(alpha.max(axis=0) > 0)
        if not len(rows):
            return None
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        inner = (slice(r0, r1), slice(c0, c1))
        base, alpha = base[inner], alpha[inner]
        patch = colour_transfer(patch[inner], base, skin[inner], step=colour_step(s))
        return RegionEdit(x0 + c0, y0 + r0, composite(base, patch, alpha), alpha > 0)

    def _crop(self, j: int) -> _Crop:
        """Frame ``j``'s lower face, generously bounded; decoded once and kept."""
        def make() -> _Crop:
            lm = self._landmarks[j]
            s = float(np.linalg.norm(lm[263] - lm[33]))
            x0, y0, x1, y1 = _box(lower_face_outline(lm, jaw_drop=0.3), CROP_MARGIN * s, self._hw)
            origin = np.array([x0, y0], np.float32)
            return _Crop(np.array(self.avatar.region(j, (x0, y0, x1, y1)), copy=True), origin, lm - origin)
        return self._crops.get(j, make)

    def _moved(self, j: int, crop: _Crop, shape: MouthShape) -> tuple[_Crop, float, tuple | None]:
        """Frame ``j``'s real mouth warped further open (the library has none wider) or
        closed (the person's lips never meet in the video); also returns the jaw drop and
        the box of the crop that was warped (None: nothing was)."""
        plan = self._plans.get(("crop", j), lambda: plan_for(crop.landmarks, crop.image.shape[:2]))
        pose = pose_towards(shape, plan)
        roi = synthesize(crop.image, plan, pose, self._palette_for(j))
        if roi is None:
            return crop, 0.0, None
        image = crop.image.copy()
        x0, y0, x1, y1 = plan.box
        image[y0:y1, x0:x1] = roi
        return dataclasses.replace(crop, image=image), pose.drop, tuple(int(v) for v in plan.box)

    def _check_index(self, frame_index: int) -> int:
        n = self.avatar.info.n_frames
        try:
            i = int(frame_index)
        except (TypeError, ValueError):
            raise RenderError(f"frame index must be an integer, got {frame_index!r}") from None
        if not 0 <= i < n:
            raise RenderError(f"frame index {i} out of range 0..{n - 1}")
        return i


def openness_to_show(have: float, wanted: float) -> float | None:
    """The (measured-scale) openness to warp a library mouth of openness ``have`` to,
    or None to show the real mouth as it is.

    Opening: only when the pick falls short by more than OPEN_SLACK (the library's
    widest mouth).  Closing: real lips that already meet (``have`` at most
    CLOSED_OPENNESS) are never touched; otherwise an excess over the wanted openness
    is taken away: fully from CLOSE_FADE on, fading to nothing below it, so the result
    does not jump as the wanted openness crosses the pick's own, and a pick that is
    all but right is shown as it is.
    """
    if wanted - have > OPEN_SLACK:
        return wanted
    excess = have - wanted
    if have <= CLOSED_OPENNESS or excess <= 0:
        return None
    t = min(1.0, excess / CLOSE_FADE)
    shown = have - excess * t * t * (3.0 - 2.0 * t)
    return shown if have - shown > 1e-3 else None


def _one(_: object) -> int:
    return 1


def _crop_bytes(crop: _Crop) -> int:
    return crop.image.nbytes


def _array_bytes(a: np.ndarray) -> int:
    return max(a.nbytes, 1)


_SILENT = (0.0, 0.0, 0.0)  # _shape_key of silence: lips together, neutral width and rounding


def _shape_key(shape: MouthShape) -> tuple:
    if not isinstance(shape, MouthShape):
        raise RenderError(f"expected a MouthShape, got {type(shape).__name__}")
    v = shape.as_vector()
    if not np.all(np.isfinite(v)):
        raise RenderError(f"mouth shape has non-finite values: {v.tolist()}")
    return tuple(np.round(v, 6).tolist())


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


def _box(pts: np.ndarray, margin: float, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = hw
    x0 = int(max(0, np.floor(pts[:, 0].min() - margin)))
    y0 = int(max(0, np.floor(pts[:, 1].min() - margin)))
    x1 = int(min(w, np.ceil(pts[:, 0].max() + margin) + 1))
    y1 = int(min(h, np.ceil(pts[:, 1].max() + margin) + 1))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _skin_region(alpha: np.ndarray, faces: list[np.ndarray], offset: np.ndarray,
                 size: tuple[int, int], s: float) -> np.ndarray:
    """Where both pictures show skin: inside the blend, outside either mouth."""
    lips = np.zeros(size, np.uint8)
    r = max(1, int(round(0.05 * s)))
    for lm in faces:
        pts = [np.round(lip_outline(lm) - offset).astype(np.int32)]
        # Filled and outlined with a round pen 2r wide: the polygon grown by r (what a
        # dilation with an r disk gives), without a full-resolution dilation (3 ms at 1080p).
        cv2.fillPoly(lips, pts, 255)
        cv2.polylines(lips, pts, True, 255, thickness=2 * r + 1)
    return (alpha > 0.5) & (lips == 0)
