"""``LipstreamVideoService``: a self-hosted lipstream avatar as a pipecat processor.

Put it after the TTS and before the output transport::

    Pipeline([transport.input(), stt, user_agg, llm, tts,
              LipstreamVideoService(base_url="http://127.0.0.1:8080"),
              transport.output(), assistant_agg])

* The TTS's audio frames go to a lipstream channel over its audio-stream socket
  (``TTSStoppedFrame`` ends the turn) and are *not* passed on: the channel's own
  sound replaces them, so what is heard is what the lips say.
* The channel's video and audio come back over WHEP and are pushed downstream as
  ``OutputImageRawFrame`` and ``SpeechOutputAudioRawFrame``, paired as the server
  paired them (``av_sync``); images are marked ``sync_with_audio`` so the output
  transport shows each one after the sound that precedes it.
* An interruption sends ``{"type": "interrupt"}`` to the channel, drops the frames
  held here and mutes the sound that was already on its way.
* Every other frame passes through.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import numpy as np
from pipecat.frames import frames as pf
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from .audio_stream import AudioStream, PcmFormat
from .av_sync import AvPairer
from .channel import ChannelInfo, LipstreamServer, create_channel, end_channel, get_channel
from .whep import Received, WhepPlayer

log = logging.getLogger(__name__)

# pipecat renamed its interruption frame over time; accept whichever the installed version has.
INTERRUPTIONS: tuple[type, ...] = tuple(
    {getattr(pf, n) for n in ("InterruptionFrame", "StartInterruptionFrame") if hasattr(pf, n)})
# A stream that also carries silence: the output transport tells speech from pauses itself.
SpeechAudioFrame = getattr(pf, "SpeechOutputAudioRawFrame", pf.OutputAudioRawFrame)
MAX_MUTE_S = 1.0   # after an interruption, never mute the channel's sound longer than this


class LipstreamVideoService(FrameProcessor):
    """Lip-synced avatar video (and the matching audio) from a lipstream channel."""

    def __init__(
        self,
        *,
        base_url: str = "http://127.0.0.1:8080",
        token: str | None = None,
        channel_id: str | None = None,
        view_key: str | None = None,
        avatar: str | None = None,
        end_channel_on_stop: bool | None = None,
        sync_with_audio: bool = True,
        session: aiohttp.ClientSession | None = None,
        **kwargs,
    ) -> None:
        """
        Args:
            base_url: the lipstream server.
            token: its control token (``Authorization: Bearer``); required off loopback.
            channel_id: an existing channel to drive; by default one is created at start.
            view_key: the channel's view key, to watch it when no token is given.
            avatar: the avatar of a channel this service creates.
            end_channel_on_stop: end the channel when the pipeline ends (default: only
                a channel this service created).
            sync_with_audio: mark images so the output transport shows each after the
                audio that precedes it (pipecat's ``OutputImageRawFrame.sync_with_audio``).
            session: an aiohttp session to use (default: one of its own).
        """
        super().__init__(**kwargs)
        self._server = LipstreamServer(base_url, token)
        self._channel_id = channel_id
        self._view_key = view_key
        self._avatar = avatar
        self._end_channel_on_stop = end_channel_on_stop
        self._sync_with_audio = sync_with_audio
        self._http = session
        self._own_http = session is None
        self._channel: ChannelInfo | None = None
        self._created = False
        self._audio: AudioStream | None = None
        self._player: WhepPlayer | None = None
        self._pairer: AvPairer | None = None
        self._pump_task: asyncio.Task | None = None
        self._interrupted_at: float | None = None   # time.monotonic() of the last interruption
        self._interrupt_acked = True
        self._stopped = False

    @property
    def channel_id(self) -> str | None:
        return self._channel.channel_id if self._channel else self._channel_id

    # -- pipeline ---------------------------------------------------------------------

    async def process_frame(self, frame: pf.Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, pf.StartFrame):
            await self.push_frame(frame, direction)
            await self._start()
        elif isinstance(frame, (pf.EndFrame, pf.CancelFrame)):
            await self._stop()
            await self.push_frame(frame, direction)
        elif INTERRUPTIONS and isinstance(frame, INTERRUPTIONS):
            await self._interrupt()
            await self.push_frame(frame, direction)
        elif isinstance(frame, pf.TTSAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
            await self._send_audio(frame)
        elif isinstance(frame, pf.TTSStoppedFrame):
            if self._audio is not None:
                await self._guard("ending the turn", self._audio.end())
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._stop()

    # -- channel ----------------------------------------------------------------------

    async def _start(self) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            if self._channel_id is None:
                self._channel = await create_channel(self._http, self._server, avatar=self._avatar)
                self._created = True
            else:
                self._channel = await get_channel(self._http, self._server, self._channel_id)
            cid = self._channel.channel_id
            self._audio = AudioStream(self._http, self._server, cid, self._on_event)
            await self._audio.open()
            self._pairer = AvPairer()
            self._player = WhepPlayer(self._http, self._server, cid, self._pairer.push,
                                      view_key=self._view_key or self._channel.view_key)
            await self._player.connect()
        except Exception as e:   # unreachable server, refused token, no channel: the pipeline can't show anything
            await self.push_error(error_msg=f"lipstream: cannot start the avatar: {e}", exception=e, fatal=True)
            return
        self._pump_task = self.create_task(self._pump(), "lipstream-pump")

    async def _stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._pump_task is not None:
            await self.cancel_task(self._pump_task)
            self._pump_task = None
        if self._player is not None:
            await self._player.close()
        if self._audio is not None:
            await self._audio.close()
        end = self._created if self._end_channel_on_stop is None else self._end_channel_on_stop
        if end and self._channel is not None and self._http is not None:
            try:
                await end_channel(self._http, self._server, self._channel.channel_id)
            except (aiohttp.ClientError, RuntimeError) as e:
                log.warning("lipstream: could not end channel %s: %s", self._channel.channel_id, e)
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None

    async def _guard(self, what: str, op) -> None:
        # The socket can drop (server restart, network); the next send reopens it, so
        # one failed send is an error frame, not the end of the pipeline.
        try:
            await op
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as e:
            await self.push_error(error_msg=f"lipstream: {what}: {e}", exception=e)

    async def _send_audio(self, frame: pf.TTSAudioRawFrame) -> None:
        if self._audio is None or not frame.audio:
            return
        await self._guard("sending TTS audio", self._audio.send(frame.audio, PcmFormat(frame.sample_rate,
                                                                                      frame.num_channels)))

    async def _interrupt(self) -> None:
        self._interrupted_at = time.monotonic()
        self._interrupt_acked = False
        if self._pairer is not None:
            self._pairer.clear()
        if self._audio is not None:
            await self._guard("interrupting", self._audio.interrupt())

    async def _on_event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "interrupted":
            self._interrupt_acked = True
        elif kind == "error":
            await self.push_error(error_msg=f"lipstream: {str(event.get('message', event))[:300]}")

    # -- media out --------------------------------------------------------------------

    def _muted(self, item: Received) -> bool:
        """Sound sent before the last interruption reached the server is not played."""
        if self._interrupted_at is None:
            return False
        if item.arrival - self._interrupted_at > MAX_MUTE_S:
            self._interrupted_at = None
            return False
        if not self._interrupt_acked:
            return True
        sent = self._local_send_time(item)
        if sent is None or sent >= self._interrupted_at:
            self._interrupted_at = None   # from here on, everything is newer
            return False
        return True

    def _local_send_time(self, item: Received) -> float | None:
        # The sender clock is the server's: bring it to ours through the track's
        # lowest transit seen, i.e. as if this packet had travelled the fastest way.
        if item.sender_time is None or self._pairer is None:
            return None
        floor = self._pairer.transit_floor(item.kind)
        return None if floor is None else item.sender_time + floor

    async def _pump(self) -> None:
        assert self._pairer is not None
        while True:
            item = await self._pairer.next()
            if item.kind == "video":
                await self.push_frame(self._image(item))
            elif not self._muted(item):
                await self.push_frame(self._sound(item))

    def _image(self, item: Received) -> pf.OutputImageRawFrame:
        rgb = item.frame.to_ndarray(format="rgb24")
        out = pf.OutputImageRawFrame(image=rgb.tobytes(), size=(rgb.shape[1], rgb.shape[0]), format="RGB")
        if hasattr(out, "sync_with_audio"):
            out.sync_with_audio = self._sync_with_audio
        out.metadata["lipstream"] = {"sender_time": item.sender_time, "arrival": item.arrival}
        return out

    def _sound(self, item: Received) -> pf.OutputAudioRawFrame:
        frame = item.frame
        pcm = frame.to_ndarray()
        channels = len(frame.layout.channels)
        if frame.format.is_planar:
            pcm = pcm.T
        samples = pcm.reshape(-1, channels)
        # The channel's sound is mono sent as stereo; one channel is what transports expect.
        mono = samples.mean(axis=1).astype(np.int16) if channels > 1 else samples[:, 0].astype(np.int16)
        out = SpeechAudioFrame(audio=mono.tobytes(), sample_rate=frame.sample_rate, num_channels=1)
        out.metadata["lipstream"] = {"sender_time": item.sender_time, "arrival": item.arrival}
        return out
