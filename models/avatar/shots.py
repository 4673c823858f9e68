"""Shot cuts and fades in an avatar video, and what they mean for its face data.

People upload clips as they shoot and edit them: a fade from black at the start,
hard cuts between takes or between two people, a cut-away to an empty room.  Face
landmarks must never be interpolated or smoothed across such a boundary, the mouth
library must not lend one shot's mouth to another, and the idle loop must not
bounce on a cut.

Per frame we keep a tiny signature: an 8×8 colour thumbnail of a strided view of
the frame (≈ 0.1 ms at 720p; see ``bench/avatar_prep.py``).  Two consecutive
frames belong to one shot when

* both are dark (mean below ``DARK_LUMA``: black, or the black end of a fade), or
* both are flat (no structure: a colour card) of about the same brightness, or
* neither is dark nor flat and their thumbnails correlate (Pearson, all three
  channels in one vector) at least ``CUT_CORRELATION``.

We use correlation and not a histogram difference because a correlation ignores
gain and offset, so the frames of a fade (the same picture, brighter each frame)
stay in one shot, while a histogram moves bin by bin through a fade; and because
two shots with the same colours (a mirrored take of the same person) have the same
histogram but different thumbnails.  Dark↔lit is a boundary of its own: it is
where a fade leaves black, and the black part has no face to track.

Limits: a slow cross-dissolve changes little from one frame to the next and is
not reported as a cut (FaceMesh then loses and re-finds the face, which the
renderer handles like a face leaving and re-entering mid-shot).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.avatar.face_landmarks import fill_gaps, smooth_track

# Thumbnail side.  Coarse on purpose: motion blurs into it.  With the face filling most
# of a 320 px frame, a 24 px move between frames (fast: 7.5 % of the width) still
# correlates at 0.75 on 8×8 (0.54 on 16×16, which would cut a quick head turn in two),
# while a cut to a mirrored, recoloured person in the same framing correlates at 0.15.
THUMB = 8
THUMB_SOURCE = 64          # the strided view has about this many pixels on its short side
DARK_LUMA = 20.0           # mean 0..255 below which a frame counts as black (fade ends, black leader)
FLAT_STD = 4.0             # thumbnail std below which a frame has no structure to correlate
FLAT_STEP = 12.0           # two flat frames further apart than this in brightness are two shots
# Below this two consecutive frames are two shots: halfway between fast motion (0.75,
# above) and unrelated pictures (around 0; the mirrored person 0.15).
CUT_CORRELATION = 0.6
BLEND_FRAMES = 3           # a face that re-enters mid-shot is faded in over this many frames


@dataclass(frozen=True)
class FrameSignature:
    """What shot detection keeps of one frame."""

    thumb: np.ndarray       # (THUMB * THUMB * 3,) float32, zero mean, unit norm (or zeros when flat)
    mean: float             # mean brightness 0..255
    std: float              # thumbnail standard deviation

    @property
    def dark(self) -> bool:
        return self.mean < DARK_LUMA

    @property
    def flat(self) -> bool:
        return self.std < FLAT_STD


def signature(frame_bgr: np.ndarray) -> FrameSignature:
    """The frame's signature; reads only a strided subset of its pixels."""
    h, w = frame_bgr.shape[:2]
    step = max(1, min(h, w) // THUMB_SOURCE)
    small = np.ascontiguousarray(frame_bgr[::step, ::step])
    thumb = cv2.resize(small, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    mean = float(thumb.mean())
    centred = thumb - mean
    norm = float(np.linalg.norm(centred))
    std = norm / np.sqrt(centred.size)
    unit = centred / norm if std >= FLAT_STD else np.zeros_like(centred)
    return FrameSignature(unit, mean, std)


def is_cut(a: FrameSignature, b: FrameSignature) -> bool:
    """Do frames ``a`` and ``b`` (consecutive) belong to different shots?"""
    if a.dark or b.dark:
        return a.dark != b.dark
    if a.flat or b.flat:
        return not (a.flat and b.flat) or abs(a.mean - b.mean) > FLAT_STEP
    return float(a.thumb @ b.thumb) < CUT_CORRELATION


class ShotDetector:
    """Feed frames in order; ``push`` says whether a new shot starts at this frame."""

    def __init__(self) -> None:
        self._previous: FrameSignature | None = None
        self.shot_ids: list[int] = []

    def push(self, frame_bgr: np.ndarray) -> bool:
        sig = signature(frame_bgr)
        cut = self._previous is not None and is_cut(self._previous, sig)
        self._previous = sig
        self.shot_ids.append((self.shot_ids[-1] + int(cut)) if self.shot_ids else 0)
        return cut

    @property
    def ids(self) -> np.ndarray:
        return np.asarray(self.shot_ids, np.int32)


# ---------------------------------------------------------------------------------------
# Per-shot helpers for the face data


def shot_spans(shot_ids: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame ranges of the shots, in order."""
    ids = np.asarray(shot_ids)
    if len(ids) == 0:
        return []
    starts = np.flatnonzero(np.diff(ids) != 0) + 1
    bounds = [0, *starts.tolist(), len(ids)]
    return list(zip(bounds[:-1], bounds[1:]))


def smooth_per_shot(values: np.ndarray, shot_ids: np.ndarray, sigma_frames: float) -> np.ndarray:
    """``smooth_track`` restarted at every cut, so no shot leaks into the next."""
    x = np.asarray(values, np.float32)
    out = np.empty_like(x)
    for a, b in shot_spans(shot_ids):
        out[a:b] = smooth_track(x[a:b], sigma_frames)
    return out


def fill_per_shot(landmarks: np.ndarray, found: np.ndarray, shot_ids: np.ndarray) -> np.ndarray:
    """Landmarks for frames without a face: interpolated inside their shot only.  A shot
    with no face at all (black, an empty room) holds the nearest shot's landmarks: they
    only keep the arrays finite, as those frames are never rendered on."""
    lm = np.asarray(landmarks, np.float32).copy()
    ok = np.asarray(found, bool)
    have = np.zeros(len(lm), bool)
    for a, b in shot_spans(shot_ids):
        if ok[a:b].any():
            lm[a:b] = fill_gaps(lm[a:b], ok[a:b])
            have[a:b] = True
    if not have.any():
        raise ValueError("no frame has a face")
    src, missing = np.flatnonzero(have), np.flatnonzero(~have)
    after = np.clip(np.searchsorted(src, missing), 0, len(src) - 1)
    before = np.clip(after - 1, 0, len(src) - 1)
    nearest = np.where(np.abs(src[before] - missing) <= np.abs(src[after] - missing), src[before], src[after])
    lm[missing] = lm[nearest]
    return lm


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) ranges where ``flags`` is True."""
    edges = np.diff(np.concatenate([[0], np.asarray(flags, bool).astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def loop_span(usable: np.ndarray, shot_ids: np.ndarray) -> tuple[int, int]:
    """[first, last] frames of the idle loop: the shot with the most usable frames,
    trimmed to its first and last usable one, so the ping-pong bounces inside one shot
    and never on a cut or in a fade (a face lost mid-shot is passed through).
    Ties go to the earlier shot."""
    ok = np.asarray(usable, bool)
    best: tuple[int, int] | None = None
    best_count = 0
    for a, b in shot_spans(shot_ids):
        idx = np.flatnonzero(ok[a:b])
        if len(idx) > best_count:
            best, best_count = (a + int(idx[0]), a + int(idx[-1])), len(idx)
    if best is None:
        return 0, len(ok) - 1
    return best


def ping_pong(first: int, last: int) -> np.ndarray:
    """first..last..first+1: a loop that plays forward then backward without repeating an end."""
    if last - first < 2:
        return np.arange(first, last + 1, dtype=np.int32)
    return np.concatenate([np.arange(first, last + 1), np.arange(last - 1, first, -1)]).astype(np.int32)


def paste_weights(usable: np.ndarray, shot_ids: np.ndarray, ramp: int = BLEND_FRAMES) -> np.ndarray:
    """Per frame, how much of the rendered mouth to show (0: the source frame as it is).

    0 where the face is not usable.  Where a usable run starts or ends at a cut (or at
    the clip's edge), the mouth switches at once: a cut is a jump anyway.  Where it
    starts or ends mid-shot (the face re-enters, a hand moves away), it fades in over
    ``ramp`` frames, 1/(ramp+1) steps, so the mouth does not pop on.  Both ends ramp,
    because the ping-pong loop plays every face exit backwards as an entry.
    """
    ok = np.asarray(usable, bool)
    ids = np.asarray(shot_ids)
    n = len(ok)
    w = np.zeros(n, np.float32)
    for a, b in runs(ok):
        k = np.arange(a, b)
        up = np.ones(b - a, np.float32) if a == 0 or ids[a - 1] != ids[a] else (k - a + 1) / (ramp + 1)
        down = np.ones(b - a, np.float32) if b == n or ids[b] != ids[b - 1] else (b - k) / (ramp + 1)
        w[a:b] = np.minimum(1.0, np.minimum(up, down))
    return w
