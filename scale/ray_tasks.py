"""What a Ray worker does for the studio: analyse a batch's audio, prepare an avatar,
render one item.

These run on any node of the cluster, which shares nothing with the caller but
the cluster itself: inputs arrive as bytes or objects from Ray's object store,
results go back the same way.  Each node keeps a scratch folder (the system temp
folder, or ``LIPSTREAM_RAY_SCRATCH``) holding its avatar cache by content id, the
model weights by hash, and the temp files of renders in progress; a render's temp
file is gone however the task ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray

from models.audio.pcm import SAMPLE_RATE
from studio import storage
from studio.pipeline import PREP_SHARE, JobCancelled, JobFailed, ThrottledProgress, readable_reason
from studio.storage import safe_name

# Files of a prepared avatar that are not shipped: the raw copy is a cache a node
# rebuilds from the JPEGs if it ever wants one (it is ten times their size).
_NOT_SHIPPED = {"frames.raw", "frames_raw.json"}
_state: dict = {}   # per worker process: loaded model, by weights hash


def scratch() -> Path:
    root = Path(os.environ.get("LIPSTREAM_RAY_SCRATCH") or Path(tempfile.gettempdir()) / "lipstream-ray")
    root.mkdir(parents=True, exist_ok=True)
    return root


def sweep_orphans(folder: Path) -> list[Path]:
    """Remove the partial files in ``folder`` whose writing process is gone.

    A task cleans up after itself however it ends, except when its process dies: a
    node lost mid-render, or a worker killed.  Temp names carry the writer's pid
    (``studio.storage.temp_path_for``), so a node's next task can tell its own
    neighbours' work in progress from a dead writer's leftovers.
    """
    removed = []
    for path in folder.glob("*"):
        writer = storage.partial_writer(path)
        if writer is None or not path.is_file() or storage.pid_alive(writer):
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def node_id() -> str:
    return ray.get_runtime_context().get_node_id()


def _one_thread() -> None:
    """One core per task, as the local pool's processes: Ray counts a task as 1 CPU."""
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


# -- what crosses the object store ------------------------------------------------------------

@dataclass(frozen=True)
class Features:
    """A batch's audio, analysed once: every item muxes ``audio`` and renders ``track``."""

    audio: np.ndarray          # 16 kHz mono float32
    track: object              # live.engine.offline_render.MouthTrack
    seconds: float
    cpu_seconds: float


@dataclass(frozen=True)
class PackedAvatar:
    """A prepared avatar's cache folder as bytes, by content id."""

    avatar_id: str
    files: dict[str, bytes]
    warnings: tuple[str, ...]
    prep_seconds: float
    prep_cpu_seconds: float


@dataclass(frozen=True)
class ItemSpec:
    item_id: str
    video_name: str
    out_name: str
    progress_key: str          # the name this item reports its progress under
    progress_interval_s: float


@dataclass(frozen=True)
class Rendered:
    mp4: bytes
    node_id: str
    avatar_id: str
    warnings: tuple[str, ...]  # the avatar's (no face in some frames...)
    prep_seconds: float        # of the avatar's preparation (shared by the items of one video)
    prep_cpu_seconds: float
    wait_seconds: float        # from the task's start until its inputs were loaded
    render_seconds: float
    encode_seconds: float
    wall_seconds: float
    cpu_seconds: float


# -- progress and cancel ---------------------------------------------------------------------

class BoardProgress(ThrottledProgress):
    """A node's progress reports, to the caller's ``ProgressBoard`` (its answer is the cancel flag)."""

    def __init__(self, board, key: str, interval_s: float) -> None:
        super().__init__(interval_s)
        self.board, self.key = board, key
        self.node = node_id()

    def _report(self, stage: str, fraction: float) -> bool:
        return bool(ray.get(self.board.report.remote(self.key, stage, fraction, self.node)))


# -- the tasks --------------------------------------------------------------------------------

def analyze_task(audio: bytes, suffix: str, fps: float, max_seconds: float, weights: bytes) -> Features:
    """Decode the batch's audio and compute its mouth track (the model's weights travel
    with the call: a node needs no copy of the checkpoint)."""
    from live.engine.offline_render import analyze_audio
    from models.audio.audio_io import AudioDecodeError, load_audio

    _one_thread()
    t0, c0 = time.perf_counter(), time.process_time()
    with _inbox_file(audio, "audio" + suffix) as path:
        try:
            samples = load_audio(path, max_seconds=max_seconds)
        except AudioDecodeError as exc:
            raise JobFailed(f"audio: {exc}") from None
    try:
        track = analyze_audio(samples, _predictor(weights), fps=fps)
    except Exception as exc:  # noqa: BLE001 - e.g. incompatible weights
        raise JobFailed(f"audio analysis failed: {exc}") from None
    return Features(samples, track, time.perf_counter() - t0, time.process_time() - c0)


def prepare_task(video: bytes, name: str, fps: float, board, key: str, interval_s: float) -> PackedAvatar:
    """Prepare (or find in this node's cache) the avatar of one video, and pack it."""
    from models.avatar import avatar_cache
    from models.avatar.avatar import prepare_avatar

    _one_thread()
    t0, c0 = time.perf_counter(), time.process_time()
    progress = BoardProgress(board, key, interval_s)
    progress("preparing", 0.0, force=True)
    with _inbox_file(video, name) as path:
        try:
            info = prepare_avatar(path, _avatars(), name=name, fps=fps, raw_frames=False,
                                  progress=lambda f: progress("preparing", PREP_SHARE * f))
        except JobCancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes the item's readable reason
            raise JobFailed(readable_reason(exc, name)) from None
    folder = avatar_cache.avatar_dir(_avatars(), info.avatar_id)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name not in _NOT_SHIPPED}
    return PackedAvatar(info.avatar_id, files, tuple(info.warnings), time.perf_counter() - t0,
                        time.process_time() - c0)


def render_task(spec: ItemSpec, features: Features, avatar: PackedAvatar, board) -> Rendered:
    """Render the batch's track onto one prepared avatar; the MP4 comes back as bytes."""
    from live.engine.offline_render import RenderCancelled, render_video
    from models.avatar.avatar import load_avatar

    _one_thread()
    t0, c0 = time.perf_counter(), time.process_time()
    progress = BoardProgress(board, spec.progress_key, spec.progress_interval_s)
    progress("rendering", PREP_SHARE, force=True)
    try:
        loaded = load_avatar(_unpack(avatar), _avatars(), raw_frames=False)
    except Exception as exc:  # noqa: BLE001
        raise JobFailed(readable_reason(exc, spec.video_name)) from None
    t_wait = time.perf_counter() - t0

    def on_frame(done: int, total: int) -> None:
        progress.fraction = PREP_SHARE + (1 - PREP_SHARE) * done / max(total, 1)

    out = scratch() / "renders" / safe_name(spec.out_name)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_orphans(out.parent)
    with storage.partial_file(out) as tmp:   # this node's temp file, gone however the task ends
        try:
            stats = render_video(loaded, features.track, features.audio, tmp, progress=on_frame,
                                 cancel=progress.cancelled, encoder_threads=1)
        except RenderCancelled:
            raise JobCancelled("cancelled") from None
        except Exception as exc:  # noqa: BLE001
            raise JobFailed(readable_reason(exc, spec.video_name)) from None
        data = tmp.read_bytes()
    return Rendered(data, progress.node, avatar.avatar_id, avatar.warnings, avatar.prep_seconds,
                    avatar.prep_cpu_seconds, t_wait, stats.render_seconds, stats.encode_seconds,
                    time.perf_counter() - t0, time.process_time() - c0)


# -- node-local files ----------------------------------------------------------------------------

def _avatars() -> Path:
    return scratch() / "avatars"


def _unpack(avatar: PackedAvatar) -> str:
    """Put a packed avatar into this node's cache (unless there already); its id."""
    from models.avatar import avatar_cache

    final = avatar_cache.avatar_dir(_avatars(), avatar.avatar_id)
    if avatar_cache.read_info(final) is not None:
        return avatar.avatar_id
    tmp = avatar_cache.work_dir(_avatars(), avatar.avatar_id)
    try:
        for name, data in avatar.files.items():
            (tmp / safe_name(name)).write_bytes(data)
        os.rename(tmp, final)
    except OSError:
        if avatar_cache.read_info(final) is None:   # not another task's equivalent copy
            raise
    finally:
        avatar_cache.discard(tmp)
    return avatar.avatar_id


class _inbox_file:
    """Bytes from the caller as a file of this node, for decoders that want a path."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.name = data, safe_name(name)

    def __enter__(self) -> Path:
        self.folder = Path(tempfile.mkdtemp(prefix="in-", dir=scratch()))
        path = self.folder / self.name
        path.write_bytes(self.data)
        return path

    def __exit__(self, *exc) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


def _predictor(weights: bytes):
    from models.mouth.mouth_model import MouthPredictor

    digest = hashlib.sha256(weights).hexdigest()[:16]
    if digest not in _state:
        path = scratch() / "weights" / f"{digest}.pt"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with storage.partial_file(path) as tmp:
                tmp.write_bytes(weights)
                os.replace(tmp, path)
        _state[digest] = MouthPredictor.load(path, threads=1)
    return _state[digest]


def audio_seconds(features: Features) -> float:
    return len(features.audio) / SAMPLE_RATE
