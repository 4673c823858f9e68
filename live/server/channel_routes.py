"""HTTP handlers of channels: named, long-lived avatar streams with many viewers and outputs.

    POST   /channels                        {"name"?, "avatar"?, "voice"?, "bitrate_kbps"?, "keyframe_s"?} -> 201 info
    GET    /channels                        {"channels": [info...], "max_channels"}
    GET    /channels/{id}                   info
    GET    /channels/{id}/viewers           each viewer: codec, frames, round trip, loss, jitter, delay
    PATCH  /channels/{id}                   {"name"?, "voice"?} -> info
    DELETE /channels/{id}                   end it
    POST   /channels/{id}/say | /audio | /interrupt, GET /channels/{id}/events   as for sessions
    POST   /channels/{id}/whep              WHEP (RFC 9725): application/sdp offer -> 201 answer + Location
    DELETE /channels/{id}/whep/{viewer_id}  that viewer leaves
    POST   /channels/{id}/outputs           {"url": "rtmp://…"} -> 201 output info
    GET    /channels/{id}/outputs[/{oid}], DELETE /channels/{id}/outputs/{oid}
    GET    /broadcast/{id}?key=…[&bg=green] the OBS Browser Source page

WHEP answers carry CORS headers, so a player on another origin holding the
channel's view key can pull it; everything that changes a channel stays
same-origin and token-guarded (live/http/guard.py).
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web

from live.http.body import read_json
from live.http.errors import ApiError
from live.http.guard import PUBLIC, VIEWER, access, viewer_rights
from live.rtc.signaling import MAX_SDP_BYTES, Offer, SignalingError
from live.server.channel import BROADCAST_VARIANT, Channel, ChannelSpec
from live.server.channel_outputs import MAX_OUTPUTS, RtmpSink
from live.server.routes import CONFIG, REGISTRY, TTS, events, interrupt, missing_avatar, say, speak_audio, stream_from_path
from live.server.remote_channels import REMOTE_CHANNELS
from live.server.session_registry import CapacityError, UnknownSession
from live.server.tts_service import TtsError
from live.worker.protocol import EncoderSettings

log = logging.getLogger(__name__)

_NAME_MAX = 80
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_BROADCAST_KEYFRAME_S = 2.0       # what RTMP platforms ask for
_WHEP_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Expose-Headers": "Location",
}


def _channel(request: web.Request) -> Channel:
    return stream_from_path(request)


def _name(body: dict, default: str) -> str:
    value = body.get("name", default)
    if not isinstance(value, str):
        raise ApiError('"name" must be a string')
    value = _CONTROL_CHARS.sub("", value).strip()
    if len(value) > _NAME_MAX:
        raise ApiError(f'"name" is too long ({len(value)} characters, max {_NAME_MAX})')
    return value or default


def _voice(request: web.Request, body: dict) -> str | None:
    voice = body.get("voice")
    if voice is None:
        return None
    if not isinstance(voice, str):
        raise ApiError('"voice" must be a string like "piper:joe" or "espeak:cmn"')
    try:
        request.app[TTS].resolve(voice)
    except TtsError as e:
        raise ApiError(f'"voice": {e}') from None
    return voice


def _number(body: dict, name: str, lo: float, hi: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ApiError(f'"{name}" must be a number between {lo:g} and {hi:g}')
    return float(value)


async def create_channel(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError('body must be a JSON object {"name"?, "avatar"?, "voice"?}')
    registry = request.app[REGISTRY]
    avatar = body.get("avatar") or "default"
    if not isinstance(avatar, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", avatar):
        raise ApiError('"avatar" must be an avatar id (letters, digits, "-", "_")')
    name, voice = _name(body, ""), _voice(request, body)
    kbps = _number(body, "bitrate_kbps", 200, 8000)
    keyframe_s = _number(body, "keyframe_s", 0.5, 10) or _BROADCAST_KEYFRAME_S
    missing = await missing_avatar(request.app, avatar)
    if missing:
        raise ApiError(missing, status=404)
    if REMOTE_CHANNELS in request.app:   # serve --ray: the channel runs on a node of the cluster
        return await request.app[REMOTE_CHANNELS].create(request, body, avatar)
    try:
        channel_id = registry.reserve()
    except CapacityError as e:
        raise ApiError(str(e), status=503, reason="capacity", max_channels=registry.max_sessions) from None
    spec = ChannelSpec(channel_id, avatar, name or f"channel {channel_id[:4]}", voice, private=False,
                       encoder=EncoderSettings(int(kbps * 1000) if kbps else None, keyframe_s, constant_bitrate=True))
    channel = Channel(spec, request.app[CONFIG], request.app[TTS], on_closed=lambda c: registry.release(c.id))
    registry.add(channel)
    try:
        await asyncio.wait_for(channel.wait_live(), 60.0)
    except Exception:
        await channel.close("failed to start")
        raise ApiError("could not start the channel's engine (see the server log)", status=503,
                       reason="start_failed") from None
    log.info("channel %s (%s) started on avatar %s", channel.id, channel.name, avatar)
    return web.json_response(channel.info(), status=201, headers={"Location": f"/channels/{channel.id}"})


async def list_channels(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    channels = [c.info() for c in registry.channels()]
    if REMOTE_CHANNELS in request.app:   # serve --ray: and those on the cluster
        channels += await request.app[REMOTE_CHANNELS].infos()
    return web.json_response({"channels": channels, "max_channels": registry.max_sessions})


async def get_channel(request: web.Request) -> web.Response:
    return web.json_response(_channel(request).info())


async def list_viewers(request: web.Request) -> web.Response:
    """Each connected viewer: codec, frames, and its link as its receiver reports describe it."""
    channel = _channel(request)
    viewers = [v for v in channel.viewers.values() if v.connected]
    links = await asyncio.gather(*(v.link() for v in viewers), return_exceptions=True)
    # What the server knows of a viewer's delay: when frames leave, plus half the round trip
    # (the player's own jitter buffer comes on top; the page measures that itself).
    lateness = channel.typical_lateness_ms()
    rows = []
    for v, link in zip(viewers, links):
        stats = v.stats()
        row = {k: stats[k] for k in ("viewer_id", "state", "video_codec", "background", "frames_sent", "frames_dropped", "mic")}
        row.update(link if isinstance(link, dict) else {"rtt_ms": None, "lost_pct": None, "jitter_ms": None})
        row["delay_ms"] = round(lateness + (row["rtt_ms"] or 0.0) / 2.0, 1)
        rows.append(row)
    return web.json_response({"viewers": rows})


async def update_channel(request: web.Request) -> web.Response:
    channel = _channel(request)
    body = await read_json(request)
    if not isinstance(body, dict) or not set(body) <= {"name", "voice"}:
        raise ApiError('body must be a JSON object {"name"?, "voice"?}')
    if "name" in body:
        channel.name = _name(body, channel.name)
    if "voice" in body:
        channel.voice = _voice(request, body)
    channel.events.publish("channel", name=channel.name, voice=channel.voice)
    return web.json_response(channel.info())


async def delete_channel(request: web.Request) -> web.Response:
    channel = _channel(request)
    await channel.close("deleted by client")
    return web.json_response({"ended": channel.id})


# -- outputs -------------------------------------------------------------------


def _output(request: web.Request) -> tuple[Channel, RtmpSink]:
    channel = _channel(request)
    sink = channel.outputs.get(request.match_info["output_id"])
    if sink is None:
        raise ApiError(f"no output {request.match_info['output_id'][:40]!r} on this channel", status=404)
    return channel, sink


async def add_output(request: web.Request) -> web.Response:
    channel = _channel(request)
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        raise ApiError('body must be a JSON object {"url": "rtmp://host/app/stream-key"}')
    if len(channel.outputs) >= MAX_OUTPUTS:
        raise ApiError(f"this channel already has {MAX_OUTPUTS} outputs: stop one first", status=409)
    try:
        sink = RtmpSink(channel, body["url"], BROADCAST_VARIANT)
    except ValueError as e:
        raise ApiError(str(e)) from None
    sink.start()
    channel.add_output(sink.output_id, sink)
    log.info("channel %s: output %s to %s", channel.id, sink.output_id, sink.output.masked_url)
    return web.json_response(sink.info(), status=201,
                             headers={"Location": f"/channels/{channel.id}/outputs/{sink.output_id}"})


async def list_outputs(request: web.Request) -> web.Response:
    return web.json_response({"outputs": [o.info() for o in _channel(request).outputs.values()]})


async def get_output(request: web.Request) -> web.Response:
    return web.json_response(_output(request)[1].info())


async def delete_output(request: web.Request) -> web.Response:
    channel, sink = _output(request)
    await channel.remove_output(sink.output_id)
    return web.json_response({"stopped": sink.output_id, **sink.info()})


# -- WHEP ----------------------------------------------------------------------


def _background(request: web.Request) -> str | None:
    raw = request.query.get("bg")
    if raw is None or raw in ("", "none"):
        return None
    from models.avatar.matte import parse_key_colour

    try:
        b, g, r = parse_key_colour(raw)
    except ValueError as e:
        raise ApiError(str(e)) from None
    return f"#{r:02x}{g:02x}{b:02x}"


def whep_error(e: ApiError) -> web.Response:
    """A WHEP route's error, readable by a player on another origin (also the Ray front's)."""
    return web.json_response({"error": str(e), **e.extra}, status=e.status, headers=_WHEP_CORS)


@access(VIEWER)
async def whep_offer(request: web.Request) -> web.Response:
    try:
        return await _whep_offer(request)
    except ApiError as e:
        return whep_error(e)


async def _whep_offer(request: web.Request) -> web.Response:
    try:
        channel = request.app[REGISTRY].get(request.match_info["channel_id"], private=False)
    except UnknownSession as e:
        raise ApiError(str(e), status=404) from None
    operator = viewer_rights(request, channel.view_key)
    if request.content_type != "application/sdp":
        raise ApiError("WHEP takes the SDP offer as the body, with Content-Type: application/sdp", status=415)
    if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
        raise ApiError(f"SDP too large (max {MAX_SDP_BYTES} bytes)", status=413)
    raw = await request.content.read(MAX_SDP_BYTES + 1)
    if len(raw) > MAX_SDP_BYTES:
        raise ApiError(f"SDP too large (max {MAX_SDP_BYTES} bytes)", status=413)
    try:
        sdp = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError("the SDP offer is not UTF-8 text") from None
    if not sdp.lstrip().startswith("v=0"):
        raise ApiError('malformed SDP: it must start with "v=0"')
    background = _background(request)
    if len(channel.viewers) >= request.app[CONFIG].max_viewers:
        raise ApiError(f"this channel has its maximum of {request.app[CONFIG].max_viewers} viewers", status=503,
                       reason="capacity")
    viewer = channel.new_viewer(mic_allowed=operator, background=background)
    try:
        desc = await viewer.open(Offer(sdp, "offer", channel.avatar_id), request.remote, "h264")
    except SignalingError as e:
        await channel.remove_viewer(viewer, "bad offer")
        raise ApiError(str(e)) from None
    except BaseException:
        await asyncio.shield(channel.remove_viewer(viewer, "failed to start"))
        raise
    location = f"/channels/{channel.id}/whep/{viewer.id}"
    return web.Response(text=desc.sdp, status=201, content_type="application/sdp",
                        headers={"Location": location, **_WHEP_CORS})


@access(VIEWER)
async def whep_delete(request: web.Request) -> web.Response:
    try:
        try:
            channel = request.app[REGISTRY].get(request.match_info["channel_id"], private=False)
        except UnknownSession as e:
            raise ApiError(str(e), status=404) from None
        viewer_rights(request, channel.view_key)
        viewer = channel.viewers.get(request.match_info["viewer_id"])
        if viewer is None:
            raise ApiError(f"no viewer {request.match_info['viewer_id'][:40]!r} on this channel", status=404)
    except ApiError as e:
        return whep_error(e)
    await channel.remove_viewer(viewer, "left (WHEP DELETE)")
    return web.Response(status=200, headers=_WHEP_CORS)


@access(PUBLIC)
async def whep_preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=_WHEP_CORS)


@access(PUBLIC)
async def whep_no_trickle(request: web.Request) -> web.Response:
    # Our answer carries every candidate (aiortc gathers before answering): no trickle ICE.
    return web.json_response({"error": "trickle ICE is not supported: the answer has all candidates"},
                             status=405, headers={"Allow": "DELETE", **_WHEP_CORS})


@access(PUBLIC)
async def broadcast_page(request: web.Request) -> web.FileResponse:
    # The page itself holds nothing secret; it asks for the stream with the key from its own URL.
    return web.FileResponse(request.app[CONFIG].static_dir / "broadcast.html", headers={"Cache-Control": "no-cache"})


def setup_channel_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/channels", create_channel)
    r.add_get("/channels", list_channels)
    r.add_get("/channels/{channel_id}", get_channel)
    r.add_patch("/channels/{channel_id}", update_channel)
    r.add_delete("/channels/{channel_id}", delete_channel)
    r.add_get("/channels/{channel_id}/viewers", list_viewers)
    r.add_post("/channels/{channel_id}/say", say)
    r.add_post("/channels/{channel_id}/audio", speak_audio)
    r.add_post("/channels/{channel_id}/interrupt", interrupt)
    r.add_get("/channels/{channel_id}/events", events)
    r.add_post("/channels/{channel_id}/outputs", add_output)
    r.add_get("/channels/{channel_id}/outputs", list_outputs)
    r.add_get("/channels/{channel_id}/outputs/{output_id}", get_output)
    r.add_delete("/channels/{channel_id}/outputs/{output_id}", delete_output)
    r.add_post("/channels/{channel_id}/whep", whep_offer)
    r.add_route("OPTIONS", "/channels/{channel_id}/whep", whep_preflight)
    r.add_delete("/channels/{channel_id}/whep/{viewer_id}", whep_delete)
    r.add_route("OPTIONS", "/channels/{channel_id}/whep/{viewer_id}", whep_preflight)
    r.add_patch("/channels/{channel_id}/whep/{viewer_id}", whep_no_trickle)
    r.add_get("/broadcast/{channel_id}", broadcast_page)
