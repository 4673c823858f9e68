"""Avatars: a person's video or photo, prepared once into a cache every session reuses.

``prepare_avatar`` turns a source file into constant-fps frames (stored as I420: JPEG on disk, plus
a memory-mapped raw copy when it fits ``frame_store.RAW_BUDGET`` and the caller will
loop over it: ``raw_frames``),
468 face landmarks per frame, per-frame mouth measurements and an idle-loop order.
Photos get a generated idle loop (sway, breathing, blinks) and are stored exactly
like videos, so nothing downstream cares which kind it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from skimage import data as skimage_data

from models.avatar import avatar_cache as cache
from models.avatar.avatar_errors import AvatarError, AvatarNotFoundError
from models.avatar.avatar_source import (
    MIN_VIDEO_SECONDS,
    fit_size,
    probe_video,
    read_image,
    resize_to_fit,
    sniff_kind,
    video_frames,
)
from models.avatar.face_landmarks import (
    FaceTracker,
    eye_span,
    find_faces,
    landmark_box,
    mouth_features_batch,
)
from models.avatar.frame_store import RAW_BUDGET, FrameStore, FrameStoreWriter
from models.avatar.idle_motion import IdleMotion, idle_loop
from models.avatar.shots import ShotDetector, fill_per_shot, loop_span, ping_pong, runs, smooth_per_shot

__all__ = [
    "Avatar", "AvatarError", "AvatarInfo", "AvatarNotFoundError", "default_avatar",
    "list_avatars", "load_avatar", "prepare_avatar",
]

Progress = Callable[[float], None]
AvatarKind = Literal["video", "photo"]

MAX_SECONDS = 600.0               # longest accepted avatar video
# Avatars keep their own size up to this many px on the long side: a 1080×1920 portrait
# or a 1920×1080 video stays full HD, live and offline.  Larger sources are scaled down.
# The setting: ``prepare_avatar(max_side=...)``, or LIPSTREAM_MAX_SIDE in the environment
# (``run_live.py --max-side`` sets it for the server, its workers and the studio).
DEFAULT_MAX_SIDE = 1920
MAX_SIDE_ENV = "LIPSTREAM_MAX_SIDE"
MAX_SIDE_RANGE = (128, 4096)
# More frames without a usable face than this is an error.  Such frames are shown as
# they are (no mouth is pasted: see models/avatar/shots.py), so a fade-in, a cut-away
# or a hand over the face costs lip-sync only there; but an avatar that mostly shows
# no face is not one.  (It was 20 % with a 1 s limit on any gap, when the renderer
# pasted a mouth on interpolated landmarks in the gaps.)
MAX_MISSING_FRACTION = 0.50
SMALL_FACE_PX = 40.0              # eye-corner distance below which we warn about detail
_LANDMARK_SIGMA = 0.7             # frames; light, so real lip motion survives
_BOX_SIGMA = 3.0                  # frames; boxes steer crops, they must not jitter
_FACE_COUNT_EVERY_S = 4.0         # how often videos are checked for extra faces
# Face tracking was 60 % of a video's preparation (8.5 of 13.8 ms of CPU a frame at
# 512²).  Landmarks are measured on every other frame and interpolated for the one between
# (the mean of its neighbours: on the bench presenters, faces 136 px between the
# eye corners, 1.0 px on average and 2 px at p95 from what FaceMesh measures there,
# the size of its own frame-to-frame jitter).  Those frames count as
# found; face_found stays False only where the face itself was missing.
# FaceMesh's tracking needs a few consecutive frames to settle on a new face (with
# a stride from the start, lip openness is 0.09 off for the first ten frames), so
# the first MESH_WARMUP frames are all measured, and so are the first MESH_WARMUP
# frames after a shot cut and after the face is found again.  The frames on both
# sides of a cut are always measured: nothing is interpolated across a cut.
MESH_EVERY = 2
MESH_WARMUP = 12


@dataclass(frozen=True)
class AvatarInfo:
    avatar_id: str
    name: str
    kind: AvatarKind
    fps: float
    width: int
    height: int
    n_frames: int
    source: str                     # the source file's name (no directory)
    warnings: tuple[str, ...] = field(default_factory=tuple)
    shots: int = 1                  # shots in the video (cuts + 1; a fade from black counts its black part)
    no_face: tuple[tuple[float, float], ...] = ()   # [start, end) seconds without a usable face

    def to_json(self) -> dict:
        d = asdict(self)
        d["warnings"] = list(self.warnings)
        d["no_face"] = [list(r) for r in self.no_face]
        return d

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    @staticmethod
    def from_json(d: dict) -> "AvatarInfo":
        return AvatarInfo(
            avatar_id=str(d["avatar_id"]), name=str(d["name"]), kind=d["kind"], fps=float(d["fps"]),
            width=int(d["width"]), height=int(d["height"]), n_frames=int(d["n_frames"]),
            source=str(d["source"]), warnings=tuple(d.get("warnings", ())), shots=int(d.get("shots", 1)),
            no_face=tuple((float(a), float(b)) for a, b in d.get("no_face", ())),
        )


class Avatar:
    """A prepared avatar: frames on demand plus per-frame face data (all in output pixels).

    landmarks       (n, 468, 2) float32   FaceMesh points, lightly smoothed over time
    face_boxes      (n, 4) float32        x0, y0, x1, y1 around the landmarks, smoothed
    face_sizes      (n,) float32          outer-eye-corner distance in px (detail hint)
    mouth_features  (n, 3) float32        openness, width, rounding (MouthShape scale)
    face_found      (n,) bool             True where the face is usable: tracked, or between two
                                          tracked frames of one shot; elsewhere the landmarks are
                                          filled in and the renderer shows the frame unchanged
    shot_ids        (n,) int32            shot of each frame, 0, 1, ... (models.avatar.shots)
    loop_order      (m,) int32            frame indices of the seamless idle loop (inside one shot)
    """

    def __init__(self, info: AvatarInfo, directory: Path, raw_frames: bool = True) -> None:
        self.info = info
        self.directory = Path(directory)
        arrays = cache.read_arrays(self.directory)
        self.landmarks: np.ndarray = arrays["landmarks"]
        self.face_boxes: np.ndarray = arrays["face_boxes"]
        self.face_sizes: np.ndarray = arrays["face_sizes"]
        self.mouth_features: np.ndarray = arrays["mouth_features"]
        self.face_found: np.ndarray = arrays["face_found"]
        self.shot_ids: np.ndarray = arrays["shot_ids"]
        self.loop_order: np.ndarray = arrays["loop_order"]
        self._frames = FrameStore(self.directory, raw_budget=RAW_BUDGET if raw_frames else 0)
        if len(self._frames) != info.n_frames or len(self.landmarks) != info.n_frames:
            raise AvatarError(f"avatar cache {info.avatar_id} is damaged; prepare it again")

    def __len__(self) -> int:
        return self.info.n_frames

    def __repr__(self) -> str:
        i = self.info
        return f"Avatar({i.avatar_id!r}, {i.kind}, {i.width}x{i.height}, {i.n_frames} frames @ {i.fps:g} fps)"

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as a writable BGR uint8 array (a copy of the mapped or cached original)."""
        return self._frames.get(int(i)).copy()

    def frame_readonly(self, i: int) -> np.ndarray:
        """Frame ``i`` without the copy, for callers that only read it."""
        return self._frames.get(int(i))

    def frame_i420(self, i: int) -> np.ndarray:
        """Frame ``i`` as stored: packed I420 (height*3/2, width) uint8, read-only."""
        return self._frames.get_i420(int(i))

    def region(self, i: int, box: tuple[int, int, int, int]) -> np.ndarray:
        """BGR pixels of ``box`` (x0, y0, x1, y1) of frame ``i`` (read-only or fresh):
        exactly ``frame_readonly(i)``'s, converting only the box."""
        return self._frames.region(int(i), box)

    def use_frames(self, frames: list[np.ndarray]) -> None:
        """Serve frames from memory (``prepare_avatar(frames_out=...)``'s list)."""
        self._frames.adopt(frames)

    def loop_frame(self, t: int) -> int:
        """Frame index to show at idle-loop step ``t`` (any non-negative integer)."""
        return int(self.loop_order[int(t) % len(self.loop_order)])


# ---------------------------------------------------------------------------------------
# Public API


def prepare_avatar(
    source: Path | str,
    cache_root: Path,
    *,
    name: str | None = None,
    fps: float = 25.0,
    max_side: int | None = None,
    progress: Progress | None = None,
    max_seconds: float = MAX_SECONDS,
    raw_frames: bool = True,
    frames_out: list[np.ndarray] | None = None,
) -> AvatarInfo:
    """Prepare (or find already prepared) the avatar of a video or photo file.

    ``raw_frames=False`` stores JPEGs only.  A batch render reads each frame about
    once, and writing ten 30 s avatars' raw copies (590 MB each at 512²) cost more
    in kernel time and writeback than decoding the JPEGs saves: the studio batch
    took 104 s with them and 86 s without.  A live session that opens such an
    avatar later gets the raw copy then (``FrameStore`` upgrades old caches).

    ``frames_out``: when the avatar is built now (not found in the cache) and its raw
    frames fit ``RAW_BUDGET``, they are appended to this list instead of written, for
    ``Avatar.use_frames`` in the same process: a render then decodes nothing.
    """
    path = Path(source)
    if not path.is_file():
        raise AvatarError(f"{path} does not exist or is not a file")
    max_side = default_max_side() if max_side is None else int(max_side)
    _check_params(fps, max_side)
    report = _ProgressReporter(progress)
    kind = sniff_kind(path)
    params = {"fps": float(fps), "max_side": int(max_side), "max_seconds": float(max_seconds)}
    avatar_id = cache.content_id(path, params)
    final = Path(cache_root) / avatar_id
    known = cache.read_info(final)
    if known is not None:
        report(1.0)
        return AvatarInfo.from_json(known)
    label = name or path.stem
    raw = _RawFrames(RAW_BUDGET if raw_frames or frames_out is not None else 0, frames_out)
    if kind == "image":
        build = lambda tmp: _build_photo(read_image(path, max_side), tmp, fps, report, raw)  # noqa: E731
    else:
        build = lambda tmp: _build_video(path, tmp, fps, max_side, max_seconds, report, raw)  # noqa: E731
    info = _build_into_cache(cache_root, avatar_id, label, path.name, build)
    report(1.0)
    return info


def default_max_side() -> int:
    """The long-side limit for new avatars: LIPSTREAM_MAX_SIDE when set, else DEFAULT_MAX_SIDE."""
    text = os.environ.get(MAX_SIDE_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_SIDE
    try:
        value = int(text)
    except ValueError:
        raise AvatarError(f"{MAX_SIDE_ENV} must be a whole number of px, got {text[:20]!r}") from None
    _check_params(25.0, value)
    return value


def load_avatar(avatar_id: str, cache_root: Path, raw_frames: bool = True) -> Avatar:
    """A prepared avatar by id; unknown or malformed ids raise AvatarNotFoundError.
    ``raw_frames=False``: don't write a missing raw copy (see ``prepare_avatar``)."""
    directory = cache.avatar_dir(cache_root, avatar_id)
    info = cache.read_info(directory)
    if info is None:
        raise AvatarNotFoundError(f"no prepared avatar with id {avatar_id!r}")
    return Avatar(AvatarInfo.from_json(info), directory, raw_frames)


def list_avatars(cache_root: Path) -> list[AvatarInfo]:
    out = []
    for avatar_id in cache.list_ids(cache_root):
        info = cache.read_info(Path(cache_root) / avatar_id)
        if info is not None:
            out.append(AvatarInfo.from_json(info))
    return out


def default_avatar(cache_root: Path, fps: float = 25.0) -> Avatar:
    """The built-in avatar: scikit-image's astronaut photo with idle motion (built once)."""
    _check_params(fps, 1080)
    directory = cache.avatar_dir(cache_root, cache.DEFAULT_ID)
    info = cache.read_info(directory)
    if info is None or float(info.get("fps", 0)) != float(fps):
        photo = np.ascontiguousarray(skimage_data.astronaut()[:, :, ::-1])  # RGB -> BGR
        _build_into_cache(
            cache_root, cache.DEFAULT_ID, "Astronaut", "skimage.data.astronaut",
            lambda tmp: _build_photo(resize_to_fit(photo, 1080), tmp, fps, _ProgressReporter(None)),
            replace=info is not None,
        )
    return load_avatar(cache.DEFAULT_ID, cache_root)


# ---------------------------------------------------------------------------------------
# Building


@dataclass
class _Built:
    """What a builder hands back; the frames are already in the work directory."""

    kind: AvatarKind
    fps: float
    width: int
    height: int
    landmarks: np.ndarray
    face_found: np.ndarray
    loop_order: np.ndarray
    warnings: list[str]
    shot_ids: np.ndarray | None = None   # None: one shot (photos)


def _build_into_cache(cache_root: Path, avatar_id: str, name: str, source: str,
                      build: Callable[[Path], _Built], replace: bool = False) -> AvatarInfo:
    tmp = cache.work_dir(cache_root, avatar_id)
    try:
        built = build(tmp)
        info = AvatarInfo(
            avatar_id=avatar_id, name=name, kind=built.kind, fps=built.fps, width=built.width,
            height=built.height, n_frames=len(built.landmarks), source=source,
            warnings=tuple(built.warnings), shots=int(_shots_of(built).max()) + 1,
            no_face=tuple((a / built.fps, b / built.fps) for a, b in runs(~built.face_found.astype(bool))),
        )
        cache.write_arrays(tmp, _face_arrays(built))
        cache.publish(tmp, Path(cache_root) / avatar_id, {**info.to_json(), "created": time.time()},
                      replace=replace)
    except BaseException:
        cache.discard(tmp)
        raise
    return info


def _shots_of(built: _Built) -> np.ndarray:
    return np.zeros(len(built.landmarks), np.int32) if built.shot_ids is None else built.shot_ids


def _face_arrays(built: _Built) -> dict[str, np.ndarray]:
    lm = built.landmarks.astype(np.float32)
    shots = _shots_of(built)
    if built.kind == "video":
        # Smoothing restarts at every cut: a shot's first landmarks are its own.
        lm = smooth_per_shot(lm, shots, _LANDMARK_SIGMA)
        boxes = smooth_per_shot(landmark_box(lm), shots, _BOX_SIGMA)
        sizes = smooth_per_shot(eye_span(lm), shots, _BOX_SIGMA)
    else:  # generated frames: landmarks are exact already
        boxes, sizes = landmark_box(lm), eye_span(lm)
    return {
        "landmarks": lm,
        "face_boxes": boxes.astype(np.float32),
        "face_sizes": sizes.astype(np.float32),
        "mouth_features": mouth_features_batch(lm),
        "face_found": built.face_found.astype(bool),
        "shot_ids": shots.astype(np.int32),
        "loop_order": built.loop_order.astype(np.int32),
    }


@dataclass(frozen=True)
class _RawFrames:
    """Where a build's raw frames go: a file of at most ``budget`` bytes, or ``keep``."""

    budget: int = RAW_BUDGET
    keep: list[np.ndarray] | None = None

    def writer(self, tmp: Path, expected_bytes: int = 0) -> FrameStoreWriter:
        """``expected_bytes``: the raw frames' size if known; over the budget, no raw
        copy is started (at 1080×1920 a minute is 9 GB: writing the first GB of it only
        to delete it cost preparation time)."""
        if self.keep is not None:
            self.keep.clear()   # a video found to be a still is built again as a photo
        budget = 0 if expected_bytes > self.budget else self.budget
        return FrameStoreWriter(tmp, raw_budget=budget, keep=self.keep if budget else None)


def _build_photo(photo: np.ndarray, tmp: Path, fps: float, report: "_ProgressReporter",
                 raw: _RawFrames = _RawFrames()) -> _Built:
    faces = find_faces(photo)
    if not faces:
        raise AvatarError("no face found in the photo; use a picture with one clearly visible face")
    warnings = _face_warnings(len(faces), float(eye_span(faces[0])))
    report(0.1)
    motion = IdleMotion()
    n = max(2, int(round(motion.seconds * fps)))
    landmarks = []
    with raw.writer(tmp) as store:
        for k, frame in enumerate(idle_loop(photo, faces[0], fps, motion)):
            store.append(frame.image)
            landmarks.append(frame.landmarks)
            report(0.1 + 0.85 * (k + 1) / n)
    h, w = photo.shape[:2]
    lm = np.stack(landmarks)
    # The loop is periodic, so it cycles forward; no ping-pong needed.
    return _Built("photo", float(fps), w, h, lm, np.ones(len(lm), bool), np.arange(len(lm)), warnings)


def _build_video(path: Path, tmp: Path, fps: float, max_side: int, max_seconds: float,
                 report: "_ProgressReporter", raw: _RawFrames = _RawFrames()) -> _Built:
    probe = probe_video(path)
    if probe.duration > max_seconds:
        raise AvatarError(
            f"{path.name} lasts {probe.duration:.0f} s; avatar videos may be at most {max_seconds:.0f} s"
        )
    size = fit_size(probe.width, probe.height, max_side)
    expected = max(1, int(round(probe.duration * fps)))
    count_every = max(1, int(round(_FACE_COUNT_EVERY_S * fps)))
    landmarks: list[np.ndarray | None] = []
    measured: list[bool] = []          # FaceMesh ran on this frame (found a face or not)
    skipped: np.ndarray | None = None  # the last frame FaceMesh skipped
    shots = ShotDetector()
    warm_until = MESH_WARMUP           # measure every frame before this one
    last_seen = False                  # the last measured frame had a face
    with raw.writer(tmp, expected * size[0] * size[1] * 3) as store, FaceTracker() as tracker:
        first: np.ndarray | None = None
        one_source_frame = True  # video_frames repeats the same array for a held frame
        for k, frame in enumerate(video_frames(path, fps, size, max_seconds)):
            if first is None:
                first = frame
            one_source_frame = one_source_frame and frame is first
            store.append(frame)
            if shots.push(frame):
                # A cut: the last frame of the old shot is measured too (never
                # interpolated from the new shot), and the tracker starts afresh.
                if not measured[k - 1]:
                    landmarks[k - 1], measured[k - 1] = tracker.track(skipped), True
                tracker.new_shot()
                warm_until = k + MESH_WARMUP
            measure = k < warm_until or k % MESH_EVERY == 0
            landmarks.append(tracker.track(frame) if measure else None)
            measured.append(measure)
            if not measure:
                skipped = frame
            else:
                if not measured[k - 1] and (landmarks[k] is None) != (landmarks[k - 2] is None):
                    # The face came or went around the skipped frame: look at it too, so
                    # the frames without a face are reported exactly.
                    landmarks[k - 1], measured[k - 1] = tracker.track(skipped), True
                seen = landmarks[k] is not None
                if seen and not last_seen:
                    warm_until = max(warm_until, k + MESH_WARMUP)  # FaceMesh settles on the face again
                last_seen = seen
            if measure and k % count_every == 0 and landmarks[-1] is not None:
                tracker.count_faces(frame)
            report(0.97 * min(1.0, (k + 1) / expected))
        faces_seen = tracker.faces_seen
    n = len(landmarks)
    if one_source_frame and first is not None:
        # A one-frame "video" (a still exported as mp4): treat it as the photo it is,
        # so it gets idle motion instead of a frozen loop.
        for stale in tmp.iterdir():
            stale.unlink()
        return _build_photo(first, tmp, fps, report, raw)
    if n < MIN_VIDEO_SECONDS * fps:
        raise AvatarError(
            f"{path.name} is too short ({n / fps:.2f} s); avatar videos need at least {MIN_VIDEO_SECONDS} s"
        )
    shot_ids = shots.ids
    has_face = np.array([lm is not None for lm in landmarks])
    found = _face_present(has_face, np.array(measured))
    warnings = _missing_face_check(path.name, found, fps)
    filled = fill_per_shot(
        np.stack([lm if lm is not None else np.zeros((468, 2), np.float32) for lm in landmarks]), has_face,
        shot_ids,
    )
    warnings += _face_warnings(faces_seen, float(np.median(eye_span(filled[has_face]))))
    loop = ping_pong(*loop_span(found, shot_ids))
    return _Built("video", float(fps), size[0], size[1], filled, found, loop, warnings, shot_ids)


def _face_present(has_face: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Per frame: was the face there?  A frame FaceMesh skipped counts as having one
    when its measured neighbours do (a skipped last frame has only the one before it,
    whose landmarks it then holds).  Both neighbours are in the skipped frame's shot:
    the frames on both sides of a cut are always measured."""
    present = has_face.copy()
    n = len(has_face)
    for k in np.flatnonzero(~measured):
        around = [bool(has_face[j]) for j in (k - 1, k + 1) if 0 <= j < n and measured[j]]
        present[k] = bool(around) and all(around)
    return present


def _missing_face_check(name: str, found: np.ndarray, fps: float) -> list[str]:
    """Error if too much of the video has no face; a warning if a little is patched."""
    n = len(found)
    if not found.any():
        raise AvatarError(f"no face found in {name}; use a video where one face is clearly visible")
    gaps = runs(~found)
    if not gaps:
        return []
    where = ", ".join(f"{a / fps:.2f}-{b / fps:.2f} s" for a, b in gaps[:6]) + (" ..." if len(gaps) > 6 else "")
    missing = int((~found).sum())
    if missing > MAX_MISSING_FRACTION * n:
        raise AvatarError(
            f"no face found in {missing} of {n} frames of {name} (at {where}); "
            f"trim those parts or use a clip where the face stays visible"
        )
    return [f"no face found in {missing} frame(s) (at {where}); those frames are shown unchanged, without lip-sync"]


def _face_warnings(faces_seen: int, face_px: float) -> list[str]:
    warnings = []
    if faces_seen > 1:
        warnings.append(f"found {faces_seen} faces; using the largest one")
    if face_px < SMALL_FACE_PX:
        warnings.append(
            f"the face is small ({face_px:.0f} px between the eye corners); the mouth will look soft"
        )
    return warnings


def _check_params(fps: float, max_side: int) -> None:
    if not 1.0 <= float(fps) <= 60.0:
        raise AvatarError(f"fps must be between 1 and 60, got {fps}")
    lo, hi = MAX_SIDE_RANGE
    if not lo <= int(max_side) <= hi:
        raise AvatarError(f"max_side must be between {lo} and {hi} px, got {max_side}")


class _ProgressReporter:
    """Calls the user's callback with a fraction that never goes backwards."""

    def __init__(self, callback: Progress | None) -> None:
        self._callback = callback
        self._last = -1.0

    def __call__(self, fraction: float) -> None:
        fraction = float(min(max(fraction, 0.0), 1.0))
        if self._callback is None or fraction < self._last + 0.005 and fraction < 1.0:
            return
        self._last = fraction
        self._callback(fraction)
