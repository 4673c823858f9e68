"""Reading an avatar's source file: one still image, or a video resampled to a fixed fps.

Frames come out already at the output size, in BGR, one per output frame time, so
everything after this module sees a constant-rate sequence whatever the source
was (variable frame rate phone clips, 60 fps screen captures, rotated .mov).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

from models.avatar.avatar_errors import AvatarError

MediaKind = Literal["image", "video"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".gif"}
MIN_IMAGE_SIDE = 64
MIN_VIDEO_SECONDS = 0.5
_TIME_TOLERANCE = 1e-3   # a source frame stamped within 1 ms of an output tick counts as on it


def sniff_kind(path: Path) -> MediaKind:
    """Image or video, from the file's first bytes (uploads often have useless names)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise AvatarError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    if not head:
        raise AvatarError(f"{path.name} is empty")
    if head[:3] == b"\xff\xd8\xff" or head[:8] == b"\x89PNG\r\n\x1a\n" or head[:2] == b"BM":
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif"):
        raise AvatarError(f"{path.name}: HEIC/AVIF photos are not supported; export it as JPEG or PNG")
    if head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3" or head[:4] == b"GIF8":
        return "video"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise AvatarError(
        f"{path.name}: unsupported file type; use a video (mp4, mov, webm, mkv) "
        "or a photo (jpg, png, webp)"
    )


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Output size: aspect kept, longest side at most ``max_side``, both sides even (H.264)."""
    scale = min(1.0, max_side / max(width, height))
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


def read_image(path: Path, max_side: int) -> np.ndarray:
    """A still image as BGR uint8 at the output size (EXIF orientation applied)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as exc:   # e.g. more pixels than OpenCV agrees to allocate
        raise AvatarError(f"{path.name} cannot be decoded as an image ({exc.err or 'too large'})") from exc
    if image is None:
        raise AvatarError(f"{path.name} is not a readable image (corrupt or unsupported format)")
    return resize_to_fit(image, max_side)


def resize_to_fit(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE:
        raise AvatarError(f"image is too small ({w}x{h}); the face needs at least {MIN_IMAGE_SIDE} px")
    ow, oh = fit_size(w, h, max_side)
    if (ow, oh) == (w, h):
        return np.ascontiguousarray(image)
    return cv2.resize(image, (ow, oh), interpolation=cv2.INTER_AREA if ow < w else cv2.INTER_LINEAR)


@dataclass(frozen=True)
class VideoProbe:
    """What the container says before decoding (durations may be estimates)."""

    width: int          # as displayed (after rotation), before scaling
    height: int
    duration: float     # seconds, 0 when the container does not say
    source_fps: float   # average rate, 0 when unknown
    rotation: int       # degrees counter-clockwise the frames must be turned for display


def probe_video(path: Path) -> VideoProbe:
    with _open(path) as container:
        stream = _video_stream(container, path)
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        rotation = 0
        w, h = stream.codec_context.width, stream.codec_context.height
        for frame in container.decode(stream):
            rotation = _rotation_of(frame)
            w, h = frame.width, frame.height
            break
        else:
            raise AvatarError(f"{path.name}: the video has no decodable frames")
        if rotation in (90, -90):
            w, h = h, w
        return VideoProbe(w, h, duration, rate, rotation)


def video_frames(
    path: Path, fps: float, size: tuple[int, int], max_seconds: float
) -> Iterator[np.ndarray]:
    """Decoded frames, resampled to ``fps`` by timestamp and scaled to ``size`` (w, h).

    Output frame k shows whichever source frame is on screen at k / fps, so a 30 fps
    source drops one frame in six and a variable-rate source keeps its real timing.
    """
    out_w, out_h = size
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        start: float | None = None
        held: _HeldFrame | None = None   # the source frame on screen now
        gaps: list[float] = []
        k = 0
        try:
            for frame in container.decode(stream):
                t = _frame_time(frame, held.t if held else -1.0, stream)
                if start is None:
                    start = t
                t -= start
                if held is not None and t <= held.t:
                    continue  # duplicate or out-of-order stamp: keep the first
                if t > max_seconds + 1.0:
                    raise AvatarError(
                        f"{path.name} is longer than the {max_seconds:.0f} s limit for avatar videos"
                    )
                if held is not None:
                    gaps.append(t - held.t)
                    while k / fps < t - _TIME_TOLERANCE:
                        yield held.image(out_w, out_h)
                        k += 1
                held = _HeldFrame(frame, t)
        except av.error.FFmpegError as exc:
            if held is None:
                raise AvatarError(f"{path.name}: the video cannot be decoded ({exc})") from exc
            # A truncated file: keep what decoded, like a player would.
        if held is None:
            raise AvatarError(f"{path.name}: the video has no decodable frames")
        # The last frame is shown for its own stamped duration when the file says.
        last_duration = _frame_duration(held.frame) or (float(np.median(gaps)) if gaps else 1.0 / fps)
        while k / fps < held.t + last_duration - _TIME_TOLERANCE:
            yield held.image(out_w, out_h)
            k += 1


class _HeldFrame:
    """A decoded frame converted to BGR only if some output tick shows it (a 30 fps
    source resampled to 25 fps skips one frame in six: no colour conversion for it)."""

    def __init__(self, frame: av.VideoFrame, t: float) -> None:
        self.frame, self.t = frame, t
        self._image: np.ndarray | None = None

    def image(self, width: int, height: int) -> np.ndarray:
        if self._image is None:
            self._image = _to_bgr(self.frame, width, height)
        return self._image


def _frame_time(frame: av.VideoFrame, prev_t: float, stream: av.video.stream.VideoStream) -> float:
    if frame.time is not None:
        return float(frame.time)
    rate = float(stream.average_rate) if stream.average_rate else 25.0
    return prev_t + 1.0 / rate if prev_t >= 0 else 0.0


def _frame_duration(frame: av.VideoFrame) -> float | None:
    if frame.duration and frame.time_base is not None:
        return float(frame.duration * frame.time_base)
    return None


def _rotation_of(frame: av.VideoFrame) -> int:
    try:
        angle = int(round(frame.rotation or 0))
    except (AttributeError, ValueError):
        return 0
    return ((angle + 180) % 360) - 180 if angle % 90 == 0 else 0


def _to_bgr(frame: av.VideoFrame, out_w: int, out_h: int) -> np.ndarray:
    rotation = _rotation_of(frame)
    w, h = (out_h, out_w) if rotation in (90, -90) else (out_w, out_h)
    if (frame.width, frame.height) == (w, h):
        image = frame.to_ndarray(format="bgr24")
    else:
        image = frame.to_ndarray(format="bgr24", width=w, height=h, interpolation="AREA")
    if rotation == 90:
        image = cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    elif rotation == -90:
        image = cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    elif rotation in (180, -180):
        image = cv2.rotate(image, cv2.ROTATE_180)
    return np.ascontiguousarray(image)


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError) as exc:
        raise AvatarError(f"{path.name} is not a readable video (corrupt or unsupported format)") from exc


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise AvatarError(f"{path.name} has no video stream")
    return container.streams.video[0]
