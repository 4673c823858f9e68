"""The studio on a Ray cluster: a ``studio.render_backend.RenderBackend``.

The studio's queue, database, names, thumbnails, ZIPs and retention stay where
they are (``studio.worker_pool``); only the work moves:

- a batch's audio is read here, analysed once by one task, and its features
  (audio + mouth track) stay in the object store for every item of the batch;
- each distinct video (by content hash) is prepared once by one task; the packed
  avatar is an object every item using that video renders from (Ray places the
  render next to it when it can);
- each item is one task asking for 1 CPU; its MP4 comes back as bytes and is
  committed here under the result's final name, with its thumbnail, exactly as a
  local render's.  Nothing is assumed shared but the cluster.

A task lost with its node (or its worker process) is retried by Ray elsewhere
(``max_retries``); only when Ray gives up does the pool see a crash
(``BrokenProcessPool``) and requeue the item.  Progress and cancel go through a
``ProgressBoard`` actor on this node, mirrored into the database every progress
interval.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ray
from ray.exceptions import RayError, RayTaskError, TaskCancelledError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from scale import ray_tasks
from scale.ray_cluster import connect, this_node
from scale.ray_progress import ProgressBoard
from scale.ray_tasks import Features, ItemSpec, Rendered
from studio import storage
from studio.db import StudioDB
from studio.pipeline import (
    PREP_SHARE,
    AnalyzeJob,
    AnalyzeOutcome,
    JobCancelled,
    JobFailed,
    RenderJob,
    RenderOutcome,
)

MAX_RETRIES = 3   # system failures (a node or worker lost) per task; a job's own errors are never retried


@dataclass
class _Flight:
    """One item, as the caller tracks it: from its launch (before its task exists) to its result."""

    ref: ray.ObjectRef | None = None      # its render task, once its inputs are submitted
    avatar_key: str = ""
    started: bool = False                 # the task has reported from a node
    progress: tuple[str, float] = ("waiting for a node", 0.0)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Shared:
    """An object the batch's tasks share, and which batches still use it."""

    ref: ray.ObjectRef
    batches: set[str] = field(default_factory=set)


def _remote(fn, **options):
    return ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False, **options)(fn)


class RayBackend:
    name = "ray"

    def __init__(self, progress_interval_s: float = 0.4) -> None:
        self.interval = progress_interval_s
        self._analyze = _remote(ray_tasks.analyze_task)
        self._prepare = _remote(ray_tasks.prepare_task)
        self._render = _remote(ray_tasks.render_task)
        self._board = None
        self._pump: asyncio.Task | None = None
        self._db: StudioDB | None = None
        self._features: dict[str, asyncio.Future] = {}
        self._avatars: dict[str, _Shared] = {}
        self._weights: dict[str, ray.ObjectRef] = {}
        self._flights: dict[str, _Flight] = {}
        self._nodes: dict[str, str] = {}
        self._working: dict[str, str] = {}   # task key -> node, as last reported
        self._forget_keys: list[str] = []
        self._slots = (0.0, 1)

    # -- RenderBackend ------------------------------------------------------------------

    def slots(self) -> int:
        """The cluster's CPUs (asked of Ray at most every 2 s: it is a round trip)."""
        at, n = self._slots
        if time.monotonic() - at > 2.0:
            n = max(1, int(ray.cluster_resources().get("CPU", 1)))
            self._slots = (time.monotonic(), n)
        return n

    async def start(self) -> None:
        # The board lives on this node: it dies only with the caller.
        self._board = ray.remote(num_cpus=0)(ProgressBoard).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(this_node(), soft=False)).remote()
        self._pump = asyncio.create_task(self._pump_forever(), name="ray-progress")

    async def run(self, job: AnalyzeJob | RenderJob) -> AnalyzeOutcome | RenderOutcome:
        if isinstance(job, AnalyzeJob):
            return await self._run_analyze(job)
        return await self._run_render(job)

    def node_of(self, item_id: str) -> str | None:
        return self._nodes.get(item_id)

    def working_nodes(self) -> dict[str, str]:
        """Task key (an item id, or an avatar's key) -> the node it last reported from."""
        return dict(self._working)

    def forget_batch(self, batch_id: str) -> None:
        self._features.pop(batch_id, None)
        for key, shared in list(self._avatars.items()):
            shared.batches.discard(batch_id)
            if not shared.batches:
                del self._avatars[key]

    async def close(self) -> None:
        for flight in self._flights.values():
            if flight.ref is not None:
                ray.cancel(flight.ref, force=True)
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        if self._board is not None:
            ray.kill(self._board)
        if self._db is not None:
            self._db.close()

    # -- analysis -------------------------------------------------------------------------

    async def _run_analyze(self, job: AnalyzeJob) -> AnalyzeOutcome:
        # Registered before the first await: the batch's items, launched right after
        # this, find the features to wait for.
        features = self._features[job.batch_id] = asyncio.get_running_loop().create_future()
        features.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            audio = await asyncio.to_thread(Path(job.audio_path).read_bytes)
            weights = await self._weights_ref(job.checkpoint)
            ref = self._analyze.remote(audio, Path(job.audio_path).suffix, job.fps, job.max_seconds, weights)
            result: Features = await _await(ref)
        except BaseException as exc:
            if not features.done():
                features.set_exception(exc if isinstance(exc, Exception) else JobCancelled("stopped"))
            raise
        features.set_result(ref)
        # Written here too, as the local pool does: the queue's recovery after a restart
        # reads them, and the object is put back from them then.
        await asyncio.to_thread(_write_features, result, Path(job.audio_out), Path(job.track_out))
        return AnalyzeOutcome(len(result.audio) / 16_000, result.track.n_frames, result.seconds, result.cpu_seconds)

    async def _features_ref(self, job: RenderJob) -> ray.ObjectRef:
        batch_id = Path(job.track_path).name.split(".", 1)[0]
        pending = self._features.get(batch_id)
        if pending is None:   # analysed before a restart: the files are here
            from live.engine.offline_render import MouthTrack

            audio = await asyncio.to_thread(np.load, job.audio_path)
            track = await asyncio.to_thread(MouthTrack.load, Path(job.track_path))
            pending = self._features[batch_id] = asyncio.get_running_loop().create_future()
            pending.set_result(ray.put(Features(audio, track, 0.0, 0.0)))
        return await asyncio.shield(pending)

    async def _weights_ref(self, checkpoint: str | None) -> ray.ObjectRef:
        from models.mouth.mouth_model import DEFAULT_CHECKPOINT

        path = str(checkpoint or DEFAULT_CHECKPOINT)
        if path not in self._weights:
            try:
                data = await asyncio.to_thread(Path(path).read_bytes)
            except OSError as exc:
                raise JobFailed(f"audio analysis failed: mouth model weights unreadable ({exc.strerror})") from None
            self._weights[path] = ray.put(data)
        return self._weights[path]

    # -- one item ---------------------------------------------------------------------------

    async def _run_render(self, job: RenderJob) -> RenderOutcome:
        batch_id = Path(job.track_path).name.split(".", 1)[0]
        t0 = time.perf_counter()
        self._database(job.db_path)
        flight = self._flights[job.item_id] = _Flight()
        try:
            flight.avatar_key = await self._avatar_for(job, batch_id)
            features = await _unless(flight.cancelled, self._features_ref(job))
            spec = ItemSpec(job.item_id, job.video_name, Path(job.out_path).name, job.item_id, self.interval)
            flight.ref = self._render.remote(spec, features, self._avatars[flight.avatar_key].ref, self._board)
            rendered: Rendered = await _await(flight.ref)
        except asyncio.CancelledError:   # the studio is stopping: the item resumes at its next start
            if flight.ref is not None:
                ray.cancel(flight.ref, force=True)
            raise
        except BrokenProcessPool:   # Ray gave up on a lost node: prepare again at the retry
            self._avatars.pop(flight.avatar_key, None)
            raise
        finally:
            self._flights.pop(job.item_id, None)
            self._forget_keys.append(job.item_id)
        self._nodes[job.item_id] = rendered.node_id
        # The last moment a cancel can win, as in a local render: nothing is recorded after it.
        if self._database(job.db_path).record_progress(job.item_id, "finishing", 0.99):
            raise JobCancelled("cancelled")
        out, thumb = Path(job.out_path), Path(job.thumb_path)
        duration, width, height = await asyncio.to_thread(_save, rendered.mp4, out, thumb, job.video_name)
        return RenderOutcome(
            duration=duration, width=width, height=height, size=len(rendered.mp4),
            prep_seconds=rendered.prep_seconds, prep_cpu_seconds=rendered.prep_cpu_seconds,
            wait_seconds=rendered.wait_seconds, render_seconds=rendered.render_seconds,
            encode_seconds=rendered.encode_seconds, wall_seconds=time.perf_counter() - t0,
            cpu_seconds=rendered.cpu_seconds, avatar_id=rendered.avatar_id, warnings=rendered.warnings)

    async def _avatar_for(self, job: RenderJob, batch_id: str) -> str:
        """The key of the video's prepared avatar, preparing it (one task) the first time."""
        data = await asyncio.to_thread(Path(job.video_path).read_bytes)
        key = f"avatar:{hashlib.sha256(data).hexdigest()[:16]}:{job.fps:g}"
        shared = self._avatars.get(key)
        if shared is None:
            ref = self._prepare.options(scheduling_strategy="SPREAD").remote(
                data, job.video_name, job.fps, self._board, key, self.interval)
            shared = self._avatars[key] = _Shared(ref)
        shared.batches.add(batch_id)
        return key

    # -- progress -----------------------------------------------------------------------------

    def _database(self, path: str) -> StudioDB:
        if self._db is None or str(self._db.path) != path:
            self._db = StudioDB(Path(path))
        return self._db

    async def _pump_forever(self) -> None:
        """Mirror the board into the database; carry the database's cancels to the board."""
        while True:
            await asyncio.sleep(self.interval)
            if not self._flights or self._db is None:
                continue
            forget, self._forget_keys = self._forget_keys, []
            try:
                reports = await self._board.exchange.remote(forget)
            except RayError:
                continue
            self._working.update({key: r.node_id for key, r in reports.items()})
            cancel = [item_id for item_id, flight in list(self._flights.items())
                      if self._mirror(item_id, flight, reports)]
            if cancel:
                await self._board.cancel.remote(cancel)

    def _mirror(self, item_id: str, flight: _Flight, reports: dict) -> bool:
        """Record one item's progress; True when it has just been cancelled."""
        own = reports.get(item_id)
        if own is not None:
            flight.started = True
            self._nodes[item_id] = own.node_id
            flight.progress = (own.stage, own.fraction)
        elif not flight.started and flight.avatar_key in reports:
            flight.progress = ("preparing", min(reports[flight.avatar_key].fraction, PREP_SHARE))
        if not self._db.record_progress(item_id, *flight.progress) or flight.cancelled.is_set():
            return False
        # No ray.cancel here: a task that had just begun (its first report not yet mirrored)
        # would be interrupted while its caller heard "cancelled" at once, so the item ended
        # before the node had removed its partial file.  The board's answer stops the task
        # cooperatively instead; a task still queued stops at its first report, before any work.
        flight.cancelled.set()
        return True


async def _unless(cancelled: asyncio.Event, work):
    """``work``'s value, or JobCancelled as soon as ``cancelled`` is set."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(cancelled.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if not task.done():
        task.cancel()
        raise JobCancelled("cancelled")
    return task.result()


async def _await(ref: ray.ObjectRef):
    """A task's value, with the pool's meaning for its failures."""
    try:
        return await ref
    except TaskCancelledError:
        raise JobCancelled("cancelled") from None
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, (JobFailed, JobCancelled)):
            raise type(cause)(str(cause)) from None
        raise JobFailed(f"internal error on the cluster ({type(cause).__name__}: {cause})") from None
    except RayError as exc:   # the node or worker was lost more often than Ray retries
        raise BrokenProcessPool(f"ray: {type(exc).__name__}") from None


def _write_features(features: Features, audio_out: Path, track_out: Path) -> None:
    with storage.partial_file(audio_out) as tmp_audio:
        np.save(tmp_audio, features.audio)
        os.replace(tmp_audio, audio_out)
    with storage.partial_file(track_out) as tmp_track:
        features.track.save(tmp_track)
        os.replace(tmp_track, track_out)   # last: its presence means the features are complete


def _save(mp4: bytes, out: Path, thumb: Path, source: str) -> tuple[float, int, int]:
    """Commit the returned MP4 as ``out`` with its thumbnail; nothing is left on failure."""
    try:
        with storage.partial_file(out) as tmp:
            tmp.write_bytes(mp4)
            probed = storage.write_thumbnail(tmp, thumb)
            storage.commit(tmp, out)
    except Exception as exc:  # noqa: BLE001 - e.g. a full disk; the reason names no server path
        storage.discard(thumb)
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise JobFailed(f"{source}: the result could not be saved ({detail})") from None
    return probed


def backend_factory(address: str, progress_interval_s: float = 0.4):
    """Connect now (a bad address fails here, before anything starts); the factory the
    studio calls for its backend (``StudioConfig.render_backend``)."""
    connect(address)
    return lambda: RayBackend(progress_interval_s)
