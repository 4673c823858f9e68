"""What a render process does: analyse a batch's audio once, render one item.

These functions run inside the worker processes of ``studio.worker_pool``.  Their
inputs and outputs are small picklable dataclasses; the heavy data (the audio and
its mouth track) travels through files, written once per batch and read by every
item.  A worker records its own progress in the database (WAL: no lock on the
server) and reads back whether it has been cancelled.
"""

from __future__ import annotations

import os
import select
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from models.audio.pcm import SAMPLE_RATE
from studio import storage

# What a forkserver should import once for every render process it forks (the CLI sets
# this; in the server, the live app's forkserver preloads the same libraries).
PRELOAD = ["numpy", "cv2", "av", "torch", "live.engine.offline_render", "models.avatar.avatar", "models.mouth.mouth_model"]
PREP_SHARE = 0.3          # share of an item's progress bar given to avatar preparation
_state: dict = {}         # per-process: open database, loaded model


class JobFailed(Exception):
    """An item or batch could not be produced; the message is for the user."""


class JobCancelled(Exception):
    """The user cancelled the batch while this job ran."""


# -- process set-up -----------------------------------------------------------------------

def init_worker(nice: int, server_pid: int) -> None:
    """Initializer of every render process: one thread per library, lower priority,
    and no life after the server's."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = "1"
    if nice > 0:
        try:
            os.nice(nice)
        except OSError:
            pass
    _exit_with_server(server_pid)


def _exit_with_server(server_pid: int) -> None:
    """End this process the moment the server process ends, however it ends.

    Render processes are forked by a forkserver, so the server is not their parent
    (no parent-death signal), and an idle pool process waits forever on its task
    pipe.  One daemon thread blocks on a pidfd of the server (it becomes readable
    when the server exits) and then exits: a killed server leaves no orphan working
    on, or writing, anything.  Its temp files are swept away at the next start.
    """
    try:
        fd = os.pidfd_open(server_pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll instead
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while storage.pid_alive(server_pid):
                time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-server", daemon=True).start()


def _db(path: str):
    from studio.db import StudioDB

    db = _state.get("db")
    if db is None or str(db.path) != path:
        db = StudioDB(Path(path))
        _state["db"] = db
    return db


def _predictor(checkpoint: str | None = None):
    key = ("predictor", checkpoint)
    if key not in _state:
        import torch

        from models.mouth.mouth_model import MouthPredictor

        torch.set_num_threads(1)
        _state[key] = MouthPredictor.load(checkpoint, threads=1)
    return _state[key]


def warm_up(checkpoint: str | None, hold_s: float) -> int:
    """Load the libraries and the model now, so the first real job doesn't wait for them.

    ``hold_s`` keeps this process busy briefly so that N warm-ups reach N processes.
    """
    import cv2

    import live.engine.offline_render  # noqa: F401 - imports torch, the renderer, the encoder
    import models.avatar.avatar  # noqa: F401 - imports mediapipe

    cv2.setNumThreads(1)
    _predictor(checkpoint)
    time.sleep(hold_s)
    return os.getpid()


# -- batch audio ----------------------------------------------------------------------------

@dataclass(frozen=True)
class AnalyzeJob:
    batch_id: str
    audio_path: str
    audio_out: str         # .npy: the 16 kHz audio every item muxes
    track_out: str         # .npz: the MouthTrack every item renders
    fps: float
    max_seconds: float
    checkpoint: str | None = None   # None: the default mouth model


@dataclass(frozen=True)
class AnalyzeOutcome:
    duration: float
    n_frames: int
    seconds: float
    cpu_seconds: float     # this process's CPU time for the job (independent of other load)


def analyze(job: AnalyzeJob) -> AnalyzeOutcome:
    """Decode the batch's audio and compute its mouth track, once for the whole batch."""
    import numpy as np

    from live.engine.offline_render import analyze_audio
    from models.audio.audio_io import AudioDecodeError, load_audio

    t0, c0 = time.perf_counter(), time.process_time()
    try:
        audio = load_audio(job.audio_path, max_seconds=job.max_seconds)
    except AudioDecodeError as exc:
        raise JobFailed(f"audio: {exc}") from None
    try:
        track = analyze_audio(audio, _predictor(job.checkpoint), fps=job.fps)
    except Exception as exc:  # noqa: BLE001 - e.g. a missing or incompatible model checkpoint
        raise JobFailed(f"audio analysis failed: {exc}") from None
    audio_out, track_out = Path(job.audio_out), Path(job.track_out)
    with storage.partial_file(audio_out) as tmp_audio:
        np.save(tmp_audio, audio)
        os.replace(tmp_audio, audio_out)
    with storage.partial_file(track_out) as tmp_track:
        track.save(tmp_track)
        # The track is written last: its presence means the batch's features are complete.
        os.replace(tmp_track, track_out)
    return AnalyzeOutcome(len(audio) / SAMPLE_RATE, track.n_frames, time.perf_counter() - t0,
                          time.process_time() - c0)


# -- one item -------------------------------------------------------------------------------

@dataclass(frozen=True)
class RenderJob:
    item_id: str
    db_path: str
    video_path: str
    video_name: str
    audio_path: str        # AnalyzeJob.audio_out
    track_path: str        # AnalyzeJob.track_out
    out_path: str          # final name of the mp4; written under a temp name first
    thumb_path: str
    avatars_root: str
    fps: float
    progress_interval_s: float = 0.4


@dataclass(frozen=True)
class RenderOutcome:
    duration: float
    width: int
    height: int
    size: int
    prep_seconds: float
    prep_cpu_seconds: float
    wait_seconds: float
    render_seconds: float
    encode_seconds: float
    wall_seconds: float
    cpu_seconds: float
    avatar_id: str
    warnings: tuple[str, ...]


class ThrottledProgress:
    """Progress reports at most every ``interval_s`` (or when forced), whose answer is the
    cancel flag: once it says stop, every later call raises JobCancelled.  ``cancelled``
    is the render's cancel check.  Subclasses say where a report goes (``_report``)."""

    def __init__(self, interval_s: float) -> None:
        self.interval = interval_s
        self.last = 0.0
        self.stop = False
        self.fraction = 0.0

    def __call__(self, stage: str, fraction: float, force: bool = False) -> None:
        self.fraction = fraction
        now = time.monotonic()
        if not self.stop and (force or now - self.last >= self.interval):
            self.last = now
            self.stop = self._report(stage, fraction)
        if self.stop:
            raise JobCancelled("cancelled")

    def cancelled(self) -> bool:
        try:
            self("rendering", self.fraction)
        except JobCancelled:
            return True
        return False

    def _report(self, stage: str, fraction: float) -> bool:
        """Send one report; True if the item should stop."""
        raise NotImplementedError


class _Progress(ThrottledProgress):
    """A local render's progress, written to the studio database."""

    def __init__(self, job: RenderJob) -> None:
        super().__init__(job.progress_interval_s)
        self.db = _db(job.db_path)
        self.item_id = job.item_id

    def _report(self, stage: str, fraction: float) -> bool:
        return self.db.record_progress(self.item_id, stage, fraction)


def render(job: RenderJob) -> RenderOutcome:
    """Prepare (or reuse) the item's avatar and render the batch's track onto it."""
    import cv2
    import numpy as np

    from live.engine.offline_render import MouthTrack, RenderCancelled, render_video
    from models.avatar.avatar import load_avatar, prepare_avatar

    cv2.setNumThreads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    progress = _Progress(job)
    progress("preparing", 0.0, force=True)
    try:
        # The cache keeps JPEGs only (a render reads each frame about once; see
        # prepare_avatar's raw_frames), and a freshly prepared avatar's decoded
        # frames stay in memory for this render, so nothing is decoded twice.
        frames: list[np.ndarray] = []
        info = prepare_avatar(Path(job.video_path), Path(job.avatars_root), name=job.video_name,
                              fps=job.fps, progress=lambda f: progress("preparing", PREP_SHARE * f),
                              raw_frames=False, frames_out=frames)
        avatar = load_avatar(info.avatar_id, Path(job.avatars_root), raw_frames=False)
        if frames:
            avatar.use_frames(frames)
    except JobCancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes the item's readable reason
        raise JobFailed(readable_reason(exc, job.video_name)) from None
    t_prep = time.perf_counter() - t0
    cpu_prep = time.process_time() - c0
    # The batch's audio analysis may still be running in another process.
    track_file = Path(job.track_path)
    while not track_file.exists():
        progress("waiting for the audio analysis", PREP_SHARE)
        time.sleep(0.1)
    t_wait = time.perf_counter() - t0 - t_prep

    audio = np.load(job.audio_path)
    track = MouthTrack.load(Path(job.track_path))
    out, thumb = Path(job.out_path), Path(job.thumb_path)

    def on_frame(done: int, total: int) -> None:
        progress.fraction = PREP_SHARE + (1 - PREP_SHARE) * done / max(total, 1)

    # Every way out of this block short of the commit (a cancel seen by any progress
    # write, a render, thumbnail or disk error) removes the temp file and the thumbnail.
    try:
        with storage.partial_file(out) as tmp:
            try:
                stats = render_video(avatar, track, audio, tmp, progress=on_frame,
                                     cancel=progress.cancelled, encoder_threads=1)
            except RenderCancelled:
                raise JobCancelled("cancelled") from None
            except Exception as exc:  # noqa: BLE001 - every failure becomes the item's readable reason
                raise JobFailed(readable_reason(exc, job.video_name)) from None
            progress("finishing", 0.99, force=True)
            duration, width, height = _save(tmp, out, thumb, job.video_name)
    except BaseException:
        storage.discard(thumb)
        raise
    return RenderOutcome(
        duration=duration, width=width, height=height, size=out.stat().st_size,
        prep_seconds=t_prep, prep_cpu_seconds=cpu_prep, wait_seconds=t_wait, render_seconds=stats.render_seconds, encode_seconds=stats.encode_seconds,
        wall_seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0,
        avatar_id=info.avatar_id,
        warnings=tuple(info.warnings))


def _save(tmp: Path, out: Path, thumb: Path, source: str) -> tuple[float, int, int]:
    """Thumbnail the rendered file and publish it as ``out``; (duration, width, height)."""
    try:
        probed = storage.write_thumbnail(tmp, thumb)
        storage.commit(tmp, out)
    except Exception as exc:  # noqa: BLE001 - e.g. a full disk; the reason names no server path
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise JobFailed(f"{source}: the result could not be saved ({detail})") from None
    return probed


def readable_reason(exc: BaseException, source: str) -> str:
    """One line a user can act on, whatever went wrong with ``source``."""
    import av.error

    if isinstance(exc, ValueError):  # AvatarError, AudioDecodeError: already user-facing
        return str(exc)
    if isinstance(exc, av.error.FFmpegError):
        return f"{source}: cannot decode this file ({exc.strerror or exc}); is it a supported video?"
    if isinstance(exc, (FileNotFoundError, PermissionError)):
        return f"{source}: file unreadable ({exc.strerror})"
    if isinstance(exc, MemoryError):
        return f"{source}: out of memory while processing this video"
    return f"{source}: internal error ({type(exc).__name__}: {exc})"
