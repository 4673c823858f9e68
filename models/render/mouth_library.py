"""A video avatar's own mouths as a library: pick the frame whose mouth to show.

Every frame of the avatar video is a real picture of the person's mouth with a
measured (openness, width, rounding).  For a target shape we pick the frame that
matches it best, preferring (a) the frame on screen itself (no compositing at all),
(b) the successor of the previous pick, so real mouth motion plays on instead of
hopping between far-apart frames, and (c) frames with the same head pose as the
frame on screen, which align best.  The library is a few thousand rows of 3
numbers: a vectorised scan is faster than building any index for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.avatar.shots import shot_spans, smooth_per_shot
from models.render.mouth_geometry import EYE_OUTER, STABLE, similarity

SHAPE_WEIGHTS = np.array([1.0, 0.35, 0.5], np.float32)  # openness matters most
STAY_BONUS = 0.06        # cost advantage of continuing from the previous pick
OWN_BONUS = 0.04         # ... and of the frame on screen (real pixels, no seam)
POSE_WEIGHT = 0.6        # cost per unit of pose difference (see _pose)
MISSING_FACE_COST = 10.0  # frames with interpolated landmarks are a last resort
OPEN_SLACK = 0.08        # a pick this much less open than the target gets the photo warp on top
CLOSED_OPENNESS = 0.08   # lips measuring at most this are together (bench/sync_report's CLOSED_BELOW)
MIN_OPEN_RANGE = 0.5     # target openness 0..1 spans at least this much of the measured scale


@dataclass(frozen=True)
class LibraryPick:
    index: int             # avatar frame to take the mouth from
    cost: float
    open_deficit: float    # measured openness wanted minus the pick's (> 0: warp it further open)


class MouthLibrary:
    def __init__(self, features: np.ndarray, landmarks: np.ndarray,
                 face_found: np.ndarray | None = None, shot_ids: np.ndarray | None = None) -> None:
        feats = np.asarray(features, np.float32)
        if feats.ndim != 2 or feats.shape[1] != 3 or len(feats) == 0:
            raise ValueError(f"mouth features must be (n, 3), got {feats.shape}")
        self.features = feats
        # A person's resting width/rounding is their own neutral; the model's targets
        # are relative to a generic face, so centre the person's on their median.
        self.centred = feats.copy()
        self.centred[:, 1:] -= np.median(feats[:, 1:], axis=0)
        # Openness too: if the person's lips meet in the video, their most closed
        # mouth is their "closed", and their own range is used as far as it goes, so
        # someone who articulates little still moves the mouth over all target values.
        # If they never meet (a smile that parts the lips throughout), closed is
        # absolute 0, which no real frame shows: the renderer closes the nearest one.
        # A range smaller than MIN_OPEN_RANGE (a video without speech) is not
        # stretched: targets beyond it get the photo warp on top of the widest mouth.
        lo, hi = np.percentile(feats[:, 0], [2, 99.5])
        self.open_floor = float(lo) if lo <= CLOSED_OPENNESS else 0.0
        self.open_range = float(max(hi - self.open_floor, MIN_OPEN_RANGE))
        # Another shot may be another person, or the same one lit and framed otherwise:
        # a mouth is only ever taken from the shot on screen (and smoothed within it).
        shots = np.zeros(len(feats), np.int32) if shot_ids is None else np.asarray(shot_ids, np.int32)
        self.shot_span = np.empty((len(feats), 2), np.int64)
        for a, b in shot_spans(shots):
            self.shot_span[a:b] = (a, b)
        self.stable = smooth_per_shot(np.asarray(landmarks, np.float32)[:, list(STABLE)], shots, 1.5)
        self.pose = _pose(np.asarray(landmarks, np.float32))
        found = np.ones(len(feats), bool) if face_found is None else np.asarray(face_found, bool)
        self.penalty = np.where(found, 0.0, MISSING_FACE_COST).astype(np.float32)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def max_openness(self) -> float:
        return float(self.features[:, 0].max())

    def measured_openness(self, openness: float) -> float:
        """Target openness (0..1) → the openness a frame of this video should measure."""
        return self.open_floor + float(np.clip(openness, 0.0, 1.0)) * self.open_range

    def target_for(self, i: int) -> np.ndarray:
        """The (openness, width, rounding) target that frame ``i`` matches exactly."""
        o = (self.features[i, 0] - self.open_floor) / self.open_range
        return np.array([o, self.centred[i, 1], self.centred[i, 2]], np.float32)

    def shape_distance(self, target: np.ndarray) -> np.ndarray:
        t = np.asarray(target, np.float32).copy()
        t[0] = self.measured_openness(float(t[0]))
        d = (self.centred - t) * SHAPE_WEIGHTS
        return np.sqrt((d * d).sum(axis=1))

    def pick(self, target: np.ndarray, current: int, previous: int | None) -> LibraryPick:
        cost = self.shape_distance(target) + self.penalty
        cost += POSE_WEIGHT * np.abs(self.pose - self.pose[current]).sum(axis=1)
        cost[current] -= OWN_BONUS
        a, b = self.shot_span[current]
        cost[:a] = np.inf
        cost[b:] = np.inf
        if previous is not None:
            for j in (previous, previous + 1):
                if a <= j < b:
                    cost[j] -= STAY_BONUS
        j = int(np.argmin(cost))
        deficit = self.measured_openness(float(target[0])) - float(self.features[j, 0])
        return LibraryPick(j, float(cost[j]), deficit)

    def alignment(self, src: int, dst: int) -> np.ndarray:
        """2×3 similarity taking frame ``src``'s pixels onto frame ``dst``'s face."""
        return similarity(self.stable[src], self.stable[dst])


def _pose(landmarks: np.ndarray) -> np.ndarray:
    """(n, 3) coarse head pose: roll (rad), log scale, yaw proxy (nose offset / eye span)."""
    eye_l, eye_r = landmarks[:, EYE_OUTER[0]], landmarks[:, EYE_OUTER[1]]
    d = eye_r - eye_l
    span = np.maximum(np.linalg.norm(d, axis=1), 1e-3)
    roll = np.arctan2(d[:, 1], d[:, 0])
    nose = landmarks[:, 1]
    yaw = ((nose - 0.5 * (eye_l + eye_r)) * d).sum(axis=1) / span ** 2
    return np.stack([roll, np.log(span), yaw], axis=1).astype(np.float32)
