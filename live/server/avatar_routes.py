"""Avatars over HTTP: upload a video or photo, follow its preparation, list what's ready.

Preparation (face landmarks on every frame, photo idle motion) takes seconds to
minutes of CPU, so it runs in a process of its own -- one job at a time, so live
sessions keep a core -- and reports progress through a pipe::

    POST /avatars                 multipart "file" (+ "name") -> 202 {"job_id", "progress_url"}
    GET  /avatars/jobs/{job_id}   {"state": "queued|running|done|failed", "progress", "avatar"?, "error"?}
    GET  /avatars                 {"avatars": [AvatarInfo...]}
    GET  /avatars/{id}/preview.jpg  the avatar's first frame, for pickers
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import re
import secrets
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from aiohttp import web

from live.http.errors import json_error
from live.http.guard import CONTROL, access
from live.http.upload import receive_multipart
from live.server.config import ServerConfig
from live.worker.client import process_context

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9 ._-]+")
_ALLOWED_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".m4v", ".avi", ".jpg", ".jpeg", ".png", ".webp", ".bmp"}
_SAFE_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")
_KEEP_FINISHED = 100      # finished jobs remembered for GET /avatars/jobs/{id}


@dataclass
class AvatarJob:
    job_id: str
    name: str
    upload: Path
    state: str = "queued"
    progress: float = 0.0
    avatar: dict | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)

    def to_json(self) -> dict:
        d = {"job_id": self.job_id, "name": self.name, "state": self.state, "progress": round(self.progress, 3)}
        if self.avatar is not None:
            d["avatar"] = self.avatar
        if self.error is not None:
            d["error"] = self.error
        return d


def _prepare_in_child(conn: Connection, source: str, cache_root: str, name: str, fps: float) -> None:
    """Child process: prepare the avatar, streaming progress to the server."""
    from models.avatar.avatar import prepare_avatar
    from models.avatar.avatar_errors import AvatarError

    last = [0.0]

    def progress(f: float) -> None:
        if f - last[0] >= 0.01 or f >= 1.0:
            last[0] = f
            conn.send(("progress", float(f)))

    try:
        info = prepare_avatar(Path(source), Path(cache_root), name=name, fps=fps, progress=progress)
        conn.send(("done", info.to_json()))
    except AvatarError as e:
        conn.send(("error", str(e)))
    except Exception:  # a bug in preparation must still end the job, without server details in its reason
        log.exception("avatar preparation failed")
        conn.send(("error", "preparation failed (see the server log)"))
    finally:
        conn.close()


class AvatarJobs:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.jobs: dict[str, AvatarJob] = {}
        self._one_at_a_time = asyncio.Semaphore(1)
        self._tasks: set[asyncio.Task] = set()

    def submit(self, upload: Path, name: str) -> AvatarJob:
        job = AvatarJob(secrets.token_hex(8), name, upload)
        self.jobs[job.job_id] = job
        finished = [j for j in self.jobs.values() if j.state in ("done", "failed")]
        for old in sorted(finished, key=lambda j: j.created)[: max(0, len(finished) - _KEEP_FINISHED)]:
            del self.jobs[old.job_id]
        task = asyncio.create_task(self._run(job), name=f"avatar-job-{job.job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: AvatarJob) -> None:
        async with self._one_at_a_time:
            job.state = "running"
            try:
                await self._prepare(job)
            finally:
                job.upload.unlink(missing_ok=True)

    async def _prepare(self, job: AvatarJob) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = mp.Pipe(duplex=False)
        ctx = process_context()
        proc = ctx.Process(
            target=_prepare_in_child,
            args=(theirs, str(job.upload), str(self.config.avatar_dir), job.name, self.config.fps),
            daemon=True,
            name="lipstream-avatar-prep",
        )
        await loop.run_in_executor(None, proc.start)
        theirs.close()
        finished = asyncio.Event()

        def readable() -> None:
            try:
                while ours.poll():
                    kind, value = ours.recv()
                    if kind == "progress":
                        job.progress = value
                    elif kind == "done":
                        job.avatar, job.progress, job.state = value, 1.0, "done"
                    else:
                        job.error, job.state = value, "failed"
            except (EOFError, OSError):
                finished.set()

        loop.add_reader(ours.fileno(), readable)
        try:
            await finished.wait()
        except asyncio.CancelledError:
            proc.kill()
            raise
        finally:
            loop.remove_reader(ours.fileno())
            ours.close()
            await loop.run_in_executor(None, proc.join, 5)
        if job.state == "running":
            job.state, job.error = "failed", f"preparation process died (exit code {proc.exitcode})"

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def setup_avatar_routes(app: web.Application, config: ServerConfig, jobs_key: web.AppKey) -> None:
    def dest(filename: str) -> Path:
        suffix = Path(filename).suffix.lower()
        return config.upload_dir / f"{secrets.token_hex(8)}{suffix if _SAFE_SUFFIX.fullmatch(suffix) else ''}"

    async def list_(request: web.Request) -> web.Response:
        from models.avatar.avatar import list_avatars

        infos = await asyncio.get_running_loop().run_in_executor(None, list_avatars, config.avatar_dir)
        return web.json_response({"avatars": [i.to_json() for i in infos]})

    async def upload(request: web.Request) -> web.Response:
        upload = await receive_multipart(request, dest, config.max_upload_bytes, file_field="file")
        path, fields = upload.files[0].path, {**upload.fields, "filename": upload.files[0].filename}
        if path.suffix.lower() not in _ALLOWED_SUFFIXES:
            path.unlink(missing_ok=True)
            return json_error(
                415, f"unsupported file type {fields.get('filename', '')!r}: upload a video (mp4, mov, webm, mkv) or a photo (jpg, png, webp)"
            )
        name = _SAFE_NAME.sub("", fields.get("name") or Path(fields.get("filename", "avatar")).stem)[:60] or "avatar"
        job = request.app[jobs_key].submit(path, name)
        return web.json_response(
            {**job.to_json(), "progress_url": f"/avatars/jobs/{job.job_id}"}, status=202
        )

    async def job_status(request: web.Request) -> web.Response:
        job = request.app[jobs_key].jobs.get(request.match_info["job_id"])
        if job is None:
            return json_error(404, f"no avatar job {request.match_info['job_id']!r}")
        return web.json_response(job.to_json())

    @access(CONTROL, query_token=True)   # an <img> source
    async def preview(request: web.Request) -> web.Response:
        import cv2

        from models.avatar.avatar import load_avatar
        from models.avatar.avatar_errors import AvatarError

        avatar_id = request.match_info["avatar_id"]
        try:
            avatar = await asyncio.get_running_loop().run_in_executor(
                None, lambda: load_avatar(avatar_id, config.avatar_dir, raw_frames=False))
        except AvatarError as e:
            return json_error(404, str(e))
        image = avatar.frame_readonly(0)
        scale = 160 / max(image.shape[:2])
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, jpg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
        return web.Response(body=jpg.tobytes(), content_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    app.router.add_get("/avatars", list_)
    app.router.add_post("/avatars", upload)
    app.router.add_get("/avatars/jobs/{job_id}", job_status)
    app.router.add_get("/avatars/{avatar_id}/preview.jpg", preview)
