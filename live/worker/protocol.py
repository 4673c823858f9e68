"""The messages between a live session and its worker process, and how they are framed.

Pickled frozen dataclasses over a socket pair, each framed like
``multiprocessing.connection`` (a 4-byte big-endian length, then the payload), so
the worker reads them with a plain ``Connection.recv()`` and the server with
``read_message`` on an asyncio stream.

The conversation: the worker starts with ``Ready`` (or ``Failed``), then answers
each ``RenderRequest`` with a ``FrameReady`` (in order, each at its time, or a
``WorkerError``) and each ``Interrupt`` with ``Interrupted``.  ``MicPacket``,
``MicAudio``, ``ClipAudio``, ``KeyframeRequest`` and ``BitrateHint`` get no answer;
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
class WorkerSpec:
    """What a worker process is started with."""

    avatar_id: str
    avatar_dir: Path
    fps: float = 25.0
    checkpoint: Path | None = None
    feed: FeedConfig = field(default_factory=FeedConfig)
    video_codec: str = "vp8"          # what the peer negotiated: vp8 or h264


@dataclass(frozen=True)
class KeyframeRequest:
    pass                  # the viewer lost a picture (PLI): send a full frame next


@dataclass(frozen=True)
class BitrateHint:
    bitrate: int          # the receiver's bandwidth estimate (REMB), bits per second


@dataclass(frozen=True)
class MicPacket:
    payload: bytes        # one Opus packet from the viewer's microphone (decoded in the worker)
    arrival: float        # time.monotonic() when the server received it


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
class FrameReady:
    index: int
    epoch: int
    has_image: bool                         # False when skipped to catch up (no new picture)
    video: bytes                            # the encoded picture (empty: nothing to send)
    keyframe: bool
    audio_packets: tuple[bytes, ...]        # Opus packets completed by this frame's audio
    openness: float
    speaking: bool
    markers: tuple[Marker, ...]             # utterance starts/ends heard in this frame
    mic_arrivals: tuple[float, ...]         # arrival times of the mic chunks shown in this frame
    padded: int                             # silence samples the engine had to insert
    buffered_s: float                       # audio queued beyond this frame (engine + feed)
    underruns: int
    skipped_s: float
    timings: FrameTimings
    mic_packets: int = 0                    # Opus packets the worker has decoded so far
    keyframes_requested: int = 0            # KeyframeRequests the worker has received so far


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
