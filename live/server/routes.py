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
    POST   /voices/preview               {"voice", "text"?} -> audio/wav (a sample for the operator, not on air)
    GET    /health

Every error is JSON ``{"error": "..."}`` (live/http/errors.py): 400 bad input,
401 no token, 403 foreign Origin, 404 unknown session/avatar, 413 too large,
415 wrong body type, 503 at capacity.  Who may call what: live/http/guard.py.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from pathlib import Path

from aiohttp import web

from live.http.body import json_string, read_json
from live.http.errors import ApiError, json_error
from live.http.guard import CONTROL, PUBLIC, access
from live.http.upload import receive_body, receive_multipart
from live.rtc.signaling import SignalingError, parse_offer
from live.server.config import ServerConfig
from live.server.events import stream_events
from live.server.channel import Channel, ChannelSpec
from live.server.loop_monitor import LoopMonitor
from live.server.session_registry import CapacityError, SessionRegistry, UnknownSession
from live.server.tts_service import TtsError, TtsService
from models.audio.pcm import SAMPLE_RATE

log = logging.getLogger(__name__)

CONFIG: web.AppKey[ServerConfig] = web.AppKey("lipstream_config", ServerConfig)
REGISTRY: web.AppKey[SessionRegistry] = web.AppKey("lipstream_registry", SessionRegistry)
TTS: web.AppKey[TtsService] = web.AppKey("lipstream_tts", TtsService)
DEFAULT_AVATAR: web.AppKey[asyncio.Future] = web.AppKey("lipstream_default_avatar", asyncio.Future)
LOOP: web.AppKey[LoopMonitor] = web.AppKey("lipstream_loop_monitor", LoopMonitor)
_RAW_AUDIO_TYPES = ("audio/", "video/", "application/octet-stream")


def stream_from_path(request: web.Request) -> Channel:
    """The private session, or the channel, the path names (the speech handlers serve both)."""
    info = request.match_info
    try:
        if "channel_id" in info:
            return request.app[REGISTRY].get(info["channel_id"], private=False)
        return request.app[REGISTRY].get(info["session_id"])
    except UnknownSession as e:
        raise ApiError(str(e), status=404)


# -- handlers ------------------------------------------------------------------


@access(PUBLIC)
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(request.app[CONFIG].static_dir / "index.html", headers={"Cache-Control": "no-cache"})


@access(PUBLIC)
async def health(request: web.Request) -> web.Response:
    from live.server.remote_channels import REMOTE_CHANNELS   # it imports this module

    registry = request.app[REGISTRY]
    default = request.app[DEFAULT_AVATAR]
    if not default.done():
        avatar_state = "preparing"
    elif default.exception() is not None:
        avatar_state = "failed (see the server log)"
    else:
        avatar_state = "ready"
    return web.json_response({
        "status": "ok",
        "sessions": len(registry.sessions()),
        "channels": len(registry.channels()),                     # hosted by this process
        "max_sessions": registry.max_sessions,
        **({"channels_on_cluster": len(request.app[REMOTE_CHANNELS])} if REMOTE_CHANNELS in request.app else {}),
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
        parsed = parse_offer(await read_json(request))
    except SignalingError as e:
        return json_error(400, str(e))
    missing = await missing_avatar(request.app, parsed.avatar)
    if missing:
        return json_error(404, missing)
    try:
        session_id = registry.reserve()
    except CapacityError as e:
        return json_error(503, str(e), reason="capacity", max_sessions=registry.max_sessions)
    # A session is a private channel: one viewer, whose end is the session's.
    session = Channel(ChannelSpec(session_id, parsed.avatar, private=True), config, request.app[TTS],
                      on_closed=lambda s: registry.release(s.id))
    viewer = session.new_viewer(mic_allowed=True)
    try:
        desc = await viewer.open(parsed, request.remote, config.video_codec)
    except SignalingError as e:
        await session.close("failed to start")
        registry.release(session_id)
        return json_error(400, str(e))
    except BaseException as e:
        await asyncio.shield(session.close("failed to start"))
        registry.release(session_id)
        if isinstance(e, Exception):
            log.exception("session start failed")
            return json_error(503, "could not start the session (see the server log)", reason="start_failed")
        raise
    registry.add(session)
    log.info("session %s offered (avatar %s; its worker starts when the peer connects)", session.id, parsed.avatar)
    return web.json_response({"sdp": desc.sdp, "type": desc.type, "session_id": session.id})


async def missing_avatar(app: web.Application, avatar_id: str) -> str | None:
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
        "count": len(registry.sessions()),
        "max_sessions": registry.max_sessions,
        "event_loop_lag_ms": request.app[LOOP].summary(),
        "sessions": [s.stats() for s in registry.sessions()],
    })


async def get_session(request: web.Request) -> web.Response:
    return web.json_response(stream_from_path(request).stats())


async def delete_session(request: web.Request) -> web.Response:
    session = stream_from_path(request)
    await session.close("deleted by client")
    return web.json_response({"session_id": session.id, "closed": True})


async def say(request: web.Request) -> web.Response:
    session = stream_from_path(request)
    body = await read_json(request)
    text = json_string(body, "text", required=True, max_len=request.app[CONFIG].max_text_chars)
    voice = body.get("voice")
    if voice is not None and not isinstance(voice, str):
        return json_error(400, '"voice" must be a string like "piper:joe" or "espeak:cmn"')
    interrupt = body.get("interrupt", False)
    if not isinstance(interrupt, bool):
        return json_error(400, '"interrupt" must be true or false')
    try:
        u = session.say(text, voice, interrupt=interrupt)
    except TtsError as e:
        return json_error(400, str(e))
    return web.json_response({"utterance_id": u.id, "text": u.text, "queued": session.speech.queued}, status=202)


async def speak_audio(request: web.Request) -> web.Response:
    from models.audio.audio_io import AudioDecodeError, load_audio

    session = stream_from_path(request)
    config = request.app[CONFIG]
    interrupt = request.query.get("interrupt", "false").lower() in ("1", "true", "yes")
    path, label = await _receive_audio(request, config)
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
    return web.json_response({"utterance_id": u.id, "seconds": round(len(samples) / SAMPLE_RATE, 3)}, status=202)


async def _receive_audio(request: web.Request, config: ServerConfig) -> tuple[Path, str]:
    """The uploaded audio (multipart "file", or the raw body) on disk, and a label for it."""
    def dest(_name: str) -> Path:
        return config.upload_dir / f"say-{secrets.token_hex(8)}"

    if request.content_type == "multipart/form-data":
        upload = await receive_multipart(request, dest, config.max_upload_bytes, file_field="file")
        return upload.files[0].path, upload.files[0].filename or "audio"
    if not request.content_type.startswith(_RAW_AUDIO_TYPES):
        raise ApiError("send an audio file: multipart/form-data, or the raw body as audio/* or "
                       "application/octet-stream", status=415)
    saved = await receive_body(request, dest(""), config.max_upload_bytes)
    return saved.path, "audio"


async def interrupt(request: web.Request) -> web.Response:
    session = stream_from_path(request)
    t = time.monotonic()
    result = session.interrupt()
    return web.json_response({**result, "at": t})


@access(CONTROL, query_token=True)   # EventSource cannot send a header
async def events(request: web.Request) -> web.StreamResponse:
    session = stream_from_path(request)
    return await stream_events(request, session.events)


async def voices(request: web.Request) -> web.Response:
    return web.json_response({
        "default": request.app[TTS].default_voice(),
        "voices": [v.__dict__ for v in request.app[TTS].voices()],
    })


_PREVIEW_TEXT = {"cmn": "你好，我是你的数字人主播。", "yue": "你好，我係你嘅數字人主播。",
                 "en": "Hello! I am your digital host, and this is my voice."}
_PREVIEW_MAX_CHARS = 200


async def voice_preview(request: web.Request) -> web.Response:
    """A short sample of a voice as WAV, for the operator's ears only (not on air)."""
    import io

    from models.audio.pcm import write_wav

    body = await read_json(request)
    voice = json_string(body, "voice", required=True, max_len=200)
    text = json_string(body, "text", max_len=_PREVIEW_MAX_CHARS)
    tts = request.app[TTS]
    try:
        resolved = tts.resolve(voice)
        language = resolved.language
        sample = text or _PREVIEW_TEXT.get(language.split("-")[0], _PREVIEW_TEXT["en"])
        clean, resolved = tts.check(sample, voice)
        audio = await tts.synthesize(clean, resolved)
    except TtsError as e:
        return json_error(400, str(e))
    wav = io.BytesIO()
    write_wav(wav, audio)
    return web.Response(body=wav.getvalue(), content_type="audio/wav", headers={"Cache-Control": "no-store"})


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
    r.add_post("/voices/preview", voice_preview)
    r.add_static("/static", config.static_dir, show_index=False)
