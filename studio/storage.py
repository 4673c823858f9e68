"""Files of the studio: safe names, atomic completion, thumbnails, disk usage.

Every path that comes from a user (an upload's file name, a download name) goes
through ``safe_name``/``inside`` so nothing can be read or written outside the
data folder.  Results are written under a temporary name and renamed when
complete; a listing never sees a partial file.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from studio.config import StudioPaths
from studio.jobs import StudioError

PARTIAL_MARK = ".part-"           # temp names: <name>.part-<pid>-<n><suffix>
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
_MAX_NAME = 120
THUMB_WIDTH = 320


class UnsafePath(StudioError):
    status = 400


def safe_name(name: str, default: str = "file") -> str:
    """A display-preserving file name with no directory parts or odd characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")
    if not base:
        base = default
    stem, dot, ext = base.rpartition(".")
    if dot and len(ext) <= 8:
        return stem[: _MAX_NAME - len(ext) - 1] + "." + ext
    return base[:_MAX_NAME]


def check_download_name(name: str) -> str:
    """Reject names that try to leave their folder; return the name unchanged otherwise."""
    if (not name or "/" in name or "\\" in name or "\x00" in name or name in (".", "..")
            or name.startswith(".") or safe_name(name) != name):
        raise UnsafePath(f"invalid file name {name!r}")
    return name


def inside(root: Path, relative: str) -> Path:
    """``root/relative`` resolved, refusing anything that escapes ``root``."""
    root_r = root.resolve()
    p = (root_r / relative).resolve()
    if p != root_r and root_r not in p.parents:
        raise UnsafePath(f"path {relative!r} leaves the data folder")
    return p


def unique_name(wanted: str, taken: set[str]) -> str:
    """``wanted``, or ``stem-2.ext``, ``stem-3.ext`` ... if it is taken."""
    if wanted not in taken:
        return wanted
    stem, dot, ext = wanted.rpartition(".")
    if not dot:
        stem, ext = wanted, ""
    n = 2
    while True:
        candidate = f"{stem}-{n}{dot}{ext}"
        if candidate not in taken:
            return candidate
        n += 1


_MAX_STEM = 56   # two stems, "__" and ".mp4" stay under _MAX_NAME


def result_name(video_name: str, audio_name: str, taken: set[str]) -> str:
    """``<video>__<audio>.mp4`` from the sources' sanitised stems, unique among ``taken``.

    Both sources are named, so a result can never take (and, downloaded next to it,
    overwrite) the name of the video it was made from.
    """
    return unique_name(f"{_stem(video_name, 'video')}__{_stem(audio_name, 'audio')}.mp4", taken)


def _stem(name: str, default: str) -> str:
    stem = Path(safe_name(name, default)).stem
    return safe_name(stem, default)[:_MAX_STEM].rstrip(" .") or default


_counter = 0


def temp_path_for(final: Path) -> Path:
    """A sibling temp name (same folder, so the final rename is atomic), unique per
    process and call so an orphaned worker can never clobber a retry's file."""
    global _counter
    _counter += 1
    return final.with_name(f"{final.stem}{PARTIAL_MARK}{os.getpid()}-{_counter}{final.suffix}")


@contextmanager
def partial_file(final: Path) -> Iterator[Path]:
    """A temp path for ``final`` that is gone when the block exits, however it exits.

    Write the temp file inside the block and ``commit`` it to ``final`` as the block's
    last step; a failure or a cancellation anywhere before that leaves nothing behind.
    """
    tmp = temp_path_for(final)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def discard(path: Path) -> None:
    """Remove a file this process may have written; whatever else is there is left alone."""
    try:
        path.unlink(missing_ok=True)
    except OSError:   # e.g. a folder of that name: not ours to remove
        pass


def is_partial(path: Path) -> bool:
    return PARTIAL_MARK in path.name


_WRITER = re.compile(re.escape(PARTIAL_MARK) + r"(\d+)-")


def partial_writer(path: Path) -> int | None:
    """The pid of the process that wrote partial file ``path`` (``temp_path_for``'s name), or None."""
    m = _WRITER.search(path.name)
    return int(m.group(1)) if m else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True    # someone else's process (or a number no pid can be): not ours to judge
    return True


def commit(temp: Path, final: Path) -> None:
    """Make ``temp`` visible as ``final`` atomically (after flushing it to disk)."""
    with open(temp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(temp, final)


def remove_partials(folder: Path) -> list[Path]:
    """Delete temp files left by a crash; returns what was removed."""
    removed = []
    if folder.exists():
        for p in folder.rglob("*"):
            if p.is_file() and is_partial(p):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def write_thumbnail(video: Path, out: Path, width: int = THUMB_WIDTH) -> tuple[float, int, int]:
    """JPEG of a frame a third of the way into ``video``; returns (duration, width, height)."""
    import av
    import cv2

    with av.open(str(video)) as container:
        vs = container.streams.video[0]
        duration = _duration_seconds(container)
        w, h = vs.codec_context.width, vs.codec_context.height
        target = duration / 3.0
        if vs.time_base and target > 1.0:
            # Jump to the keyframe before the target instead of decoding a third of the file.
            container.seek(int(target / vs.time_base), stream=vs, backward=True)
        frame_img = None
        for frame in container.decode(vs):
            frame_img = frame.to_ndarray(format="bgr24")
            if frame.time is not None and frame.time >= target:
                break
    if frame_img is None:
        raise StudioError(f"{video.name} has no video frames")
    scale = width / frame_img.shape[1]
    thumb = cv2.resize(frame_img, (width, max(2, int(round(frame_img.shape[0] * scale)))),
                       interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise StudioError("could not encode the thumbnail")
    with partial_file(out) as tmp:
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, out)
    return duration, w, h


def _duration_seconds(container) -> float:
    if container.duration:
        return container.duration / 1_000_000
    vs = container.streams.video[0]
    if vs.duration and vs.time_base:
        return float(vs.duration * vs.time_base)
    return 0.0


def folder_bytes(folder: Path) -> int:
    """Bytes in the files under ``folder``.  Workers create and rename directories
    while this walks (an avatar's work folder is published by a rename), so whatever
    vanishes mid-walk is skipped instead of failing the request."""
    total = 0
    for root, _dirs, files in os.walk(folder, onerror=lambda _exc: None):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
            except FileNotFoundError:
                pass
    return total


@dataclass(frozen=True)
class DiskUsage:
    results_bytes: int
    uploads_bytes: int
    cache_bytes: int        # avatar cache + audio features
    free_bytes: int

    def to_json(self) -> dict:
        return {"results_bytes": self.results_bytes, "uploads_bytes": self.uploads_bytes,
                "cache_bytes": self.cache_bytes, "free_bytes": self.free_bytes,
                "total_bytes": self.results_bytes + self.uploads_bytes + self.cache_bytes}


def disk_usage(paths: StudioPaths) -> DiskUsage:
    return DiskUsage(
        results_bytes=folder_bytes(paths.results) + folder_bytes(paths.thumbs),
        uploads_bytes=folder_bytes(paths.uploads),
        cache_bytes=folder_bytes(paths.avatars) + folder_bytes(paths.features),
        free_bytes=shutil.disk_usage(paths.root).free,
    )


@dataclass(frozen=True)
class ResultFile:
    id: str
    size: int
    created_at: float


def over_retention(results: list[ResultFile], max_results: int, max_bytes: int,
                   max_age_days: float, now: float | None = None) -> list[str]:
    """Ids to delete (oldest first) so the remaining results satisfy every limit.

    ``results`` must be ordered oldest first.  A limit of 0 is no limit.
    """
    now = time.time() if now is None else now
    doomed: list[str] = []
    keep = list(results)
    if max_age_days > 0:
        cutoff = now - max_age_days * 86400
        doomed += [r.id for r in keep if r.created_at < cutoff]
        keep = [r for r in keep if r.created_at >= cutoff]
    if max_results > 0 and len(keep) > max_results:
        n = len(keep) - max_results
        doomed += [r.id for r in keep[:n]]
        keep = keep[n:]
    if max_bytes > 0:
        total = sum(r.size for r in keep)
        while keep and total > max_bytes:
            total -= keep[0].size
            doomed.append(keep.pop(0).id)
    return doomed
