"""Face landmarks: mediapipe FaceMesh (468 points) wrapped for avatar preparation.

FaceMesh's own detector is the short-range model: it only finds faces that fill a
good part of the picture, so a talking head in a 16:9 frame (or the astronaut's
half-body photo) is often missed. We therefore find faces with the full-range
detector first and run FaceMesh on a square crop around each face, scaled to a
fixed size. For videos the crop follows the face every frame, so FaceMesh's
tracking mode sees an almost still face and stays locked on.

All landmark arrays are (468, 2) float32 in pixel coordinates of the input image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ log spam on every graph start
import mediapipe as mp  # noqa: E402

N_LANDMARKS = 468

# Lip contours of the FaceMesh topology: outer ring (20) then inner ring (20).
LIP_OUTER: tuple[int, ...] = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
)
LIP_INNER: tuple[int, ...] = (
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191,
)
LIP_INDICES: tuple[int, ...] = LIP_OUTER + LIP_INNER

# Eyelids, corner to corner. "Right" is the subject's right eye (left in the image).
RIGHT_EYE_UPPER: tuple[int, ...] = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER: tuple[int, ...] = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER: tuple[int, ...] = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER: tuple[int, ...] = (263, 249, 390, 373, 374, 380, 381, 382, 362)

UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
EYE_OUTER_RIGHT, EYE_OUTER_LEFT = 33, 263

_MESH_INPUT = 320        # side of the square crop handed to FaceMesh (it works at 192 inside)
# Crop side relative to the face: the head then fills ~half the crop, which is where
# FaceMesh's own short-range detector and its landmark model are most reliable.
_CROP_PER_EYE_SPAN = 4.5
_CROP_PER_BOX = 2.5      # the full-range detector's box is about the inner face
_MIN_DETECTION_SCORE = 0.5


# ---------------------------------------------------------------------------------------
# Measurements on landmarks


def eye_span(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners: the face's scale, robust to mouth motion."""
    lm = np.asarray(landmarks, dtype=np.float32)
    return np.linalg.norm(lm[..., EYE_OUTER_RIGHT, :] - lm[..., EYE_OUTER_LEFT, :], axis=-1)


def mouth_features_batch(landmarks: np.ndarray) -> np.ndarray:
    """(n, 468, 2) -> (n, 3) openness, width, rounding on the MouthShape scale."""
    lm = np.asarray(landmarks, dtype=np.float32).reshape(-1, N_LANDMARKS, 2)
    s = np.maximum(eye_span(lm), 1e-6)
    gap = np.linalg.norm(lm[:, UPPER_LIP_INNER] - lm[:, LOWER_LIP_INNER], axis=-1)
    corners = np.linalg.norm(lm[:, MOUTH_LEFT] - lm[:, MOUTH_RIGHT], axis=-1) / s
    openness = np.clip(gap / (0.35 * s), 0.0, 1.0)
    width = np.clip((corners - 0.55) / 0.15, -1.0, 1.0)
    rounding = np.clip((0.50 - corners) / 0.12, 0.0, 1.0)
    return np.stack([openness, width, rounding], axis=1).astype(np.float32)


def mouth_features(landmarks: np.ndarray) -> tuple[float, float, float]:
    """One face's (openness, width, rounding), the scale MouthShape uses."""
    o, w, r = mouth_features_batch(landmarks)[0]
    return float(o), float(w), float(r)


def eye_openness(landmarks: np.ndarray) -> np.ndarray:
    """Mean lid gap of both eyes relative to the eye span; about 0.06-0.1 open, ~0 closed."""
    lm = np.asarray(landmarks, dtype=np.float32).reshape(-1, N_LANDMARKS, 2)
    gaps = [
        np.linalg.norm(lm[:, up[1:-1]] - lm[:, lo[1:-1]], axis=-1).mean(axis=1)
        for up, lo in ((RIGHT_EYE_UPPER, RIGHT_EYE_LOWER), (LEFT_EYE_UPPER, LEFT_EYE_LOWER))
    ]
    return ((gaps[0] + gaps[1]) / 2 / np.maximum(eye_span(lm), 1e-6)).astype(np.float32)


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """Tight box (x0, y0, x1, y1) around the landmarks; works on (468,2) or (n,468,2)."""
    lm = np.asarray(landmarks, dtype=np.float32)
    return np.concatenate([lm.min(axis=-2), lm.max(axis=-2)], axis=-1)


# ---------------------------------------------------------------------------------------
# Detection and FaceMesh on crops


@dataclass(frozen=True)
class FaceBox:
    """A detected face in image pixels."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def size(self) -> float:
        return max(self.x1 - self.x0, self.y1 - self.y0)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2


@dataclass(frozen=True)
class Crop:
    """Square image region (may stick out of the image; the outside is padded)."""

    cx: float
    cy: float
    side: float

    def matrix(self) -> np.ndarray:
        """Affine map from image pixels to crop pixels (_MESH_INPUT square)."""
        k = _MESH_INPUT / self.side
        return np.array(
            [[k, 0.0, _MESH_INPUT / 2 - k * self.cx], [0.0, k, _MESH_INPUT / 2 - k * self.cy]],
            dtype=np.float64,
        )

    def cut(self, image_rgb: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(
            image_rgb, self.matrix(), (_MESH_INPUT, _MESH_INPUT),
            flags=cv2.INTER_AREA if self.side > _MESH_INPUT else cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
        )

    def to_image(self, normalized: np.ndarray) -> np.ndarray:
        """FaceMesh's normalised crop coordinates -> image pixels."""
        return (
            (normalized - 0.5) * self.side + np.array([self.cx, self.cy], dtype=np.float32)
        ).astype(np.float32)

    @staticmethod
    def around(landmarks: np.ndarray) -> "Crop":
        box = landmark_box(landmarks)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        return Crop(float(cx), float(cy), float(_CROP_PER_EYE_SPAN * eye_span(landmarks)))

    @staticmethod
    def for_box(face: FaceBox) -> "Crop":
        cx, cy = face.center
        return Crop(cx, cy, _CROP_PER_BOX * face.size)


def _mesh_landmarks(result, crop: Crop) -> list[np.ndarray]:
    faces = result.multi_face_landmarks or []
    out = []
    for face in faces:
        pts = np.array([(p.x, p.y) for p in face.landmark[:N_LANDMARKS]], dtype=np.float32)
        out.append(crop.to_image(pts))
    return out


class FaceDetector:
    """Full-range face detector over the whole image, with tiles for very small faces."""

    def __init__(self, min_score: float = _MIN_DETECTION_SCORE) -> None:
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_score
        )

    def close(self) -> None:
        self._detector.close()

    def detect(self, image_bgr: np.ndarray, tiles: int = 2, exhaustive: bool = False) -> list[FaceBox]:
        """Faces, largest first. Tries the whole image, then up to ``tiles`` levels of
        overlapping square tiles (side = the image's short side, then half of it), which
        find faces too small for the detector's 192 px input. ``exhaustive`` searches the
        tiles even when the whole image had a face."""
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        faces = self._detect_region(rgb, 0, 0, w, h)
        if tiles and (exhaustive or not faces):
            for side in (min(h, w), min(h, w) // 2)[:tiles]:
                if side < 96 or (side == min(h, w) and h == w):
                    continue
                found = [f for x, y in _tiles(w, h, side) for f in self._detect_region(rgb, x, y, side, side)]
                faces += found
                if found and not exhaustive:
                    break
        return _dedupe(sorted(faces, key=lambda f: -f.size))

    def detect_near(self, image_bgr: np.ndarray, crop: Crop) -> list[FaceBox]:
        """Faces inside one square region (zoomed in, so small faces are found too)."""
        h, w = image_bgr.shape[:2]
        side = int(min(crop.side, h, w))
        x = int(np.clip(crop.cx - side / 2, 0, w - side))
        y = int(np.clip(crop.cy - side / 2, 0, h - side))
        rgb = cv2.cvtColor(image_bgr[y:y + side, x:x + side], cv2.COLOR_BGR2RGB)
        return sorted(self._detect_region(rgb, 0, 0, side, side, offset=(x, y)), key=lambda f: -f.size)

    def _detect_region(self, rgb: np.ndarray, x: int, y: int, w: int, h: int,
                       offset: tuple[int, int] = (0, 0)) -> list[FaceBox]:
        region = np.ascontiguousarray(rgb[y:y + h, x:x + w])
        result = self._detector.process(region)
        x, y = x + offset[0], y + offset[1]
        faces = []
        for det in result.detections or []:
            b = det.location_data.relative_bounding_box
            faces.append(FaceBox(
                x + b.xmin * w, y + b.ymin * h, x + (b.xmin + b.width) * w,
                y + (b.ymin + b.height) * h, float(det.score[0]),
            ))
        return faces


def _tiles(w: int, h: int, side: int) -> list[tuple[int, int]]:
    step = max(side // 2, 1)
    xs = sorted({*range(0, max(w - side, 0) + 1, step), max(w - side, 0)})
    ys = sorted({*range(0, max(h - side, 0) + 1, step), max(h - side, 0)})
    return [(x, y) for y in ys for x in xs]


def _iou(a: FaceBox, b: FaceBox) -> float:
    ix = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = ix * iy
    union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter
    return inter / union if union > 0 else 0.0


def _dedupe(faces: list[FaceBox]) -> list[FaceBox]:
    kept: list[FaceBox] = []
    for f in faces:
        if all(_iou(f, k) < 0.3 for k in kept):
            kept.append(f)
    return kept


def find_faces(image_bgr: np.ndarray) -> list[np.ndarray]:
    """All faces in a still image as (468, 2) landmark arrays, largest first."""
    detector = FaceDetector()
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1)
    try:
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        found = []
        for box in detector.detect(image_bgr, exhaustive=True):
            crop = Crop.for_box(box)
            lms = _mesh_landmarks(mesh.process(crop.cut(rgb)), crop)
            if lms:
                # Second pass centred on the mesh itself: the detector box is loose.
                refined = Crop.around(lms[0])
                again = _mesh_landmarks(mesh.process(refined.cut(rgb)), refined)
                found.append(again[0] if again else lms[0])
        found.sort(key=lambda lm: -float(eye_span(lm)))
        return _dedupe_landmarks(found)
    finally:
        detector.close()
        mesh.close()


def _dedupe_landmarks(faces: list[np.ndarray]) -> list[np.ndarray]:
    boxes = [FaceBox(*landmark_box(lm).tolist(), 1.0) for lm in faces]
    keep = _dedupe(boxes)
    return [lm for lm, b in zip(faces, boxes) if any(b is k for k in keep)]


class FaceTracker:
    """Landmarks for consecutive video frames of one person.

    The crop follows the previous frame's face, so FaceMesh (tracking mode) sees a
    steady face. When the face is lost we look again around where it was, then in
    the whole frame, preferring the face nearest the old one (so a second person
    cannot steal the track), or the largest at the start. The slow tiled search for
    small faces runs once a second at most, so a clip without faces stays cheap.
    """

    def __init__(self, tile_search_every: int = 25) -> None:
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, min_tracking_confidence=0.5
        )
        self._detector = FaceDetector()
        self._crop: Crop | None = None
        self._last: np.ndarray | None = None
        self._lost_frames = 0
        self._tile_every = tile_search_every
        self.faces_seen = 0   # most faces the detector reported on one frame

    def close(self) -> None:
        self._mesh.close()
        self._detector.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def track(self, image_bgr: np.ndarray) -> np.ndarray | None:
        """This frame's landmarks, or None when no face is found."""
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        if self._crop is not None:
            lm = self._mesh_at(rgb, self._crop)
            if lm is not None:
                return self._accept(lm)
        crop = self._search(image_bgr)
        lm = self._mesh_at(rgb, crop) if crop is not None else None
        if lm is None:
            self._crop = None
            self._lost_frames += 1
            return None
        again = self._mesh_at(rgb, Crop.around(lm))  # re-centred on the mesh: the box is loose
        return self._accept(again if again is not None else lm)

    def new_shot(self) -> None:
        """Forget the face: after a cut the person may be anywhere, or someone else, so
        neither the old crop nor "nearest to the old face" applies."""
        self._crop = None
        self._last = None
        self._lost_frames = 0

    def count_faces(self, image_bgr: np.ndarray) -> int:
        """Faces on one frame (videos are checked every few seconds). Unsure detections
        and faces far smaller than the largest (a photo on the wall) are not counted."""
        faces = [f for f in self._detector.detect(image_bgr, tiles=1, exhaustive=True) if f.score >= 0.7]
        n = sum(f.size >= 0.4 * faces[0].size for f in faces) if faces else 0
        self.faces_seen = max(self.faces_seen, n)
        return n

    def _mesh_at(self, rgb: np.ndarray, crop: Crop) -> np.ndarray | None:
        lms = _mesh_landmarks(self._mesh.process(crop.cut(rgb)), crop)
        return lms[0] if lms else None

    def _accept(self, lm: np.ndarray) -> np.ndarray:
        self._last = lm
        self._crop = Crop.around(lm)
        self._lost_frames = 0
        self.faces_seen = max(self.faces_seen, 1)
        return lm

    def _search(self, image_bgr: np.ndarray) -> Crop | None:
        faces: list[FaceBox] = []
        if self._last is not None:
            old = Crop.around(self._last)
            faces = self._detector.detect_near(image_bgr, Crop(old.cx, old.cy, 2 * old.side))
        if not faces:
            faces = self._detector.detect(image_bgr, tiles=2 if self._lost_frames % self._tile_every == 0 else 0)
            self.faces_seen = max(self.faces_seen, len(faces))
        if not faces:
            return None
        if self._last is None:
            return Crop.for_box(faces[0])
        box = landmark_box(self._last)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        nearest = min(faces, key=lambda f: (f.center[0] - cx) ** 2 + (f.center[1] - cy) ** 2)
        return Crop.for_box(nearest)


# ---------------------------------------------------------------------------------------
# Smoothing over time


def smooth_track(values: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing along axis 0 (no lag, unlike a causal filter).

    Avatar preparation is offline, so we can look both ways in time. Edges are
    point-reflected (odd extension), so a face moving at the start or end of the clip
    keeps its trend instead of being pulled back.
    """
    x = np.asarray(values, dtype=np.float32)
    if sigma_frames <= 0 or len(x) < 3:
        return x.copy()
    radius = int(np.ceil(3 * sigma_frames))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    taps /= taps.sum()
    pad = min(radius, len(x) - 1)
    padded = np.concatenate([2 * x[:1] - x[pad:0:-1], x, 2 * x[-1:] - x[-2:-pad - 2:-1]], axis=0)
    if pad < radius:  # very short tracks: extend with edge values
        edge = radius - pad
        padded = np.concatenate([np.repeat(padded[:1], edge, 0), padded, np.repeat(padded[-1:], edge, 0)], 0)
    flat = padded.reshape(len(padded), -1)
    out = np.stack([np.convolve(flat[:, j], taps, mode="valid") for j in range(flat.shape[1])], axis=1)
    return out.reshape(x.shape).astype(np.float32)


def fill_gaps(landmarks: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Linear interpolation of missing frames' landmarks from their neighbours in time."""
    lm = np.asarray(landmarks, dtype=np.float32).copy()
    idx = np.flatnonzero(found)
    if len(idx) == 0:
        raise ValueError("no frame has a face")
    missing = np.flatnonzero(~found)
    if len(missing):
        flat = lm.reshape(len(lm), -1)
        for j in range(flat.shape[1]):
            flat[missing, j] = np.interp(missing, idx, flat[idx, j])
        lm = flat.reshape(lm.shape)
    return lm
