"""What a broadcast output is fed: one frame of the channel, already encoded."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BroadcastFrame:
    """Frame ``index`` of the channel (its time is ``index / fps`` on the channel's one media clock).

    ``video`` is one H.264 Annex-B access unit as ``live.rtc.video_encoder.VideoEncoder("h264", ...)``
    produces it, SPS/PPS in-band at keyframes; ``b""`` when the frame has no new picture.
    ``pcm`` is the int16 mono 16 kHz audio that plays with this frame (16000 / fps samples).
    """

    index: int
    video: bytes
    keyframe: bool
    pcm: bytes
