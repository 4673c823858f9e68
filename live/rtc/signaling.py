"""Offer/answer: turning a browser's ``POST /offer`` into a negotiated peer connection.

The client offers; the server answers with one video track and (if the client
can receive audio) one audio track, and receives the client's microphone if it
sends one.  Everything about the offer that can be wrong is checked here and
reported as ``SignalingError`` (HTTP 400) with a readable reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError

from live.rtc.aiortc_hooks import guard_ice_checks, negotiated_codecs, offer_direction
from live.rtc.ice_guard import IceGuard

_AVATAR_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_SDP_BYTES = 64 * 1024


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server handed to both peers (none by default: loopback/LAN needs none)."""

    urls: str
    username: str | None = None
    credential: str | None = None


class SignalingError(ValueError):
    """The offer is unusable; the message says why (sent back as HTTP 400)."""


@dataclass(frozen=True)
class Offer:
    sdp: str
    type: str
    avatar: str = "default"


@dataclass
class Negotiated:
    pc: RTCPeerConnection
    video: RTCRtpTransceiver
    audio: RTCRtpTransceiver | None        # None: the client can't receive audio
    mic_expected: bool                     # the client sends a microphone track
    audio_transceiver: RTCRtpTransceiver | None = None   # the audio m-line, whatever its direction
    video_codec: str = "vp8"                             # what the worker must encode: vp8 or h264


def parse_offer(body: Any) -> Offer:
    """Validate the JSON body of ``POST /offer``."""
    if not isinstance(body, dict):
        raise SignalingError('body must be a JSON object {"sdp": ..., "type": "offer", "avatar"?: ...}')
    sdp, kind, avatar = body.get("sdp"), body.get("type"), body.get("avatar", "default")
    if sdp is None or kind is None:
        missing = [k for k in ("sdp", "type") if body.get(k) is None]
        raise SignalingError(f"missing field(s): {', '.join(missing)}")
    if not isinstance(sdp, str) or not isinstance(kind, str):
        raise SignalingError('"sdp" and "type" must be strings')
    if kind != "offer":
        raise SignalingError(f'"type" must be "offer", got {kind!r}')
    if len(sdp) > MAX_SDP_BYTES:
        raise SignalingError(f"SDP too large ({len(sdp)} bytes, max {MAX_SDP_BYTES})")
    if not sdp.lstrip().startswith("v=0"):
        raise SignalingError('malformed SDP: it must start with "v=0"')
    if avatar is None:
        avatar = "default"
    if not isinstance(avatar, str) or not _AVATAR_ID.match(avatar):
        raise SignalingError('"avatar" must be an avatar id (letters, digits, "-", "_")')
    return Offer(sdp, kind, avatar)


def rtc_configuration(ice_servers: tuple[IceServer, ...]) -> RTCConfiguration:
    # An explicit empty list: aiortc would otherwise contact a public STUN server.
    return RTCConfiguration(
        iceServers=[RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in ice_servers]
    )


def _preferred(kind: str, first: str) -> list:
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    wanted = f"{kind}/{first}".lower()
    return sorted(codecs, key=lambda c: 0 if c.mimeType.lower() == wanted else 1)


async def negotiate(
    offer: Offer,
    ice_servers: tuple[IceServer, ...] = (),
    video_codec: str = "VP8",
    on_track: Callable[[MediaStreamTrack], None] | None = None,
    peer: str | None = None,
) -> Negotiated:
    """Apply the client's offer to a new peer connection (the tracks are attached by the caller).

    ``peer`` is the address the offer came from: ICE checks go only to candidates
    it can own (``live.rtc.ice_guard``).  Raises SignalingError for an offer we
    can't answer; closes the connection then.
    """
    guard = IceGuard.for_peer(peer, [s.urls for s in ice_servers])
    pc = RTCPeerConnection(rtc_configuration(ice_servers))
    # Our transceivers exist before the offer is applied so that the codec order
    # (VP8 first: about four times cheaper to encode than H.264 here) takes effect.
    video = pc.addTransceiver("video", direction="sendonly")
    video.setCodecPreferences(_preferred("video", video_codec))
    if on_track is not None:
        pc.on("track", on_track)  # fires inside setRemoteDescription for the client's microphone
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=guard.filter_sdp(offer.sdp), type=offer.type))
    except (ValueError, OperationError, InvalidStateError, InvalidAccessError, InternalError) as e:
        await pc.close()
        raise SignalingError(f"malformed or unsupported SDP offer: {e}") from e
    except Exception as e:  # aiortc's parser raises assorted errors on garbage
        await pc.close()
        raise SignalingError(f"malformed SDP offer ({type(e).__name__}: {e})") from e

    guard_ice_checks(pc, guard)   # before the answer: checks start with it

    def receives(t: RTCRtpTransceiver) -> bool:
        return t.mid is not None and offer_direction(t) in ("sendonly", "sendrecv")

    if not receives(video):
        await pc.close()
        raise SignalingError("the offer has no video section the client can receive (add a recvonly video transceiver)")
    # aiortc made a transceiver for the offer's audio section (if any); we send on it
    # when the client can receive, and read the microphone when it sends one.
    audio = next((t for t in pc.getTransceivers() if t.kind == "audio" and t.mid is not None), None)
    mic = audio is not None and offer_direction(audio) in ("recvonly", "sendrecv")
    if audio is not None and receives(audio):
        audio.direction = "sendrecv"
    codec = _negotiated_video_codec(video)
    if codec is None:
        await pc.close()
        raise SignalingError("the offer supports neither VP8 nor H.264 video")
    return Negotiated(pc, video, audio if audio is not None and receives(audio) else None, mic, audio, codec)


def _negotiated_video_codec(video: RTCRtpTransceiver) -> str | None:
    """The codec aiortc will send with (the first common one, our preference first)."""
    for codec in negotiated_codecs(video):
        name = codec.mimeType.split("/", 1)[-1].lower()
        if name in ("vp8", "h264"):
            return name
    return None


async def answer(pc: RTCPeerConnection) -> RTCSessionDescription:
    """Create and apply the answer (aiortc gathers all ICE candidates first: no trickle).

    The client gets it with ``a=ptime`` asking for 10 ms microphone packets (see ``ask_short_packets``)."""
    await pc.setLocalDescription(await pc.createAnswer())
    local = pc.localDescription
    return RTCSessionDescription(sdp=ask_short_packets(local.sdp), type=local.type)


MIC_PTIME_MS = 10


def ask_short_packets(sdp: str) -> str:
    """Ask the client to send its microphone in ``MIC_PTIME_MS`` packets.

    A browser's Opus packets hold 20 ms by default, so the first sample of each waits 20 ms
    on the client before it is sent.  Where a frame waits for its microphone audio (rather
    than for its moment on the media clock) that wait adds to the voice's delay; at the glass
    the gain was within the spread between sessions (``bench/glass_to_glass.py``).
    ``a=ptime`` is the receiver's wish (RFC 4566); Chromium's Opus encoder follows it.  Only
    audio sections in which we receive get it; aiortc ignores the line in what it sends.
    """
    lines = sdp.split("\r\n")
    out: list[str] = []
    audio = False
    for line in lines:
        if line.startswith("m="):
            audio = line.startswith("m=audio ")
        elif audio and line in ("a=sendrecv", "a=recvonly"):
            out += [line, f"a=ptime:{MIC_PTIME_MS}"]
            continue
        elif audio and line.startswith("a=ptime:"):
            continue
        out.append(line)
    return "\r\n".join(out)
