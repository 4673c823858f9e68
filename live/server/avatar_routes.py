"""Avatars over HTTP: upload a video or photo, follow its preparation, list what's ready.

Preparation (face landmarks on every frame, photo idle motion) takes seconds to
minutes of CPU, so it runs in a process of its own -- one job at a time, so live
sessions keep a core -- and reports progress through a pipe::

    POST /avatars                 multipart "file" (+ "name") -> 202 {"job_id", "progress_url"}
    GET  /avatars/jobs/{job_id}   {"state": "queued|running|done|failed", "progress", "avatar"?, "error"?}
    GET  /avatars                 {"avatars": [AvatarInfo...]}  the live avatars; ?all=1: every prepared one
    GET  /avatars/{id}/preview.jpg  the avatar's first frame, for pickers (?size=64..720, default 160)
    PATCH  /avatars/{id}          {"name"?, "live"?} -> AvatarInfo   rename; add to / take off the live list
    DELETE /avatars/{id}          {"deleted": id}   (the built-in "default" avatar: 409)

The studio prepares its videos into the same cache (a video prepared once is ready for
both), so the cache holds more than the live picker should offer.  An avatar is on the
live list when its info.json says ``"live": true`` (uploads through POST /avatars, or added
with PATCH) or it is the built-in one; AvatarInfo JSON here carries ``live`` and ``preview_url``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from aiohttp import web

from live.http.body import query_int, read_json
from live.http.errors import ApiError, json_error
from live.http.guard import CONTROL, access
from live.http.upload import receive_multipart
from live.server.config import ServerConfig
from live.worker.client import process_context
from models.avatar import avatar_cache
from models.avatar.avatar_cache import DEFAULT_ID

log = logging.getLogger(__name__)

_SPACES = re.compile(r"\s+")
NAME_MAX = 60
_PREVIEW_SIZES = (64, 720)
_ALLOWED_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".m4v", ".avi", ".jpg", ".jpeg", ".png", ".webp", ".bmp"}
_SAFE_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")
_KEEP_FINISHED = 100      # finished jobs remembered for GET /avatars/jobs/{id}


def clean_name(raw: str) -> str:
    """A display name: any script (a Chinese host names avatars in Chinese), no control,
    format or unassigned characters, whitespace collapsed, at most NAME_MAX characters."""
    kept = "".join(c for c in unicodedata.normalize("NFC", raw) if not unicodedata.category(c).startswith("C")
                   or c in "\t\n")
    return _SPACES.sub(" ", kept).strip()[:NAME_MAX].strip()


def _is_live(info: dict) -> bool:
    return info.get("avatar_id") == DEFAULT_ID or info.get("live") is True


def _public_info(info: dict) -> dict:
    """An info.json as clients see it: the AvatarInfo fields, ``live`` and the preview's URL."""
    from models.avatar.avatar import AvatarInfo

    public = AvatarInfo.from_json(info).to_json()
    return {**public, "live": _is_live(info), "preview_url": f"/avatars/{public['avatar_id']}/preview.jpg"}


def _list_infos(cache_root: Path, everything: bool) -> list[dict]:
    infos = [avatar_cache.read_info(Path(cache_root) / i) for i in avatar_cache.list_ids(cache_root)]
    return [_public_info(i) for i in infos if i is not None and (everything or _is_live(i))]


def _update(cache_root: Path, avatar_id: str, changes: dict) -> dict:
    return _public_info(avatar_cache.update_info(avatar_cache.avatar_dir(cache_root, avatar_id), changes))


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
        prepared: list[dict] = []

        def readable() -> None:
            try:
                while ours.poll():
                    kind, value = ours.recv()
                    if kind == "progress":
                        job.progress = value
                    elif kind == "done":
                        # Not "done" for clients yet: it is on the live list only once marked so below.
                        prepared.append(value)
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
        if job.state == "running" and prepared:
            # Uploaded through the live API: on the live list (the studio's own videos are not).
            from models.avatar.avatar_errors import AvatarError

            try:
                job.avatar = await loop.run_in_executor(
                    None, _update, self.config.avatar_dir, prepared[0]["avatar_id"], {"live": True})
                job.progress, job.state = 1.0, "done"
            except AvatarError as e:
                job.state, job.error = "failed", str(e)
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
        everything = request.query.get("all", "") in ("1", "true", "yes")
        infos = await asyncio.get_running_loop().run_in_executor(None, _list_infos, config.avatar_dir, everything)
        return web.json_response({"avatars": infos})

    async def patch(request: web.Request) -> web.Response:
        from models.avatar.avatar_errors import AvatarNotFoundError

        body = await read_json(request)
        changes: dict = {}
        unknown = set(body) - {"name", "live"}
        if unknown:
            raise ApiError(f"unknown field {sorted(unknown)[0][:40]!r}: send \"name\" and/or \"live\"")
        if "name" in body:
            if not isinstance(body["name"], str) or len(body["name"]) > 1000:
                raise ApiError('"name" must be a string (at most 60 characters are kept)')
            changes["name"] = clean_name(body["name"])
            if not changes["name"]:
                raise ApiError('"name" is empty once control characters and spaces are removed')
        if "live" in body:
            if not isinstance(body["live"], bool):
                raise ApiError('"live" must be true or false')
            changes["live"] = body["live"]
        if not changes:
            raise ApiError('send "name" (a new name) and/or "live" (true: offer it in the live picker)')
        avatar_id = request.match_info["avatar_id"]
        if avatar_id == DEFAULT_ID:
            # Built in: the page shows it under a translated name, and it is always on the live list.
            return json_error(409, "the built-in avatar can't be renamed or taken off the live list")
        try:
            info = await asyncio.get_running_loop().run_in_executor(None, _update, config.avatar_dir, avatar_id, changes)
        except AvatarNotFoundError as e:
            return json_error(404, str(e))
        return web.json_response(info)

    async def delete(request: web.Request) -> web.Response:
        from models.avatar.avatar_errors import AvatarNotFoundError

        avatar_id = request.match_info["avatar_id"]
        if avatar_id == DEFAULT_ID:
            return json_error(409, "the built-in avatar can't be deleted")
        from live.server.routes import REGISTRY

        users = [s for s in request.app[REGISTRY] if s.avatar_id == avatar_id and not s.closed]
        if users:
            kinds = sorted({"session" if s.private else f"channel {s.name!r}" for s in users})
            return json_error(409, f"this avatar is on air ({', '.join(kinds)}): end those first", in_use=len(users))
        try:
            await asyncio.get_running_loop().run_in_executor(None, avatar_cache.remove, config.avatar_dir, avatar_id)
        except AvatarNotFoundError as e:
            return json_error(404, str(e))
        return web.json_response({"deleted": avatar_id})

    async def upload(request: web.Request) -> web.Response:
        upload = await receive_multipart(request, dest, config.max_upload_bytes, file_field="file")
        path, fields = upload.files[0].path, {**upload.fields, "filename": upload.files[0].filename}
        if path.suffix.lower() not in _ALLOWED_SUFFIXES:
            path.unlink(missing_ok=True)
            return json_error(
                415, f"unsupported file type {fields.get('filename', '')!r}: upload a video (mp4, mov, webm, mkv) or a photo (jpg, png, webp)"
            )
        name = clean_name(fields.get("name") or Path(fields.get("filename", "avatar")).stem) or "avatar"
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
        size = query_int(request, "size", 160, *_PREVIEW_SIZES)   # 160: a thumbnail; larger: the video's poster
        scale = min(1.0, size / max(image.shape[:2]))
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, jpg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
        return web.Response(body=jpg.tobytes(), content_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    app.router.add_get("/avatars", list_)
    app.router.add_post("/avatars", upload)
    app.router.add_get("/avatars/jobs/{job_id}", job_status)
    app.router.add_get("/avatars/{avatar_id}/preview.jpg", preview)
    app.router.add_patch("/avatars/{avatar_id}", patch)
    app.router.add_delete("/avatars/{avatar_id}", delete)
