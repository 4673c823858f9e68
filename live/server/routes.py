"""HTTP handlers of the live server.

    POST   /offer                        {"sdp", "type": "offer", "avatar"?} -> {"sdp", "type", "session_id"}
    GET    /sessions                     {"count", "max_sessions", "sessions": [stats...]}
    GET    /sessions/{id}                stats of one session
    DELETE /sessions/{id}                end it (frees its worker process)
    POST   /sessions/{id}/say            {"text", "voice"?, "interrupt"?} -> 202 {"utterance_id"}
    POST   /sessions/{id}/audio          an audio file (multipart "file", or the raw body) -> 202
    POST   /sessions/{id}/interrupt      stop speaking now
    GET    /sessions/{id}/events         Server-Sent Events
    GET    /voices                       TTS voices
    GET    /health

Every error is JSON ``{"error": "..."}`` with a 4xx status: 400 bad input,
404 unknown session/avatar, 413 too large, 503 at capacity.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from live.server.avatar_routes import UploadTooLarge, receive_upload
from live.server.config import ServerConfig
from live.server.events import stream_events
from live.server.live_session import LiveSession
from live.server.loop_monitor import LoopMonitor
from live.server.session_registry import CapacityError, SessionRegistry, UnknownSession
from live.rtc.signaling import SignalingError, parse_offer
from live.server.tts_service import TtsError, TtsService

log = logging.getLogger(__name__)

CONFIG: web.AppKey[ServerConfig] = web.AppKey("lipstream_config", ServerConfig)
REGISTRY: web.AppKey[SessionRegistry] = web.AppKey("lipstream_registry", SessionRegistry)
TTS: web.AppKey[TtsService] = web.AppKey("lipstream_tts", TtsService)
DEFAULT_AVATAR: web.AppKey[asyncio.Future] = web.AppKey("lipstream_default_avatar", asyncio.Future)
LOOP: web.AppKey[LoopMonitor] = web.AppKey("lipstream_loop_monitor", LoopMonitor)


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler):
    """Every failure leaves as JSON; an unexpected exception is a 500 with a message, not a traceback page."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == "application/json":
            raise
        return json_error(e.status, e.reason if e.text is None or e.text.startswith(f"{e.status}:") else e.text)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, f"internal error: {type(e).__name__}: {e}")


async def _json_body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        raise web.HTTPBadRequest(reason="body must be valid JSON")
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    return body


def _session(request: web.Request) -> LiveSession:
    try:
        return request.app[REGISTRY].get(request.match_info["session_id"])
    except UnknownSession as e:
        raise web.HTTPNotFound(reason=str(e))


# -- handlers ------------------------------------------------------------------


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[CONFIG].static_dir / "index.html", headers={"Cache-Control": "no-cache"})


async def health(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    default = request.app[DEFAULT_AVATAR]
    if not default.done():
        avatar_state = "preparing"
    elif default.exception() is not None:
        avatar_state = f"failed: {default.exception()}"
    else:
        avatar_state = "ready"
    return web.json_response({
        "status": "ok",
        "sessions": len(registry),
        "max_sessions": registry.max_sessions,
        "default_avatar": avatar_state,
        "fps": request.app[CONFIG].fps,
        "event_loop_lag_ms": request.app[LOOP].summary(),
        "ice_servers": [
            {k: v for k, v in vars(s).items() if v is not None} for s in request.app[CONFIG].ice_servers
        ],
    })


async def offer(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    registry = request.app[REGISTRY]
    try:
        parsed = parse_offer(await _json_body(request))
    except SignalingError as e:
        return json_error(400, str(e))
    missing = await _missing_avatar(request.app, parsed.avatar)
    if missing:
        return json_error(404, missing)
    try:
        session_id = registry.reserve()
    except CapacityError as e:
        return json_error(503, str(e), reason="capacity", max_sessions=registry.max_sessions)
    session = LiveSession(session_id, parsed.avatar, config, request.app[TTS], on_closed=lambda s: registry.release(s.id))
    try:
        desc = await session.open(parsed)
    except SignalingError as e:
        registry.release(session_id)
        return json_error(400, str(e))
    except BaseException as e:
        registry.release(session_id)
        if isinstance(e, Exception):
            log.exception("session start failed")
            return json_error(503, f"could not start the session: {e}", reason="start_failed")
        raise
    registry.add(session)
    log.info("session %s started (avatar %s, worker pid %s)", session.id, parsed.avatar, session.worker.pid)
    return web.json_response({"sdp": desc.sdp, "type": desc.type, "session_id": session.id})


async def _missing_avatar(app: web.Application, avatar_id: str) -> str | None:
    """None if the avatar can be used, else the 404 message."""
    if avatar_id == "default":
        try:
            await asyncio.shield(app[DEFAULT_AVATAR])
        except Exception as e:
            return f"the default avatar is unavailable: {e}"
        return None
    from models.avatar.avatar_cache import is_valid_id, read_info

    cache_root = app[CONFIG].avatar_dir
    if not is_valid_id(avatar_id) or read_info(cache_root / avatar_id) is None:
        return f"no avatar {avatar_id!r} (GET /avatars lists them; POST /avatars prepares one)"
    return None


async def list_sessions(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    return web.json_response({
        "count": len(registry),
        "max_sessions": registry.max_sessions,
        "event_loop_lag_ms": request.app[LOOP].summary(),
        "sessions": [s.stats() for s in registry],
    })


async def get_session(request: web.Request) -> web.Response:
    return web.json_response(_session(request).stats())


async def delete_session(request: web.Request) -> web.Response:
    session = _session(request)
    await session.close("deleted by client")
    return web.json_response({"session_id": session.id, "closed": True})


async def say(request: web.Request) -> web.Response:
    session = _session(request)
    body = await _json_body(request)
    text, voice, interrupt = body.get("text"), body.get("voice"), body.get("interrupt", False)
    if not isinstance(text, str):
        return json_error(400, '"text" is required and must be a string')
    if voice is not None and not isinstance(voice, str):
        return json_error(400, '"voice" must be a string like "piper:joe" or "espeak:cmn"')
    if not isinstance(interrupt, bool):
        return json_error(400, '"interrupt" must be true or false')
    limit = request.app[CONFIG].max_text_chars
    if len(text) > limit:
        return json_error(413, f"text too long ({len(text)} characters, max {limit})")
    try:
        u = session.say(text, voice, interrupt=interrupt)
    except TtsError as e:
        return json_error(400, str(e))
    return web.json_response({"utterance_id": u.id, "text": u.text, "queued": session.speech.queued}, status=202)


async def speak_audio(request: web.Request) -> web.Response:
    from models.audio.audio_io import AudioDecodeError, load_audio

    session = _session(request)
    config = request.app[CONFIG]
    interrupt = request.query.get("interrupt", "false").lower() in ("1", "true", "yes")
    try:
        if request.content_type.startswith("multipart/"):
            path, fields = await receive_upload(request, config.upload_dir, config.max_upload_bytes)
            label = fields.get("filename", "audio")
        else:
            path, label = await _save_raw_body(request, config), "audio"
    except UploadTooLarge as e:
        return json_error(413, str(e))
    try:
        loop = asyncio.get_running_loop()
        samples = await loop.run_in_executor(None, lambda: load_audio(path, max_seconds=config.max_audio_s))
    except AudioDecodeError as e:
        return json_error(400, f"cannot use this audio: {e}")
    finally:
        path.unlink(missing_ok=True)
    try:
        u = session.play_audio(samples, label, interrupt=interrupt)
    except TtsError as e:
        return json_error(400, str(e))
    return web.json_response({"utterance_id": u.id, "seconds": round(len(samples) / 16000, 3)}, status=202)


async def _save_raw_body(request: web.Request, config: ServerConfig) -> Path:
    limit = config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise UploadTooLarge(f"upload of {request.content_length} bytes exceeds the limit of {limit} bytes")
    config.upload_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="say-", dir=config.upload_dir)
    path = Path(name)
    size = 0
    try:
        with open(fd, "wb") as out:
            async for chunk in request.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > limit:
                    raise UploadTooLarge(f"upload exceeds the limit of {limit} bytes")
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise web.HTTPBadRequest(reason="the request body is empty: send an audio file")
    return path


async def interrupt(request: web.Request) -> web.Response:
    session = _session(request)
    t = time.monotonic()
    result = session.interrupt()
    return web.json_response({**result, "at": t})


async def events(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    return await stream_events(request, session.events)


async def voices(request: web.Request) -> web.Response:
    return web.json_response({
        "default": "piper:joe",
        "voices": [v.__dict__ for v in request.app[TTS].voices()],
    })


def setup_routes(app: web.Application, config: ServerConfig) -> None:
    r = app.router
    r.add_get("/", index)
    r.add_get("/health", health)
    r.add_post("/offer", offer)
    r.add_get("/sessions", list_sessions)
    r.add_get("/sessions/{session_id}", get_session)
    r.add_delete("/sessions/{session_id}", delete_session)
    r.add_post("/sessions/{session_id}/say", say)
    r.add_post("/sessions/{session_id}/audio", speak_audio)
    r.add_post("/sessions/{session_id}/interrupt", interrupt)
    r.add_get("/sessions/{session_id}/events", events)
    r.add_get("/voices", voices)
    r.add_static("/static", config.static_dir, show_index=False)
