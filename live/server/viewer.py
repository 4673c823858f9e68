"""One WebRTC peer watching a channel: its peer connection, its two tracks, its microphone.

A viewer gets the channel's frames from the moment its connection is up: the
picture of its video variant (a new viewer waits for a keyframe) and the frame's
Opus packets, both stamped from the channel's media clock by ``live.rtc.tracks``.
It reports back what the channel needs to know -- a frame leaving (speech events,
latency), a lost picture (PLI), its microphone's packets if it may drive the
channel, and its end.  Everything else about the channel is the channel's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import av
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from live.rtc import aiortc_hooks
from live.rtc.signaling import Offer, answer, negotiate
from live.rtc.tracks import AvatarAudioTrack, AvatarVideoTrack
from live.worker.client import WorkerDied
from live.worker.protocol import FrameReady, VideoVariant
from models.audio.audio_io import StreamResampler

if TYPE_CHECKING:
    from live.server.channel import Channel

log = logging.getLogger(__name__)

_DISCONNECT_GRACE_S = 5.0
_MAX_AUDIO_DELAY_S = 0.06
_EARLY_S = 0.020


class Viewer:
    def __init__(self, viewer_id: str, channel: "Channel", *, mic_allowed: bool, background: str | None = None) -> None:
        self.id = viewer_id
        self.channel = channel
        self.mic_allowed = mic_allowed
        self.background = background
        self.variant = VideoVariant()             # set by the negotiation
        self.created = time.monotonic()
        self.pc = None
        self.connected = False
        self.closed = False
        self.video = AvatarVideoTrack(channel.clock, on_leave=self._on_frame_leaving, on_overflow=self._on_overflow)
        self.audio: AvatarAudioTrack | None = AvatarAudioTrack(channel.clock)
        self._video_sender = None
        self._mic_track: MediaStreamTrack | None = None
        self._mic_reader: asyncio.Task | None = None
        self.mic_tapped = False
        self.mic_packets = 0
        self.keyframe_requests = 0
        self.keyframes_sent = 0
        self._need_keyframe = True
        self._disconnect_timer: asyncio.TimerHandle | None = None

    async def open(self, offer: Offer, peer: str | None, video_codec: str) -> RTCSessionDescription:
        """Negotiate and attach the tracks; returns the answer (raises SignalingError)."""
        cfg = self.channel.config
        neg = await negotiate(offer, cfg.ice_servers, video_codec, on_track=self._on_track, peer=peer)
        self.pc = neg.pc
        try:
            self.pc.on("connectionstatechange", self._on_connection_state)
            self.pc.on("iceconnectionstatechange", self._on_ice_state)
            if self.mic_allowed and neg.mic_expected and neg.audio_transceiver is not None:
                self.mic_tapped = aiortc_hooks.install_mic_tap(neg.audio_transceiver.receiver, self._on_mic_packet)
            self.variant = VideoVariant(neg.video_codec, self.background)
            self._video_sender = neg.video.sender
            aiortc_hooks.forward_keyframe_requests(neg.video.sender, self._on_keyframe_request)
            neg.video.sender.replaceTrack(self.video)
            if neg.audio is not None:
                neg.audio.sender.replaceTrack(self.audio)
            else:
                self.audio = None  # the client can't receive audio; nobody would drain the track
            return await answer(self.pc)
        except BaseException:
            await self.close()
            raise

    @property
    def sends_mic(self) -> bool:
        return self.mic_allowed and self._mic_track is not None

    @property
    def state(self) -> str:
        return self.pc.connectionState if self.pc else "new"

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._disconnect_timer is not None:
            self._disconnect_timer.cancel()
        if self._mic_reader is not None:
            self._mic_reader.cancel()
        self.video.stop()
        if self.audio is not None:
            self.audio.stop()
        if self.pc is not None:
            try:
                await asyncio.wait_for(self.pc.close(), 5.0)
            except (asyncio.TimeoutError, Exception):
                log.warning("viewer %s: peer connection did not close cleanly", self.id)

    # -- from the channel ----------------------------------------------------

    def deliver(self, frame: FrameReady, audio: tuple[bytes, ...]) -> None:
        picture = frame.picture(self.variant) if frame.has_image else None
        if picture is not None and picture.data:
            if self._need_keyframe and not picture.keyframe:
                pass   # a picture that refers to frames this viewer never got: wait for the keyframe
            else:
                self._need_keyframe = False
                self.video.put(frame.index, av.Packet(picture.data))
                self.keyframes_sent += picture.keyframe
        if self.audio is not None:
            self.audio.put(frame.index, audio)

    def silence_pending(self, silence: bytes) -> int:
        return self.audio.silence_pending(silence) if self.audio is not None else 0

    def bandwidth_estimate(self) -> int | None:
        return aiortc_hooks.receiver_bitrate_estimate(self._video_sender)

    def start_mic_reading(self) -> None:
        """Fallback when the packets can't be tapped: aiortc decodes, we resample."""
        if self._mic_track is not None and self.mic_allowed and not self.mic_tapped and self._mic_reader is None:
            self._mic_reader = asyncio.create_task(self._read_mic(self._mic_track), name=f"mic-{self.id}")

    # -- from aiortc ---------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._mic_track is None:
            self._mic_track = track

    def _on_ice_state(self) -> None:
        if self.pc is not None and self.pc.iceConnectionState == "completed":
            self.channel.viewer_reachable(self)

    def _on_connection_state(self) -> None:
        state = self.state
        if state == "connected":
            if self._disconnect_timer is not None:
                self._disconnect_timer.cancel()
                self._disconnect_timer = None
            if not self.connected:
                self.connected = True
                self.channel.viewer_connected(self)
        elif state in ("failed", "closed"):
            ice = self.pc.iceConnectionState if self.pc else "?"
            self.channel.viewer_gone(self, f"connection {state} (ICE {ice})")
        elif state == "disconnected" and self._disconnect_timer is None:
            loop = asyncio.get_running_loop()
            self._disconnect_timer = loop.call_later(_DISCONNECT_GRACE_S, self.channel.viewer_gone, self, "peer disconnected")

    def _on_keyframe_request(self) -> None:
        """The viewer sent a PLI/FIR (aiortc_hooks.forward_keyframe_requests)."""
        self.keyframe_requests += 1
        self.channel.request_keyframe(self.variant)

    def _on_overflow(self) -> None:
        # Its sender fell a second behind and the queue was dropped: restart from a keyframe.
        self._need_keyframe = True
        self.channel.request_keyframe(self.variant)

    def _on_frame_leaving(self, index: int, now: float) -> None:
        lateness = self.channel.frame_left(index, now)
        if self.audio is not None:
            # Follow the video's typical send delay (bounded), so both tracks' RTCP
            # sender reports agree and the viewer's lip sync lines them up.
            target = min(max(lateness, -_EARLY_S), _MAX_AUDIO_DELAY_S)
            self.audio.send_delay_s += 0.05 * (target - self.audio.send_delay_s)

    def _on_mic_packet(self, payload: bytes, arrival: float) -> None:
        """A microphone packet, in order, on to the channel's worker still encoded (b"": one lost)."""
        self.mic_packets += bool(payload)
        if not self.closed:
            self.channel.mic_packet(self, payload, arrival)

    async def _read_mic(self, track: MediaStreamTrack) -> None:
        resampler = StreamResampler()
        try:
            while not self.closed:
                frame = await track.recv()
                arrival = time.monotonic()
                samples = resampler.push(frame)
                if len(samples):
                    self.channel.mic_samples(samples, arrival)
        except (MediaStreamError, WorkerDied, asyncio.CancelledError):
            pass

    async def link(self) -> dict:
        """What the viewer's RTCP receiver reports say about its link (round trip, loss, jitter)."""
        out: dict = {"rtt_ms": None, "lost_pct": None, "jitter_ms": None}
        if self.pc is None or self.closed:
            return out
        rates = {"video": 90.0, "audio": 48.0}     # RTP clock ticks per ms
        for s in (await self.pc.getStats()).values():
            if s.type != "remote-inbound-rtp" or s.kind not in rates:
                continue
            if s.roundTripTime is not None:
                out["rtt_ms"] = round(s.roundTripTime * 1000.0, 1)
            if s.kind == "audio":     # the sound is what a viewer misses first; video loss is repaired by PLI
                out["lost_pct"] = round(100.0 * (s.fractionLost or 0) / 256.0, 1)
                out["jitter_ms"] = round(s.jitter / rates["audio"], 1) if s.jitter is not None else None
        return out

    def stats(self) -> dict:
        return {
            "viewer_id": self.id,
            "state": self.state,
            "video_codec": self.variant.codec,
            "background": self.variant.background,
            "frames_sent": self.video.frames_sent,
            "frames_dropped": self.video.frames_dropped,
            "audio_send_delay_ms": round(self.audio.send_delay_s * 1000.0, 1) if self.audio else None,
            "mic": self.sends_mic,
            "mic_packets": self.mic_packets,
            "mic_tapped": self.mic_tapped,
            "keyframe_requests": self.keyframe_requests,
            "keyframes_sent": self.keyframes_sent,
        }
