"""The messages between a live session and its worker process, and how they are framed.

Pickled frozen dataclasses over a socket pair, each framed like
``multiprocessing.connection`` (a 4-byte big-endian length, then the payload), so
the worker reads them with a plain ``Connection.recv()`` and the server with
``read_message`` on an asyncio stream.

The conversation: the worker starts with ``Ready`` (or ``Failed``), then answers
each ``RenderRequest`` with a ``FrameReady`` (in order, each at its time, or a
``WorkerError``) and each ``Interrupt`` with ``Interrupted``.  ``MicPacket``,
``MicAudio``, ``ClipAudio``, ``KeyframeRequest``, ``SetVariants`` and ``BitrateHint`` get no
answer;
``Stop`` ends the worker.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from live.engine.audio_feed import Clip, FeedConfig, Marker

# -- server -> worker -------------------------------------------------------------


@dataclass(frozen=True)
class VideoVariant:
    """One encoding of a stream's frames: every viewer and output of that kind shares it."""

    codec: str = "vp8"                # vp8 or h264
    background: str | None = None     # "#rrggbb": the avatar's background replaced by this key colour


@dataclass(frozen=True)
class EncoderSettings:
    """How the stream's pictures are encoded.  A private session follows its viewer's
    bandwidth estimate; a broadcast channel is constant-rate with a fixed keyframe
    interval, which is what RTMP platforms ask for."""

    bitrate: int | None = None        # bits per second; None: the size's own rate
    keyframe_s: float = 10.0          # at least one keyframe this often (a viewer's PLI asks for more)
    constant_bitrate: bool = False


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is started with."""

    avatar_id: str
    avatar_dir: Path
    fps: float = 25.0
    checkpoint: Path | None = None
    feed: FeedConfig = field(default_factory=FeedConfig)
    variants: tuple[VideoVariant, ...] = (VideoVariant(),)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)


@dataclass(frozen=True)
class KeyframeRequest:
    variant: VideoVariant | None = None   # a viewer lost a picture (PLI) or just joined; None: every variant


@dataclass(frozen=True)
class SetVariants:
    variants: tuple[VideoVariant, ...]    # encode exactly these from the next frame on (new ones start with a keyframe)


@dataclass(frozen=True)
class BitrateHint:
    bitrate: int          # the receiver's bandwidth estimate (REMB), bits per second


@dataclass(frozen=True)
class MicPacket:
    payload: bytes        # one Opus packet from the viewer's microphone (decoded in the worker); b"": lost
    arrival: float        # time.monotonic() when the server received it (or gave it up)


@dataclass(frozen=True)
class MicAudio:
    samples: np.ndarray   # float32 16 kHz mono (fallback when packets can't be tapped)
    arrival: float


@dataclass(frozen=True)
class ClipAudio:
    clip: Clip


@dataclass(frozen=True)
class RenderRequest:
    index: int
    start_at: float       # monotonic: not before (the frame's moment, minus one audio packet)
    deadline: float       # monotonic: render by then even if mic audio is missing
    epoch: int
    image: bool = True    # False: catching up (live.worker.catch_up): advance without drawing


@dataclass(frozen=True)
class Interrupt:
    epoch: int


@dataclass(frozen=True)
class Stop:
    pass


# -- worker -> server -------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    width: int
    height: int
    fps: float
    load_s: float


@dataclass(frozen=True)
class Failed:
    error: str


@dataclass(frozen=True)
class FrameTimings:
    decode_ms: float      # microphone Opus decoding + resampling since the previous frame
    features_ms: float    # mel + voice activity on the pushed audio
    model_ms: float       # mouth network
    render_ms: float      # mouth renderer + compositor
    convert_ms: float     # BGR -> I420
    encode_ms: float      # VP8 / H.264 + Opus
    waited_ms: float      # waiting for late microphone audio
    cpu_ms: float         # process CPU time spent on this frame


@dataclass(frozen=True)
class EncodedPicture:
    variant: VideoVariant
    data: bytes                             # the bitstream (empty: the encoder skipped this frame)
    keyframe: bool


@dataclass(frozen=True)
class FrameReady:
    index: int
    epoch: int
    has_image: bool                         # False when skipped to catch up (no new picture)
    pictures: tuple[EncodedPicture, ...]    # one per variant being encoded (none when not drawn)
    audio_packets: tuple[bytes, ...]        # Opus packets completed by this frame's audio
    pcm: bytes                              # the same audio, int16 mono 16 kHz (for outputs that encode their own)
    openness: float
    speaking: bool
    markers: tuple[Marker, ...]             # utterance starts/ends heard in this frame
    mic_arrivals: tuple[float, ...]         # arrival times of the mic chunks shown in this frame
    padded: int                             # silence samples the engine had to insert
    buffered_s: float                       # audio queued beyond this frame (engine + feed)
    underruns: int
    skipped_s: float
    timings: FrameTimings
    headroom_s: float = 0.0                 # how early the mic's audio is kept complete (its link's jitter)
    mic_packets: int = 0                    # Opus packets the worker has decoded so far
    keyframes_requested: int = 0            # KeyframeRequests the worker has received so far

    def picture(self, variant: VideoVariant) -> EncodedPicture | None:
        return next((p for p in self.pictures if p.variant == variant), None)


@dataclass(frozen=True)
class Interrupted:
    epoch: int
    dropped: tuple[str, ...]                # utterance ids whose audio was discarded


@dataclass(frozen=True)
class WorkerError:
    error: str


# -- framing ----------------------------------------------------------------------


def encode_message(msg: object) -> bytes:
    """One framed message, readable by ``Connection.recv()`` on the other end."""
    payload = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    if len(payload) >= 0x7FFFFFFF:
        return struct.pack("!i", -1) + struct.pack("!Q", len(payload)) + payload
    return struct.pack("!i", len(payload)) + payload


async def read_message(reader: asyncio.StreamReader) -> object:
    """The next framed message (raises ``asyncio.IncompleteReadError`` at end of stream)."""
    (size,) = struct.unpack("!i", await reader.readexactly(4))
    if size == -1:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return pickle.loads(await reader.readexactly(size))
