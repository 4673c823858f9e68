"""The studio's operations, independent of HTTP: what the routes and the CLI call.

``Studio`` ties together the store (``studio.db``), the files (``studio.storage``),
the job log and the worker pool; every method is one user-level action and
raises a ``StudioError`` subclass (with its HTTP status) for bad requests.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from studio import storage
from studio.config import StudioConfig, StudioPaths
from studio.db import StudioDB, new_id
from studio.job_log import JobLog
from studio.jobs import (
    Batch,
    BatchProgress,
    BatchStatus,
    Conflict,
    Item,
    ItemStatus,
    ItemView,
    NotFound,
    Result,
    StudioError,
    Upload,
)
from studio.uploads import Received, check_audio, check_video
from studio.worker_pool import WorkerPool, audio_features_path, track_path
from studio.zip_export import ZipEntry, unique_arcnames
from tts import registry
from tts.alignment import EngineUnavailable, SpeechError, check_text
from tts.registry import Voice, VoiceRegistry

MAX_PER_PAGE = 100


class DataDirBusy(StudioError):
    status = 409


@dataclass(frozen=True)
class Page:
    results: list[Result]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


class Studio:
    def __init__(self, data_dir: Path, config: StudioConfig | None = None,
                 paths: StudioPaths | None = None) -> None:
        self.config = config or StudioConfig()
        root = self.config.avatar_root
        self.paths = (paths or StudioPaths(Path(data_dir).resolve(),
                                           avatar_root=Path(root).resolve() if root else None)).create()
        self._lock_fd = _lock_folder(self.paths.root)
        self.db = StudioDB(self.paths.db)
        self.log = JobLog(self.paths.log, self.config.log_max_bytes, self.config.log_backups)
        self.pool = WorkerPool(self.db, self.paths, self.config, self.log,
                               after_result=self.apply_retention, after_batch=self.release_batch_files,
                               backend=self.config.render_backend() if self.config.render_backend else None)
        self._tts_lock = asyncio.Lock()
        # The same voices, by the same names, as the live API (tts.registry).
        self.voice_registry = VoiceRegistry(self.config.piper_voice_files, self.config.remote_voices)

    async def start(self) -> None:
        await self.pool.start()
        self.log.event("studio_started", workers=self.pool.size, pid=os.getpid())

    async def stop(self) -> None:
        await self.pool.stop()
        self.log.event("studio_stopped")
        self.log.close()
        self.db.close()
        os.close(self._lock_fd)

    # -- batches ------------------------------------------------------------------------

    def create_batch(self, name: str | None = None, fps: float | None = None) -> Batch:
        name = (name or "").strip()[:200] or time.strftime("Batch %Y-%m-%d %H:%M:%S")
        fps = self.config.fps if fps is None else float(fps)
        if not 1.0 <= fps <= 60.0:
            raise StudioError("fps must be between 1 and 60")
        batch = self.db.create_batch(name, fps)
        self.log.event("batch_created", batch=batch.id, name=batch.name)
        self.pool.prewarm()
        return batch

    def batch(self, batch_id: str) -> Batch:
        return self.db.get_batch(batch_id)

    def progress(self, batch_id: str) -> BatchProgress:
        batch = self.db.get_batch(batch_id)
        audio = self.db.get_upload(batch.audio_upload) if batch.audio_upload else None
        views = [ItemView(item, name) for item, name in self.db.items_with_names(batch_id)]
        return BatchProgress(batch, audio.filename if audio else None, audio.duration if audio else None, views)

    def list_batches(self, limit: int = 20, offset: int = 0) -> list[Batch]:
        return self.db.list_batches(limit, offset)

    def _draft(self, batch_id: str) -> Batch:
        batch = self.db.get_batch(batch_id)
        if batch.status is not BatchStatus.DRAFT:
            raise Conflict(f"batch is {batch.status.value}; files can only be changed before it starts")
        return batch

    def upload_folder(self) -> Path:
        """A fresh folder for one uploaded file."""
        return self.paths.uploads / new_id()

    async def set_audio(self, batch_id: str, received: Received) -> Upload:
        try:
            self._draft(batch_id)   # refused (409): the received file must not stay behind
            probed = await asyncio.to_thread(check_audio, received, self.config.max_audio_seconds)
            # the batch may have been started (or deleted) while the file was checked
            return self._attach_audio(batch_id, received, probed.mime, probed.duration)
        except BaseException:
            shutil.rmtree(received.path.parent, ignore_errors=True)
            raise

    def _attach_audio(self, batch_id: str, received: Received, mime: str, duration: float | None) -> Upload:
        batch = self._draft(batch_id)
        upload = self.db.add_upload("audio", received.filename,
                                    str(received.path.relative_to(self.paths.root)), received.size,
                                    mime, duration)
        self.db.set_batch_audio(batch_id, upload.id)
        if batch.audio_upload:
            self._forget_upload(batch.audio_upload)
        self._name_results(batch_id)
        self.log.event("audio_added", batch=batch_id, file=upload.filename, size=upload.size,
                       seconds=duration)
        return upload

    async def set_audio_from_text(self, batch_id: str, text: str, voice: str | None) -> Upload:
        """Synthesise ``text`` with ``voice`` ("engine:voice"; None = chosen from the text's
        script) and use it as the batch's audio."""
        self._draft(batch_id)
        try:
            text = check_text(text)      # the live API's check: 400 for nothing speakable
            resolved = await asyncio.to_thread(self.voice_registry.resolve, voice, text)
        except SpeechError as exc:
            raise StudioError(str(exc)) from None
        folder = self.upload_folder()
        folder.mkdir(parents=True)
        path = folder / "speech.wav"
        try:
            async with self._tts_lock:  # one synthesis at a time: engines keep global state
                duration = await asyncio.to_thread(_synthesize_wav, resolved, text, path)
        except SpeechError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise StudioError(f"speech synthesis failed: {exc}") from None
        except EngineUnavailable:
            shutil.rmtree(folder, ignore_errors=True)
            self.log.event("tts_unavailable", voice=resolved.id)
            raise StudioError(f"voice {resolved.id} is not available on this server") from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        received = Received(f"{resolved.id.replace(':', '-')}-speech.wav", path,
                            path.stat().st_size, b"")
        try:
            return self._attach_audio(batch_id, received, "audio/wav", duration)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    async def add_videos(self, batch_id: str, received: list[Received]) -> list[Item]:
        """Add avatar videos (or photos) to a draft; all-or-nothing per request."""
        try:
            self._draft(batch_id)   # refused (409): the received files must not stay behind
            probed = [await asyncio.to_thread(check_video, r) for r in received]
            self._draft(batch_id)   # still a draft after the (slow) checks?
        except BaseException:
            for r in received:
                shutil.rmtree(r.path.parent, ignore_errors=True)
            raise
        items = []
        for r, p in zip(received, probed):
            upload = self.db.add_upload("video", r.filename, str(r.path.relative_to(self.paths.root)),
                                        r.size, p.mime, p.duration)
            items.append(self.db.add_item(batch_id, upload.id, out_name=""))
            self.log.event("video_added", batch=batch_id, item=items[-1].id, file=r.filename, size=r.size)
        self._name_results(batch_id)
        return [self.db.get_item(i.id) for i in items]

    def add_local_files(self, batch_id: str, audio: Path, videos: list[Path],
                        taken: Iterable[str] = ()) -> list[Item]:
        """The CLI's way in: reference the user's files where they are (never copied, never
        deleted).  ``taken``: names in the output folder that no result may take."""
        self._draft(batch_id)
        a = self.db.add_upload("audio", audio.name, str(audio.resolve()),
                               audio.stat().st_size, "application/octet-stream", None, owned=False)
        self.db.set_batch_audio(batch_id, a.id)
        items = []
        for v in videos:
            u = self.db.add_upload("video", v.name, str(v.resolve()),
                                   v.stat().st_size, "application/octet-stream", None, owned=False)
            items.append(self.db.add_item(batch_id, u.id, out_name=""))
        self._name_results(batch_id, taken)
        return [self.db.get_item(i.id) for i in items]

    def _name_results(self, batch_id: str, taken: Iterable[str] = ()) -> None:
        """Name each item's result ``<video>__<audio>.mp4``, unique in the batch and
        among ``taken``.  Called whenever a draft's audio or videos change, so the names
        are final when the batch starts (it cannot start without an audio)."""
        batch = self.db.get_batch(batch_id)
        audio = self.db.get_upload(batch.audio_upload).filename if batch.audio_upload else "audio"
        used = set(taken)
        names = {}
        for item, video_name in self.db.items_with_names(batch_id):
            names[item.id] = storage.result_name(video_name, audio, used)
            used.add(names[item.id])
        self.db.set_out_names(names)

    def remove_item(self, batch_id: str, item_id: str) -> None:
        self._draft(batch_id)
        item = self.db.get_item(item_id)
        if item.batch_id != batch_id:
            raise NotFound(f"no item {item_id!r} in batch {batch_id!r}")
        self.db.delete_item(item_id)
        self._forget_upload(item.video_upload)

    def clear_items(self, batch_id: str) -> int:
        self._draft(batch_id)
        items = self.db.items_of(batch_id)
        for item in items:
            self.db.delete_item(item.id)
            self._forget_upload(item.video_upload)
        return len(items)

    def start_batch(self, batch_id: str) -> Batch:
        batch = self._draft(batch_id)
        items = self.db.items_of(batch_id)
        if batch.audio_upload is None:
            raise StudioError("add an audio file (or text) before starting the batch")
        if not items:
            raise StudioError("add at least one video before starting the batch")
        batch = self.db.start_batch(batch_id)
        self.log.event("batch_queued", batch=batch_id, items=len(items))
        self.pool.wake()
        return batch

    def cancel_batch(self, batch_id: str) -> Batch:
        batch = self.db.get_batch(batch_id)
        if batch.status.terminal:
            raise Conflict(f"batch is already {batch.status.value}")
        # Running items see the flag at their next progress report (< 1 s) and stop.
        batch = self.db.cancel_batch(batch_id)
        self.log.event("batch_cancelled", batch=batch_id)
        if not any(i.status is ItemStatus.RUNNING for i in self.db.items_of(batch_id)):
            self.release_batch_files(batch_id)
        self.pool.wake()
        return batch

    def release_batch_files(self, batch_id: str) -> None:
        """A settled batch no longer needs its uploads or audio features: free the disk.

        The upload rows stay, so the history still names every source.
        """
        batch = self.db.get_batch(batch_id)
        upload_ids = [i.video_upload for i in self.db.items_of(batch_id)]
        upload_ids += [batch.audio_upload] if batch.audio_upload else []
        freed = 0
        for upload_id in upload_ids:
            upload = self.db.get_upload(upload_id)
            if upload.owned:
                folder = storage.inside(self.paths.root, upload.path).parent
                if folder.parent == self.paths.uploads.resolve() and folder.exists():
                    freed += storage.folder_bytes(folder)
                    shutil.rmtree(folder, ignore_errors=True)
        for p in (audio_features_path(self.paths, batch_id), track_path(self.paths, batch_id)):
            p.unlink(missing_ok=True)
        self.log.event("batch_files_released", batch=batch_id, bytes=freed)

    def delete_batch(self, batch_id: str) -> None:
        """Forget a batch and its uploads; its results stay in the history."""
        batch = self.db.get_batch(batch_id)
        if batch.status.active or any(i.status is ItemStatus.RUNNING for i in self.db.items_of(batch_id)):
            raise Conflict("cancel the batch before deleting it")
        uploads = [i.video_upload for i in self.db.items_of(batch_id)]
        uploads += [batch.audio_upload] if batch.audio_upload else []
        with self.db.tx():
            self.db.conn.execute("UPDATE batches SET audio_upload=NULL WHERE id=?", (batch_id,))
            self.db.conn.execute("DELETE FROM items WHERE batch_id=?", (batch_id,))
            self.db.delete_batch(batch_id)
        for upload_id in uploads:
            self._forget_upload(upload_id)
        for p in (audio_features_path(self.paths, batch_id), track_path(self.paths, batch_id)):
            p.unlink(missing_ok=True)
        self.log.event("batch_deleted", batch=batch_id)

    def _forget_upload(self, upload_id: str) -> None:
        """Delete an upload no batch refers to any more (and its file, if it is ours)."""
        if self.db.upload_in_use(upload_id):
            return
        upload = self.db.get_upload(upload_id)
        self.db.delete_upload(upload_id)
        if upload.owned:
            folder = storage.inside(self.paths.root, upload.path).parent
            if folder.parent == self.paths.uploads.resolve():
                shutil.rmtree(folder, ignore_errors=True)

    # -- results ------------------------------------------------------------------------

    def results_page(self, page: int = 1, per_page: int = 20, batch_id: str | None = None) -> Page:
        if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            raise StudioError(f"page must be >= 1 and per_page between 1 and {MAX_PER_PAGE}")
        total = self.db.count_results(batch_id)
        rows = self.db.list_results(per_page, (page - 1) * per_page, batch_id)
        return Page(rows, total, page, per_page)

    def result(self, result_id: str) -> Result:
        return self.db.get_result(result_id)

    def result_file(self, result: Result) -> Path:
        path = storage.inside(self.paths.root, result.path)
        if not path.exists():
            raise NotFound(f"the file of result {result.id} is missing")
        return path

    def thumb_file(self, result: Result) -> Path:
        if not result.thumb_path:
            raise NotFound("this result has no thumbnail")
        path = storage.inside(self.paths.root, result.thumb_path)
        if not path.exists():
            raise NotFound("thumbnail missing")
        return path

    def file_by_name(self, batch_id: str, name: str) -> tuple[Result, Path]:
        """A result addressed by its download name; refuses names that leave the folder."""
        storage.check_download_name(batch_id)
        storage.check_download_name(name)
        result = self.db.result_by_name(batch_id, name)
        path = storage.inside(self.paths.results, f"{batch_id}/{name}")
        if not path.exists():
            raise NotFound(f"{name} is missing on disk")
        return result, path

    def delete_results(self, ids: list[str], reason: str = "deleted") -> int:
        n = 0
        for result_id in ids:
            try:
                r = self.db.get_result(result_id)
            except NotFound:
                continue
            self.db.delete_result(result_id)
            for rel in (r.path, r.thumb_path):
                if rel:
                    storage.inside(self.paths.root, rel).unlink(missing_ok=True)
            self.log.event("result_" + reason, batch=r.batch_id, result=r.id, file=r.filename)
            n += 1
        return n

    def zip_entries(self, batch_id: str | None = None, ids: list[str] | None = None) -> list[ZipEntry]:
        if batch_id is not None:
            self.db.get_batch(batch_id)
            results = self.db.list_results(1_000_000, 0, batch_id)
        elif ids:
            results = [self.db.get_result(i) for i in ids]
        else:
            raise StudioError("say which results to zip: a batch or a list of ids")
        if not results:
            raise NotFound("no results to zip")
        several_batches = len({r.batch_id for r in results}) > 1
        names = [f"{r.batch_id}/{r.filename}" if several_batches else r.filename for r in results]
        return [ZipEntry(arc, storage.inside(self.paths.root, r.path))
                for arc, r in zip(unique_arcnames(names), results)
                if storage.inside(self.paths.root, r.path).exists()]

    # -- housekeeping -------------------------------------------------------------------

    def usage(self, disk: storage.DiskUsage | None = None) -> dict:
        """Disk use and limits; pass ``disk`` measured off the event loop (it walks folders)."""
        c = self.config
        disk = disk or storage.disk_usage(self.paths)
        return {
            **disk.to_json(),
            "results": self.db.count_results(),
            "retention": {"max_results": c.retention_max_results, "max_bytes": c.retention_max_bytes,
                          "max_age_days": c.retention_max_age_days},
        }

    def apply_retention(self) -> int:
        c = self.config
        if not (c.retention_max_results or c.retention_max_bytes or c.retention_max_age_days):
            return 0
        files = [storage.ResultFile(r.id, r.size, r.created_at) for r in self.db.results_oldest_first()]
        doomed = storage.over_retention(files, c.retention_max_results, c.retention_max_bytes,
                                        c.retention_max_age_days)
        return self.delete_results(doomed, reason="expired")

    def voices(self) -> list[dict]:
        """The voices ``set_audio_from_text`` takes: the live API's list (``GET /voices``)."""
        return [v.__dict__ for v in self.voice_registry.voices()]


def _synthesize_wav(voice: Voice, text: str, out: Path) -> float:
    from models.audio.pcm import write_wav

    return write_wav(out, registry.synthesize(voice, text))


def _lock_folder(root: Path) -> int:
    """Hold an exclusive lock on the studio folder for this process's lifetime: two
    servers sharing one queue would run (and 'recover') each other's jobs."""
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirBusy(f"{root} is in use by another lipstream process") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
