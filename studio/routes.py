"""HTTP API of the batch studio, mounted under ``/studio`` on the live server's app.

Every error is a JSON ``{"error": "..."}`` with a 4xx status (5xx only for bugs), from the
server's one error layer (live/http/errors.py); access rules: live/http/guard.py.
The API, in the order a client uses it::

    POST   /studio/batches                      {"name"?, "fps"?} -> batch
    POST   /studio/batches/{id}/audio           multipart: one audio (or video) file
    POST   /studio/batches/{id}/tts             {"text", "voice"?: "piper:joe"} (see /studio/voices)
    POST   /studio/batches/{id}/videos          multipart: one or more videos / photos
    DELETE /studio/batches/{id}/videos[/{item}] remove one / all
    POST   /studio/batches/{id}/start | cancel
    GET    /studio/batches/{id}                 progress snapshot
    GET    /studio/batches/{id}/events          the same, live (Server-Sent Events)
    GET    /studio/batches/{id}/zip             every result of the batch as one ZIP
    GET    /studio/results?page=&per_page=&batch=
    GET    /studio/results/{id}/video | thumb.jpg      play / preview
    GET    /studio/files/{batch}/{name}         download one (attachment)
    DELETE /studio/results/{id}   POST /studio/results/delete {"ids": [...]}
    GET    /studio/zip?ids=a,b,c                a selection as one ZIP
    GET    /studio/usage   /studio/logs?lines=N   /studio/config   /studio/voices
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from aiohttp import web

from live.http.body import json_number, json_string, query_int, read_json
from live.http.guard import CONTROL, access
from live.http.sse import SseEvent, setup_sse, stream_sse
from studio.config import StudioConfig
from studio.jobs import NotFound, StudioError, result_json, upload_json
from studio.service import Studio
from studio.storage import disk_usage
from studio.uploads import receive_files
from studio.zip_export import iter_zip

log = logging.getLogger(__name__)

STUDIO: web.AppKey[Studio] = web.AppKey("lipstream_studio", Studio)
# Settings may be replaced on an app until it starts (tests, embedding apps):
# ``app[STUDIO_CONFIG] = StudioConfig(...)`` after ``create_app``.
STUDIO_CONFIG: web.AppKey[StudioConfig] = web.AppKey("lipstream_studio_config", StudioConfig)
MAX_LOG_LINES = 1000
MAX_PAGE = 1_000_000
MAX_OFFSET = 10_000_000

# GETs the browser makes by itself (EventSource, <video>/<img> sources, download links) may carry ?token=.
_browser_loaded = access(CONTROL, query_token=True)


def _studio(request: web.Request) -> Studio:
    return request.app[STUDIO]


# -- batches ---------------------------------------------------------------------------------

async def create_batch(request: web.Request) -> web.Response:
    body = await read_json(request, optional=True)
    name = json_string(body, "name", max_len=1000)
    fps = json_number(body, "fps", 1.0, 60.0)
    batch = _studio(request).create_batch(name, fps)
    return web.json_response(_studio(request).progress(batch.id).to_json(), status=201)


async def list_batches(request: web.Request) -> web.Response:
    studio = _studio(request)
    limit = query_int(request, "limit", 20, 1, 100)
    offset = query_int(request, "offset", 0, 0, MAX_OFFSET)
    batches = [studio.progress(b.id).to_json() for b in studio.list_batches(limit, offset)]
    return web.json_response({"batches": batches, "total": studio.db.count_batches()})


async def get_batch(request: web.Request) -> web.Response:
    return web.json_response(_studio(request).progress(request.match_info["batch"]).to_json())


async def delete_batch(request: web.Request) -> web.Response:
    _studio(request).delete_batch(request.match_info["batch"])
    return web.json_response({"deleted": True})


async def upload_audio(request: web.Request) -> web.Response:
    studio = _studio(request)
    batch_id = request.match_info["batch"]
    studio.batch(batch_id)  # 404 before reading a large body
    # One file: a second one is refused while it streams in, not after it was saved.
    files = await receive_files(request, studio.upload_folder, studio.config.max_upload_bytes, max_files=1)
    if len(files) != 1:
        for f in files:
            shutil.rmtree(f.path.parent, ignore_errors=True)
        raise StudioError("send exactly one audio file")
    upload = await studio.set_audio(batch_id, files[0])
    return web.json_response(upload_json(upload), status=201)


async def tts_audio(request: web.Request) -> web.Response:
    body = await read_json(request)
    text, voice = body.get("text"), body.get("voice")
    if not isinstance(text, str) or not isinstance(voice, (str, type(None))):
        raise StudioError('send {"text": "...", "voice": "engine:voice"}')
    upload = await _studio(request).set_audio_from_text(request.match_info["batch"], text, voice)
    return web.json_response(upload_json(upload), status=201)


async def upload_videos(request: web.Request) -> web.Response:
    studio = _studio(request)
    batch_id = request.match_info["batch"]
    studio.batch(batch_id)
    files = await receive_files(request, studio.upload_folder, studio.config.max_upload_bytes)
    items = await studio.add_videos(batch_id, files)
    names = {i.id: f.filename for i, f in zip(items, files)}
    return web.json_response({"items": [{"id": i.id, "position": i.position, "video_name": names[i.id],
                                         "out_name": i.out_name} for i in items]}, status=201)


async def remove_video(request: web.Request) -> web.Response:
    _studio(request).remove_item(request.match_info["batch"], request.match_info["item"])
    return web.json_response({"removed": 1})


async def clear_videos(request: web.Request) -> web.Response:
    return web.json_response({"removed": _studio(request).clear_items(request.match_info["batch"])})


async def start_batch(request: web.Request) -> web.Response:
    studio = _studio(request)
    batch = studio.start_batch(request.match_info["batch"])
    return web.json_response(studio.progress(batch.id).to_json())


async def cancel_batch(request: web.Request) -> web.Response:
    studio = _studio(request)
    batch = studio.cancel_batch(request.match_info["batch"])
    return web.json_response(studio.progress(batch.id).to_json())


@_browser_loaded
async def batch_events(request: web.Request) -> web.StreamResponse:
    """Progress as Server-Sent Events: a ``progress`` event whenever something changed,
    then ``end`` once the batch and all its items are settled."""
    studio = _studio(request)
    batch_id = request.match_info["batch"]
    studio.progress(batch_id)  # 404 as JSON, before the stream starts
    sent: dict | None = None
    finished = False

    async def next_event() -> SseEvent | None:
        nonlocal sent, finished
        while not finished:
            try:
                snap = studio.progress(batch_id)
            except NotFound:   # the batch was deleted while we watched it
                finished = True
                return SseEvent("end", {"deleted": True})
            data = snap.to_json()
            if data != sent:
                sent = data
                return SseEvent("progress", data)
            if snap.batch.status.terminal and not snap.current:
                finished = True
                return SseEvent("end", {})
            await asyncio.sleep(studio.config.progress_interval_s)
        return None

    return await stream_sse(request, next_event)


# -- results ---------------------------------------------------------------------------------

async def list_results(request: web.Request) -> web.Response:
    studio = _studio(request)
    page = studio.results_page(query_int(request, "page", 1, 1, MAX_PAGE),
                               query_int(request, "per_page", 20, 1, 1000),
                               request.query.get("batch") or None)
    return web.json_response({"results": [result_json(r) for r in page.results], "total": page.total,
                              "page": page.page, "per_page": page.per_page, "pages": page.pages})


async def get_result(request: web.Request) -> web.Response:
    return web.json_response(result_json(_studio(request).result(request.match_info["result"])))


@_browser_loaded
async def result_video(request: web.Request) -> web.StreamResponse:
    studio = _studio(request)
    path = studio.result_file(studio.result(request.match_info["result"]))
    # FileResponse answers Range requests, so the page's <video> can seek.
    return web.FileResponse(path, headers={"Content-Type": "video/mp4"})


@_browser_loaded
async def result_thumb(request: web.Request) -> web.StreamResponse:
    studio = _studio(request)
    path = studio.thumb_file(studio.result(request.match_info["result"]))
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg",
                                           "Cache-Control": "max-age=86400"})


@_browser_loaded
async def download_file(request: web.Request) -> web.StreamResponse:
    studio = _studio(request)
    _result, path = studio.file_by_name(request.match_info["batch"], request.match_info["name"])
    return web.FileResponse(path, headers={
        "Content-Type": "video/mp4", "Content-Disposition": f'attachment; filename="{path.name}"'})


async def delete_result(request: web.Request) -> web.Response:
    studio = _studio(request)
    studio.result(request.match_info["result"])  # 404 if unknown
    return web.json_response({"deleted": studio.delete_results([request.match_info["result"]])})


async def delete_results(request: web.Request) -> web.Response:
    ids = (await read_json(request)).get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise StudioError('send {"ids": ["...", ...]}')
    return web.json_response({"deleted": _studio(request).delete_results(ids)})


async def _stream_zip(request: web.Request, entries, name: str) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/zip",
                                       "Content-Disposition": f'attachment; filename="{name}"'})
    await resp.prepare(request)
    for chunk in iter_zip(entries):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


@_browser_loaded
async def batch_zip(request: web.Request) -> web.StreamResponse:
    studio = _studio(request)
    batch = studio.batch(request.match_info["batch"])
    entries = studio.zip_entries(batch_id=batch.id)
    return await _stream_zip(request, entries, f"lipstream-{batch.id}.zip")


@_browser_loaded
async def selection_zip(request: web.Request) -> web.StreamResponse:
    ids = [i for i in request.query.get("ids", "").split(",") if i]
    if not ids:
        raise StudioError("give the results to zip as ?ids=a,b,c")
    entries = _studio(request).zip_entries(ids=ids)
    return await _stream_zip(request, entries, f"lipstream-{len(entries)}-results.zip")


# -- housekeeping ----------------------------------------------------------------------------

async def get_usage(request: web.Request) -> web.Response:
    studio = _studio(request)
    disk = await asyncio.to_thread(disk_usage, studio.paths)
    return web.json_response(studio.usage(disk))


async def get_logs(request: web.Request) -> web.Response:
    n = query_int(request, "lines", 100, 1, MAX_LOG_LINES)
    studio = _studio(request)
    return web.json_response({"lines": studio.log.tail(n), "path": str(studio.paths.log)})


async def get_config(request: web.Request) -> web.Response:
    studio = _studio(request)
    c = studio.config
    return web.json_response({"workers": studio.pool.size, "max_upload_bytes": c.max_upload_bytes,
                              "max_audio_seconds": c.max_audio_seconds, "fps": c.fps})


async def get_voices(request: web.Request) -> web.Response:
    return web.json_response({"voices": await asyncio.to_thread(_studio(request).voices)})


async def not_found(request: web.Request) -> web.Response:
    raise NotFound(f"no studio endpoint {request.method} {request.path}")


# -- wiring ----------------------------------------------------------------------------------

def setup_studio(app: web.Application, data_dir: Path, config: StudioConfig | None = None) -> None:
    """Register the studio API on ``app``; the queue runs from app start-up to clean-up."""
    setup_sse(app)

    async def lifetime(app: web.Application):
        studio = Studio(Path(data_dir), app.get(STUDIO_CONFIG, config))
        app[STUDIO] = studio
        await studio.start()
        yield
        await studio.stop()

    app.cleanup_ctx.append(lifetime)
    r = app.router
    r.add_get("/studio/config", get_config)
    r.add_get("/studio/voices", get_voices)
    r.add_post("/studio/batches", create_batch)
    r.add_get("/studio/batches", list_batches)
    r.add_get("/studio/batches/{batch}", get_batch)
    r.add_delete("/studio/batches/{batch}", delete_batch)
    r.add_post("/studio/batches/{batch}/audio", upload_audio)
    r.add_post("/studio/batches/{batch}/tts", tts_audio)
    r.add_post("/studio/batches/{batch}/videos", upload_videos)
    r.add_delete("/studio/batches/{batch}/videos", clear_videos)
    r.add_delete("/studio/batches/{batch}/videos/{item}", remove_video)
    r.add_post("/studio/batches/{batch}/start", start_batch)
    r.add_post("/studio/batches/{batch}/cancel", cancel_batch)
    r.add_get("/studio/batches/{batch}/events", batch_events)
    r.add_get("/studio/batches/{batch}/zip", batch_zip)
    r.add_get("/studio/results", list_results)
    r.add_post("/studio/results/delete", delete_results)
    r.add_get("/studio/results/{result}", get_result)
    r.add_delete("/studio/results/{result}", delete_result)
    r.add_get("/studio/results/{result}/video", result_video)
    r.add_get("/studio/results/{result}/thumb.jpg", result_thumb)
    r.add_get("/studio/files/{batch}/{name:.*}", download_file)
    r.add_get("/studio/zip", selection_zip)
    r.add_get("/studio/usage", get_usage)
    r.add_get("/studio/logs", get_logs)
    # Anything else under /studio answers JSON too (never aiohttp's text 404).
    r.add_route("*", "/studio/{tail:.*}", not_found)
