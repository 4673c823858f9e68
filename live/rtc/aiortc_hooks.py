"""Every place lipstream reaches into aiortc's (or aioice's) private internals.

aiortc has no public API for what a live avatar needs: frames arrive already
encoded from the worker, the microphone's packets must bypass aiortc's decoder,
and the server must choose which ICE candidates it talks to.  Each hook below
names the private attribute it uses and the version it was written against.
``check_versions()`` runs at server start-up and warns when the installed
versions differ from the tested ones; every hook also reports (returns False /
logs a warning) when the attribute it needs is missing, and
``tests/test_rtc_hooks.py`` fails when a hook stops having its effect.

Tested with aiortc 1.16 and aioice 0.13 (pinned in pyproject.toml).

| hook                        | private attribute                                   | why |
|-----------------------------|-----------------------------------------------------|-----|
| ``install_mic_tap``         | ``RTCRtpReceiver._RTCRtpReceiver__jitter_buffer``;  | mic Opus packets go to the worker as they arrive, not after aiortc's 80 ms prefetch |
|                             | ``JitterBuffer._origin/_packets/_capacity/_remove_frame`` (``live.rtc.mic_jitter``) | |
| ``forward_keyframe_requests`` | ``RTCRtpSender._send_keyframe``                   | a viewer's PLI/FIR reaches the worker's encoder (aiortc only flags its own) |
| ``receiver_bitrate_estimate`` | ``RTCRtpSender._RTCRtpSender__encoder.target_bitrate`` | the viewer's REMB estimate, which aiortc hands to its packetiser |
| ``offer_direction``         | ``RTCRtpTransceiver._offerDirection``               | what the client offered (send/receive mic, receive video) |
| ``negotiated_codecs``       | ``RTCRtpTransceiver._codecs``                       | the video codec aiortc will send with, so the worker encodes it |
| ``guard_ice_checks``        | ``RTCIceGatherer._connection`` (aioice ``Connection.check_start``) | only checks to addresses the peer owns, rate-limited (``live.rtc.ice_guard``) |
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver
from aiortc.jitterbuffer import JitterBuffer

from live.rtc.ice_guard import IceGuard
from live.rtc.mic_jitter import MicJitterBuffer, OnPacket

log = logging.getLogger(__name__)

TESTED_VERSIONS = {"aiortc": "1.16", "aioice": "0.13"}   # major.minor


def check_versions() -> list[str]:
    """Warnings (also logged) for each installed package whose minor version was not tested."""
    problems = []
    for package, tested in TESTED_VERSIONS.items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            installed = "missing"
        if ".".join(installed.split(".")[:2]) != tested:
            problems.append(
                f"{package} {installed} is installed but lipstream's aiortc hooks were tested with {tested}.x; "
                f"live sessions may lose the mic tap, keyframe requests or the ICE guard "
                f"(see live/rtc/aiortc_hooks.py)"
            )
    for p in problems:
        log.warning("%s", p)
    return problems


# -- microphone -------------------------------------------------------------------


def install_mic_tap(receiver: object, on_packet: OnPacket) -> bool:
    """Give ``receiver`` (the microphone's RTCRtpReceiver) our jitter buffer, which
    hands each Opus packet to ``on_packet`` as soon as it is next in sequence.

    aiortc 1.16: the receiver's buffer is ``__jitter_buffer``, created in its
    constructor (capacity 16, prefetch 4 for audio), used by ``_handle_rtp_packet``."""
    attr = "_RTCRtpReceiver__jitter_buffer"
    current = getattr(receiver, attr, None)
    if not isinstance(current, JitterBuffer):
        log.warning("aiortc internals changed (%s): cannot tap the microphone's packets", attr)
        return False
    setattr(receiver, attr, MicJitterBuffer(on_packet, current.capacity))
    return True


# -- video sender -----------------------------------------------------------------


def forward_keyframe_requests(sender: RTCRtpSender, callback: Callable[[], None]) -> bool:
    """Call ``callback`` whenever the viewer asks for a keyframe (RTCP PLI or FIR).

    aiortc 1.16: ``_handle_rtcp_packet`` calls ``self._send_keyframe()``, which only
    flags aiortc's own encoder -- and frames that arrive encoded never pass through
    it.  We wrap that method on this sender instance."""
    original = getattr(sender, "_send_keyframe", None)
    if not callable(original):
        log.warning("aiortc internals changed (_send_keyframe): keyframe requests will not reach the encoder")
        return False

    def send_keyframe() -> None:
        original()
        callback()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]
    return True


def receiver_bitrate_estimate(sender: RTCRtpSender | None) -> int | None:
    """The viewer's latest bandwidth estimate (REMB) in bit/s, if any.

    aiortc 1.16 stores it on the sender's packetiser, ``__encoder.target_bitrate``
    (created with the first frame sent)."""
    encoder = getattr(sender, "_RTCRtpSender__encoder", None)
    bitrate = getattr(encoder, "target_bitrate", None)
    return int(bitrate) if bitrate else None


# -- negotiation ------------------------------------------------------------------


def offer_direction(transceiver: RTCRtpTransceiver) -> str | None:
    """The direction the remote offer gave this transceiver's m-line, seen from our side
    ("sendonly": we may send, "recvonly": we receive).  aiortc 1.16: ``_offerDirection``."""
    return getattr(transceiver, "_offerDirection", None)


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list:
    """The codecs aiortc negotiated for this transceiver, its send choice first.
    aiortc 1.16: ``_codecs``, set by ``setRemoteDescription``."""
    return list(getattr(transceiver, "_codecs", []))


# -- ICE ----------------------------------------------------------------------------


def guard_ice_checks(pc: RTCPeerConnection, guard: IceGuard) -> int:
    """Make every ICE connection of ``pc`` check only addresses ``guard`` permits, at its rate.

    Call after ``setRemoteDescription`` (the transports exist) and before the answer
    (checks start with it).  Covers candidates added later and peer-reflexive ones.
    aiortc 1.16: ``RTCIceGatherer._connection`` is the aioice 0.13 ``Connection``,
    whose ``check_start_task`` runs ``self.check_start(pair)``.  Returns how many
    connections were guarded."""
    guarded = 0
    seen: set[int] = set()
    for t in pc.getTransceivers():
        transport = getattr(getattr(t.sender, "transport", None), "transport", None)
        connection = getattr(getattr(transport, "iceGatherer", None), "_connection", None)
        if connection is None or id(connection) in seen:
            continue
        seen.add(id(connection))
        if not _guard_connection(connection, guard):
            continue
        guarded += 1
    if not guarded:
        log.warning("aiortc internals changed (RTCIceGatherer._connection): ICE checks are not guarded")
    return guarded


def _guard_connection(connection: object, guard: IceGuard) -> bool:
    original = getattr(connection, "check_start", None)
    if not callable(original) or not hasattr(connection, "check_state"):
        return False
    from aioice.ice import CandidatePair

    async def check_start(pair: CandidatePair) -> None:
        if not guard.permits(pair.remote_addr[0]):
            guard.refused += 1
            log.info("ICE check to %s refused (not the signalling peer's address)", pair.remote_addr[0])
            connection.check_state(pair, CandidatePair.State.FAILED)
            connection.check_complete(pair)
            return
        wait = guard.rate.delay()
        if wait > 0:
            await asyncio.sleep(wait)
        await original(pair)

    connection.check_start = check_start  # type: ignore[attr-defined]
    return True
