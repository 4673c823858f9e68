"""Avatar frame + MouthShape → the output frame, at the avatar's full resolution.

Two strategies, both working on a small mouth region and leaving the rest of the
frame bit-identical:

* photo avatars (one still picture, idle motion only): the lips and jaw are warped
  and the inner mouth is painted (``models.photo_mouth``);
* video avatars: the person's own mouth from the best-matching frame of their video
  (``models.mouth_library``) is aligned onto the current frame, colour-matched and
  feathered in (``models.blend``); if the video never opens the mouth that wide, the
  closest real mouth is first warped further open with the photo method.

One renderer serves one session: it remembers its previous library pick (so the
mouth plays on through the person's real motion instead of flickering between far
apart frames; an identical request repeats the pick, so it returns an identical
frame).  ``reset()`` forgets it, e.g. after an interrupt.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from models.blend import colour_transfer, composite, feather_mask
from models.mouth_geometry import lip_outline, lower_face_outline
from models.mouth_library import OPEN_SLACK, LibraryPick, MouthLibrary
from models.mouth_shape import MouthShape
from models.photo_mouth import (
    MouthPalette, PhotoMouthPlan, palette_from, plan_for, pose_for, pose_towards, synthesize,
)

FEATHER = 0.045          # blur sigma of the video blend mask, × eye distance
SHRINK = 0.07            # erosion before the blur, so the feather stays inside the outline
REACH = 0.2              # how far beyond the outline the mask may grow over differences
BOX_MARGIN = REACH + 0.25  # region around the blend outline (reach + feather tails)
PLAN_CACHE = 64
CROP_CACHE_BYTES = 192 * 2**20   # decoded library mouth regions kept per renderer


class RenderError(ValueError):
    """A render request that cannot be served (bad frame index or shape)."""


@dataclass(frozen=True)
class _Crop:
    """A library frame's mouth region, kept so the frame need not be decoded again."""

    image: np.ndarray
    origin: np.ndarray    # (2,) its top-left corner in frame pixels


class MouthRenderer:
    def __init__(self, avatar) -> None:
        self.avatar = avatar
        self.kind = avatar.info.kind
        self._landmarks = np.asarray(avatar.landmarks, np.float32)
        self._plans: OrderedDict[int, PhotoMouthPlan] = OrderedDict()
        self._palette: MouthPalette | None = None
        self._library = (
            MouthLibrary(avatar.mouth_features, self._landmarks, getattr(avatar, "face_found", None))
            if self.kind == "video" else None
        )
        self._crops: OrderedDict[int, _Crop] = OrderedDict()
        self._crop_bytes = 0
        self._previous: int | None = None
        self._last: tuple[int, tuple, LibraryPick | None] | None = None

    def reset(self) -> None:
        self._previous = None
        self._last = None

    def render(self, frame_index: int, shape: MouthShape) -> np.ndarray:
        i = self._check_index(frame_index)
        key = _shape_key(shape)
        if self._library is None:
            return self._render_photo(i, shape)
        # The same request twice in a row is answered with the same library pick, so
        # the pick's own continuity bonus cannot move it on to the next frame.
        repeat = self._last is not None and self._last[:2] == (i, key)
        pick = self._last[2] if repeat else self._library.pick(shape.as_vector(), i, self._previous)
        self._previous = pick.index
        self._last = (i, key, pick)
        return self._render_video(i, shape, pick)

    # ---------------------------------------------------------------------- photo

    def _render_photo(self, i: int, shape: MouthShape) -> np.ndarray:
        frame = self.avatar.frame_readonly(i)
        plan = self._plan(i, frame)
        roi = synthesize(frame, plan, pose_for(shape, plan.curves), self._palette_for(frame, i))
        out = frame.copy()
        if roi is not None:
            x0, y0, x1, y1 = plan.box
            out[y0:y1, x0:x1] = roi
        return out

    def _plan(self, i: int, frame: np.ndarray) -> PhotoMouthPlan:
        plan = self._plans.get(i)
        if plan is None:
            plan = plan_for(self._landmarks[i], frame.shape[:2])
            self._plans[i] = plan
            while len(self._plans) > PLAN_CACHE:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(i)
        return plan

    def _palette_for(self, frame: np.ndarray, i: int) -> MouthPalette:
        # One palette per avatar, so colours cannot flicker from frame to frame.  For
        # a video, measure it on the most open frame: that one shows the real teeth.
        if self._palette is None:
            ref = i
            if self._library is not None:
                ref = int(np.argmax(self.avatar.mouth_features[:, 0]))
                frame = self.avatar.frame_readonly(ref)
            self._palette = palette_from(frame, self._landmarks[ref])
        return self._palette

    # ---------------------------------------------------------------------- video

    def _render_video(self, i: int, shape: MouthShape, pick: LibraryPick) -> np.ndarray:
        frame = self.avatar.frame_readonly(i)
        j = pick.index
        if pick.open_deficit > OPEN_SLACK:
            source, drop = self._opened(j, shape)
            if j == i:  # the frame's own mouth, opened: the warp is seamless by itself
                return source
            crop = _Crop(source, np.zeros(2, np.float32))
        elif j == i:
            return frame.copy()
        else:
            crop, drop = self._crop(j), 0.0
        m = self._library.alignment(j, i)
        lm_i, lm_j = self._landmarks[i], _apply(m, self._landmarks[j])
        s = float(np.linalg.norm(lm_i[263] - lm_i[33]))
        outlines = [lower_face_outline(lm_i), lower_face_outline(lm_j, jaw_drop=drop)]
        x0, y0, x1, y1 = _box(np.concatenate(outlines), BOX_MARGIN * s, frame.shape[:2])
        offset = np.array([x0, y0], np.float32)
        size = (y1 - y0, x1 - x0)
        # Frame j's pixel p lands at m·p in frame i; the crop and the region are offsets.
        shifted = m.copy()
        shifted[:, 2] += m[:, :2] @ crop.origin - offset
        patch = cv2.warpAffine(crop.image, shifted, (size[1], size[0]), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        base = frame[y0:y1, x0:x1]
        alpha = feather_mask([o - offset for o in outlines], size, s, FEATHER, SHRINK,
                             patch=patch, base=base, reach=REACH)
        patch = colour_transfer(patch, base, _skin_region(alpha, [lm_i, lm_j], offset, size, s))
        out = frame.copy()
        out[y0:y1, x0:x1] = composite(base, patch, alpha)
        return out

    def _crop(self, j: int) -> _Crop:
        """Frame ``j``'s lower face, generously bounded; decoded once and kept."""
        hit = self._crops.get(j)
        if hit is not None:
            self._crops.move_to_end(j)
            return hit
        frame = self.avatar.frame_readonly(j)
        lm = self._landmarks[j]
        s = float(np.linalg.norm(lm[263] - lm[33]))
        # Room for the blend region of any frame it is aligned to (poses differ a little).
        x0, y0, x1, y1 = _box(lower_face_outline(lm, jaw_drop=0.3), (BOX_MARGIN + 0.35) * s, frame.shape[:2])
        crop = _Crop(frame[y0:y1, x0:x1].copy(), np.array([x0, y0], np.float32))
        self._crops[j] = crop
        self._crop_bytes += crop.image.nbytes
        while self._crop_bytes > CROP_CACHE_BYTES and len(self._crops) > 1:
            _, old = self._crops.popitem(last=False)
            self._crop_bytes -= old.image.nbytes
        return crop

    def _opened(self, j: int, shape: MouthShape) -> tuple[np.ndarray, float]:
        """Frame ``j`` with its real mouth warped further open (the library lacks wider ones)."""
        source = self.avatar.frame_readonly(j)
        plan = self._plan(j, source)
        pose = pose_towards(shape, plan.curves)
        roi = synthesize(source, plan, pose, self._palette_for(source, j))
        opened = source.copy()
        if roi is not None:
            x0, y0, x1, y1 = plan.box
            opened[y0:y1, x0:x1] = roi
        return opened, pose.drop

    def _check_index(self, frame_index: int) -> int:
        n = self.avatar.info.n_frames
        try:
            i = int(frame_index)
        except (TypeError, ValueError):
            raise RenderError(f"frame index must be an integer, got {frame_index!r}") from None
        if not 0 <= i < n:
            raise RenderError(f"frame index {i} out of range 0..{n - 1}")
        return i


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
    for lm in faces:
        cv2.fillPoly(lips, [np.round(lip_outline(lm) - offset).astype(np.int32)], 255)
    r = max(1, int(round(0.05 * s)))
    lips = cv2.dilate(lips, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return (alpha > 0.5) & (lips == 0)
