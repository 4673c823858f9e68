"""Runs the queue: batches in the order they were started, items in list order,
on a pool of single-threaded render processes (one per core).

The dispatcher is one asyncio task in the server process.  Each unit of work (a
batch's audio analysis, or one item) is awaited in its own small task; when it
ends, its outcome is written to the database and the dispatcher is woken to fill
the freed slot.  The database is the queue: nothing lives only in memory, so a
restart picks up exactly where the previous process stopped.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

from studio import pipeline, storage
from studio.config import StudioConfig, StudioPaths
from studio.db import StudioDB, new_id
from studio.job_log import JobLog
from studio.jobs import Batch, BatchStatus, Item, ItemStatus, Result
from studio.render_backend import RenderBackend

MAX_CRASHES = 2   # a video that crashes its render process twice is failed, not retried forever


def audio_features_path(paths: StudioPaths, batch_id: str) -> Path:
    return paths.features / f"{batch_id}.audio.npy"


def track_path(paths: StudioPaths, batch_id: str) -> Path:
    return paths.features / f"{batch_id}.track.npz"


def result_path(paths: StudioPaths, item: Item) -> Path:
    return paths.results / item.batch_id / item.out_name


def thumb_path(paths: StudioPaths, item: Item) -> Path:
    return paths.thumbs / f"{item.id}.jpg"


class WorkerPool:
    def __init__(self, db: StudioDB, paths: StudioPaths, config: StudioConfig, log: JobLog,
                 after_result: Callable[[], None] | None = None,
                 after_batch: Callable[[str], None] | None = None,
                 backend: RenderBackend | None = None) -> None:
        self.db = db
        self.paths = paths
        self.config = config
        self.log = log
        self.after_result = after_result
        self.after_batch = after_batch   # a batch is settled: nothing of it runs any more
        self.backend = backend   # None: this machine's process pool (the default)
        self.size = backend.slots() if backend is not None else config.worker_count()
        self._executor: ProcessPoolExecutor | None = None
        self._generation = 0
        self._inflight: dict[str, asyncio.Task] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._analyze_crashes: dict[str, int] = {}

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.backend is not None:
            await self.backend.start()
        self.recover()
        self._task = asyncio.create_task(self._dispatch_forever(), name="studio-dispatcher")
        self.wake()

    async def stop(self) -> None:
        """Stop dispatching and end the render processes; running items resume next start."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        # Cancel the waiting tasks before killing the processes, so that no task
        # mistakes a deliberate stop for a crashed render (which would count an attempt).
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()
        self._kill_executor()
        if self.backend is not None:
            await self.backend.close()

    def wake(self) -> None:
        self._wake.set()

    def prewarm(self) -> None:
        """Start the render processes in the background (a batch is being put together:
        they will be needed in a moment, and their start-up hides behind the uploads)."""
        if self._executor is not None or self.backend is not None:
            return
        loop = asyncio.get_running_loop()
        executor = self._get_executor()
        ckpt = str(self.config.checkpoint) if self.config.checkpoint else None
        for _ in range(self.size):
            fut = loop.run_in_executor(executor, pipeline.warm_up, ckpt, 0.3)
            # A failure here (e.g. no model file) resurfaces, readable, in the first real job.
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    def recover(self) -> None:
        """After a crash: finish what completed, requeue what was interrupted."""
        for folder in (self.paths.results, self.paths.features, self.paths.thumbs):
            for p in storage.remove_partials(folder):
                self.log.event("partial_removed", file=p.name)
        for item in self.db.items_in(ItemStatus.RUNNING):
            final = result_path(self.paths, item)
            if final.exists() and item.result_id is None:
                # Renamed into place but the process died before recording it.
                try:
                    self._record_result(item, final, render_seconds=0.0)
                    self.log.event("item_recovered", batch=item.batch_id, item=item.id, file=item.out_name)
                    continue
                except Exception as exc:  # noqa: BLE001 - an unreadable leftover is re-rendered
                    final.unlink(missing_ok=True)
                    self.log.event("recover_failed", item=item.id, reason=str(exc))
            self.db.move_item(item.id, ItemStatus.QUEUED, stage="resumed after restart")
            self.log.event("item_resumed", batch=item.batch_id, item=item.id, attempts=item.attempts,
                           crashes=item.crashes)

    # -- dispatching ----------------------------------------------------------------------

    async def _dispatch_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self._dispatch()
            except Exception as exc:  # noqa: BLE001 - the queue must survive a bad row
                self.log.event("dispatch_error", reason=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0)
                self.wake()

    def _dispatch(self) -> None:
        if self.backend is not None:   # a cluster's size changes as nodes join and leave
            self.size = self.backend.slots()
        free = self.size - len(self._inflight)
        for batch in self.db.active_batches():
            items = self.db.items_of(batch.id)
            if batch.status is BatchStatus.QUEUED:
                batch = self.db.move_batch(batch.id, BatchStatus.RUNNING)
                self.log.event("batch_started", batch=batch.id, items=len(items))
            if self._maybe_finish(batch, items):
                continue
            if free <= 0:
                continue
            key = f"analyze:{batch.id}"
            if not track_path(self.paths, batch.id).exists() and key not in self._inflight:
                # Submitted before the batch's items, so it reaches a process first;
                # items may then prepare their avatars while the audio is analysed.
                self._launch(key, self._analyze(batch))
                free -= 1
            for item in items:
                if free <= 0:
                    break
                if item.status is ItemStatus.QUEUED and f"item:{item.id}" not in self._inflight:
                    self._launch(f"item:{item.id}", self._render(batch, item))
                    free -= 1

    def _maybe_finish(self, batch: Batch, items: list[Item]) -> bool:
        if any(not i.status.terminal for i in items):
            return False
        if any(key.endswith(batch.id) for key in self._inflight):
            return False
        failed = sum(i.status is ItemStatus.FAILED for i in items)
        done = sum(i.status is ItemStatus.DONE for i in items)
        summary = f"{failed} of {len(items)} items failed" if failed else None
        self.db.move_batch(batch.id, BatchStatus.FINISHED, error=summary)
        self.log.event("batch_finished", batch=batch.id, done=done, failed=failed,
                       seconds=time.time() - (batch.started_at or batch.created_at))
        self._settled(batch.id)
        return True

    def _settled(self, batch_id: str) -> None:
        """Tell the owner once a terminal batch has nothing running any more."""
        if self.after_batch is None or not self.db.get_batch(batch_id).status.terminal:
            return
        if any(i.status is ItemStatus.RUNNING for i in self.db.items_of(batch_id)):
            return
        if any(key.endswith(batch_id) for key in self._inflight):
            return
        if self.backend is not None:
            self.backend.forget_batch(batch_id)
        self.after_batch(batch_id)

    def _launch(self, key: str, coro) -> None:
        task = asyncio.create_task(coro, name=key)
        self._inflight[key] = task

        def done(_t: asyncio.Task) -> None:
            self._inflight.pop(key, None)
            self.wake()

        task.add_done_callback(done)

    # -- executor -------------------------------------------------------------------------

    def _get_executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # forkserver, not fork: the server has threads (aiohttp, sqlite, torch) and forking
            # a threaded process can deadlock the child.  The live server's forkserver has
            # already imported torch, OpenCV and the avatar code, so a render process starts
            # in a fraction of a second instead of importing them all again (spawn).
            self._executor = ProcessPoolExecutor(
                max_workers=self.size, mp_context=multiprocessing.get_context("forkserver"),
                initializer=pipeline.init_worker, initargs=(self.config.worker_nice, os.getpid()))
            self._generation += 1
        return self._executor

    def _kill_executor(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # A render can take minutes; shutdown() would wait for it.  The processes
        # are ours and their work is requeued, so end them now.
        for proc in list(getattr(executor, "_processes", {}).values()):
            if proc.is_alive():
                proc.kill()
        executor.shutdown(wait=False, cancel_futures=True)

    async def _run_in_pool(self, fn, job):
        if self.backend is not None:
            return await self.backend.run(job)
        loop = asyncio.get_running_loop()
        executor = self._get_executor()
        generation = self._generation
        try:
            return await loop.run_in_executor(executor, fn, job)
        except BrokenProcessPool:
            if generation == self._generation:   # the first task to notice rebuilds it
                self._kill_executor()
            raise

    # -- units of work ----------------------------------------------------------------------

    async def _analyze(self, batch: Batch) -> None:
        audio = self.db.get_upload(batch.audio_upload) if batch.audio_upload else None
        if audio is None:
            self._fail_batch(batch, "the batch has no audio")
            return
        job = pipeline.AnalyzeJob(
            batch_id=batch.id, audio_path=str(self._upload_path(audio.path)),
            audio_out=str(audio_features_path(self.paths, batch.id)),
            track_out=str(track_path(self.paths, batch.id)), fps=batch.fps,
            max_seconds=self.config.max_audio_seconds,
            checkpoint=str(self.config.checkpoint) if self.config.checkpoint else None)
        self.log.event("analyze_started", batch=batch.id, audio=audio.filename)
        try:
            outcome = await self._run_in_pool(pipeline.analyze, job)
        except pipeline.JobFailed as exc:
            self._fail_batch(batch, str(exc))
        except BrokenProcessPool:
            crashes = self._analyze_crashes[batch.id] = self._analyze_crashes.get(batch.id, 0) + 1
            if crashes >= MAX_CRASHES:
                self._fail_batch(batch, "the audio analysis crashed its process repeatedly")
            else:
                self.log.event("analyze_retry", batch=batch.id, reason="render process died")
        except Exception as exc:  # noqa: BLE001
            self._fail_batch(batch, f"audio analysis failed: {type(exc).__name__}: {exc}")
        else:
            self.log.event("analyze_done", batch=batch.id, audio_s=outcome.duration,
                           frames=outcome.n_frames, seconds=outcome.seconds, cpu_s=outcome.cpu_seconds)

    def _fail_batch(self, batch: Batch, reason: str) -> None:
        for item in self.db.items_of(batch.id):
            if not item.status.terminal:
                if item.status is ItemStatus.PENDING:
                    self.db.move_item(item.id, ItemStatus.QUEUED)
                self.db.move_item(item.id, ItemStatus.FAILED, error=reason)
        current = self.db.get_batch(batch.id)
        if not current.status.terminal:
            self.db.move_batch(batch.id, BatchStatus.FAILED, error=reason)
        self.log.event("batch_failed", batch=batch.id, reason=reason)
        self._settled(batch.id)

    async def _render(self, batch: Batch, item: Item) -> None:
        item = self.db.move_item(item.id, ItemStatus.RUNNING)
        video = self.db.get_upload(item.video_upload)
        final = result_path(self.paths, item)
        final.parent.mkdir(parents=True, exist_ok=True)
        job = pipeline.RenderJob(
            item_id=item.id, db_path=str(self.db.path), video_path=str(self._upload_path(video.path)),
            video_name=video.filename, audio_path=str(audio_features_path(self.paths, batch.id)),
            track_path=str(track_path(self.paths, batch.id)), out_path=str(final),
            thumb_path=str(thumb_path(self.paths, item)), avatars_root=str(self.paths.avatars),
            fps=batch.fps, progress_interval_s=self.config.progress_interval_s)
        self.log.event("item_started", batch=batch.id, item=item.id, video=video.filename,
                       attempt=item.attempts)
        try:
            outcome = await self._run_in_pool(pipeline.render, job)
        except pipeline.JobCancelled:
            if self._settle(item, ItemStatus.CANCELLED, stage="cancelled"):
                self.log.event("item_cancelled", batch=batch.id, item=item.id, video=video.filename)
        except pipeline.JobFailed as exc:
            if self._settle(item, ItemStatus.FAILED, error=str(exc), stage="failed"):
                self.log.event("item_failed", batch=batch.id, item=item.id, video=video.filename,
                               reason=str(exc))
        except BrokenProcessPool:
            # Only a render process that died counts against the budget: an item resumed
            # after a server restart (attempts + 1) still gets its full MAX_CRASHES.
            crashes = item.crashes + 1
            if crashes >= MAX_CRASHES:
                reason = f"{video.filename}: the render process crashed on this video {crashes} times"
                if self._settle(item, ItemStatus.FAILED, error=reason, stage="failed", crashed=True):
                    self.log.event("item_failed", batch=batch.id, item=item.id, reason=reason)
            elif self._settle(item, ItemStatus.QUEUED, stage="retrying: render process died", crashed=True):
                self.log.event("item_requeued", batch=batch.id, item=item.id, reason="render process died",
                               crashes=crashes)
        except asyncio.CancelledError:
            raise   # server stopping: the item stays running and is resumed on restart
        except Exception as exc:  # noqa: BLE001
            reason = f"{video.filename}: internal error ({type(exc).__name__}: {exc})"
            if self._settle(item, ItemStatus.FAILED, error=reason, stage="failed"):
                self.log.event("item_failed", batch=batch.id, item=item.id, reason=reason)
        else:
            self._record_result(item, final, render_seconds=outcome.wall_seconds)
            self.log.event("item_done", batch=batch.id, item=item.id, video=video.filename,
                           file=item.out_name, seconds=outcome.wall_seconds, prep_s=outcome.prep_seconds,
                           wait_s=outcome.wait_seconds, render_s=outcome.render_seconds,
                           encode_s=outcome.encode_seconds, cpu_s=outcome.cpu_seconds,
                           prep_cpu_s=outcome.prep_cpu_seconds,
                           avatar=outcome.avatar_id)
            for warning in outcome.warnings:
                self.log.event("item_warning", batch=batch.id, item=item.id, warning=warning)
            if self.after_result is not None:
                self.after_result()
        finally:
            if not self.db.get_batch(batch.id).status.active:
                # The last item of a cancelled batch: the batch is now settled.
                self._inflight.pop(f"item:{item.id}", None)
                self._settled(batch.id)

    def _settle(self, item: Item, status: ItemStatus, **fields) -> bool:
        """Move a running item on, unless something else (a failed batch) already settled it."""
        if self.db.get_item(item.id).status is not ItemStatus.RUNNING:
            return False
        self.db.move_item(item.id, status, **fields)
        return True

    def _record_result(self, item: Item, final: Path, render_seconds: float) -> None:
        thumb = thumb_path(self.paths, item)
        if thumb.exists():
            duration, width, height = _probe(final)
        else:
            duration, width, height = storage.write_thumbnail(final, thumb)
        batch = self.db.get_batch(item.batch_id)
        audio_name = self.db.get_upload(batch.audio_upload).filename if batch.audio_upload else ""
        video = self.db.get_upload(item.video_upload)
        result = Result(
            id=new_id(), item_id=item.id, batch_id=item.batch_id, filename=item.out_name,
            path=str(final.relative_to(self.paths.root)), thumb_path=str(thumb.relative_to(self.paths.root)),
            duration=duration, size=final.stat().st_size, width=width, height=height,
            audio_name=audio_name, video_name=video.filename, created_at=time.time(),
            render_seconds=render_seconds)
        self.db.complete_item(item.id, result)

    def _upload_path(self, stored: str) -> Path:
        p = Path(stored)
        return p if p.is_absolute() else self.paths.root / p


def _probe(video: Path) -> tuple[float, int, int]:
    import av

    with av.open(str(video)) as c:
        vs = c.streams.video[0]
        duration = c.duration / 1_000_000 if c.duration else float(vs.duration * vs.time_base)
        return duration, vs.codec_context.width, vs.codec_context.height
