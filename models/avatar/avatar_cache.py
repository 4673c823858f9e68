"""On-disk format of a prepared avatar, and the id that names it.

    <cache_root>/<avatar_id>/
        info.json            AvatarInfo fields + format version; written last, so its
                             presence means the directory is complete
        frames.bin           JPEG frames back to back      (models.avatar.frame_store)
        frames_index.npy     int64 byte offsets, n + 1
        frames.raw           optional: raw BGR frames, memory-mapped (models.avatar.frame_store)
        frames_raw.json      its shape; present only when frames.raw is complete
        landmarks.npy        (n, 468, 2) float32, output pixels, smoothed
        face_boxes.npy       (n, 4) float32 x0, y0, x1, y1 around the landmarks, smoothed
        face_sizes.npy       (n,) float32 outer-eye-corner distance in px (detail hint)
        mouth_features.npy   (n, 3) float32 openness, width, rounding
        face_found.npy       (n,) bool, True where the face is usable (False: landmarks filled
                             in, and the frame is shown unchanged)
        shot_ids.npy         (n,) int32 shot of each frame (cuts and fades: models.avatar.shots)
        loop_order.npy       (m,) int32 frame order of the idle loop

A directory is built under a temporary name and renamed into place, so readers
never see half an avatar and two concurrent preparations of one file both succeed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from models.avatar.avatar_errors import AvatarError, AvatarNotFoundError

FORMAT_VERSION = 3   # 2: shot_ids; face data per shot. 3: frames stored as I420 (older caches are rebuilt)
INFO_FILE = "info.json"
ARRAY_NAMES = ("landmarks", "face_boxes", "face_sizes", "mouth_features", "face_found", "shot_ids",
               "loop_order")
DEFAULT_ID = "default"
_ID_RE = re.compile(r"^(?:[0-9a-f]{16}|default)$")


def is_valid_id(avatar_id: object) -> bool:
    return isinstance(avatar_id, str) and bool(_ID_RE.match(avatar_id))


def avatar_dir(cache_root: Path, avatar_id: str) -> Path:
    """The directory of ``avatar_id``; ids reach us from HTTP requests, so check them first."""
    if not is_valid_id(avatar_id):
        raise AvatarNotFoundError(
            f"invalid avatar id {str(avatar_id)[:80]!r}: ids are 16 hex digits or 'default'"
        )
    return Path(cache_root) / avatar_id


def content_id(path: Path, params: dict) -> str:
    """Id from the file's bytes and the preparation parameters (same input -> same id)."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT_VERSION, **params}, sort_keys=True).encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def read_info(directory: Path) -> dict | None:
    """The stored info of a complete avatar of the current format, else None."""
    try:
        info = json.loads((Path(directory) / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    if info.get("format") != FORMAT_VERSION:
        return None
    return info


def work_dir(cache_root: Path, avatar_id: str) -> Path:
    Path(cache_root).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{avatar_id}.", suffix=".tmp", dir=cache_root))


def write_arrays(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    missing = set(ARRAY_NAMES) - set(arrays)
    if missing:
        raise ValueError(f"avatar arrays missing: {sorted(missing)}")
    for name in ARRAY_NAMES:
        np.save(Path(directory) / f"{name}.npy", arrays[name])


def read_arrays(directory: Path) -> dict[str, np.ndarray]:
    try:
        return {name: np.load(Path(directory) / f"{name}.npy") for name in ARRAY_NAMES}
    except (OSError, ValueError) as exc:
        raise AvatarError(f"avatar cache {Path(directory).name} is damaged ({exc}); prepare it again") from exc


def publish(tmp: Path, final: Path, info: dict, replace: bool = False) -> None:
    """Write info.json last and move the finished directory into place.

    ``replace`` swaps out an existing complete avatar (the default avatar rebuilt at
    another fps); otherwise an existing complete one wins, as it is equivalent.
    """
    tmp, final = Path(tmp), Path(final)
    (tmp / INFO_FILE).write_text(json.dumps({"format": FORMAT_VERSION, **info}, indent=1))
    if final.exists() and (replace or read_info(final) is None):
        # Move the old one aside first: the swap then leaves no moment without a directory
        # longer than two renames, and readers holding files of the old one keep them.
        old = final.with_name(f".{final.name}.{os.getpid()}.old")
        try:
            os.rename(final, old)
        except OSError:
            pass
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError:
        # Someone else published the same id meanwhile: theirs is equivalent.
        shutil.rmtree(tmp, ignore_errors=True)
        if read_info(final) is None:
            raise


def discard(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)


def list_ids(cache_root: Path) -> list[str]:
    root = Path(cache_root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if is_valid_id(p.name) and read_info(p) is not None)


_INFO_LOCK = threading.Lock()   # read-modify-write of info.json by the server's executor threads


def update_info(directory: Path, changes: dict) -> dict:
    """Merge ``changes`` into a complete avatar's info.json, atomically (a reader sees the old
    file or the new one, never half of one).  Returns the new info; AvatarNotFoundError when
    the avatar is not (or no longer) there.  Frames and arrays are untouched."""
    directory = Path(directory)
    with _INFO_LOCK:
        info = read_info(directory)
        if info is None:
            raise AvatarNotFoundError(f"no prepared avatar with id {directory.name!r}")
        info = {**info, **changes, "format": FORMAT_VERSION}
        fd, tmp = tempfile.mkstemp(prefix=".info.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(info, fh, indent=1)
            os.replace(tmp, directory / INFO_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return info


def remove(cache_root: Path, avatar_id: str) -> None:
    """Delete a prepared avatar.  The directory is first renamed to a name no listing shows,
    so it disappears at once; processes that have its files open keep them until they close."""
    directory = avatar_dir(cache_root, avatar_id)
    if read_info(directory) is None:
        raise AvatarNotFoundError(f"no prepared avatar with id {avatar_id!r}")
    gone = directory.with_name(f".{avatar_id}.{os.getpid()}.{threading.get_ident()}.deleted")
    try:
        os.rename(directory, gone)
    except FileNotFoundError:
        raise AvatarNotFoundError(f"no prepared avatar with id {avatar_id!r}") from None
    shutil.rmtree(gone, ignore_errors=True)
