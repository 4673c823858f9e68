"""A channel's RTMP outputs: the channel's frames, as they are made, to an ingest server.

The output reuses the channel's H.264 encoding (the broadcast variant: constant
rate, 2 s keyframes) and takes the frame's PCM for its AAC; nothing is encoded
twice.  ``live.broadcast.rtmp_output`` does the muxing and the reconnecting in a
process of its own; this module only adapts a ``FrameReady`` to it and turns its
status changes into the channel's ``output`` events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from live.broadcast.frames import BroadcastFrame
from live.broadcast.rtmp_output import RtmpOutput
from live.worker.protocol import FrameReady, VideoVariant

if TYPE_CHECKING:
    from live.server.channel import Channel

MAX_OUTPUTS = 4        # restreaming to a few platforms; each is a process (~50 MB, ~3 % of a core)


class RtmpSink:
    def __init__(self, channel: "Channel", url: str, variant: VideoVariant) -> None:
        width, height = channel.ready_size or (0, 0)
        self.variant = variant
        self._channel = channel
        self.output = RtmpOutput(url, width, height, channel.config.fps, self._on_status, self._keyframe)
        self.output_id = self.output.output_id

    def start(self) -> None:
        self.output.start()

    def deliver(self, frame: FrameReady) -> None:
        picture = frame.picture(self.variant) if frame.has_image else None
        video, keyframe = (picture.data, picture.keyframe) if picture is not None else (b"", False)
        self.output.put(BroadcastFrame(frame.index, video, keyframe, frame.pcm))

    def info(self) -> dict:
        return self.output.info()

    async def stop(self) -> None:
        await self.output.stop()

    def _on_status(self, event: dict) -> None:
        self._channel.events.publish("output", **event)

    def _keyframe(self) -> None:
        self._channel.request_keyframe(self.variant)
