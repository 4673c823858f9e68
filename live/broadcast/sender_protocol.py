"""The pipe between an ``RtmpOutput`` (server process) and its sender process.

Down (stdin): one JSON line with the ``SenderConfig`` (the URL travels here, never
on the command line where ``ps`` would show the stream key), then frame records:
a fixed header and the frame's video and PCM bytes.  Up (stdout): one JSON
object per line, a ``SenderEvent``.  End of stdin means "finish and exit".
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import BinaryIO, Literal

from live.broadcast.frames import BroadcastFrame

_RECORD = struct.Struct("<qBII")   # index, keyframe, len(video), len(pcm)
MAX_VIDEO_BYTES = 16 << 20
MAX_PCM_BYTES = 1 << 20

EventKind = Literal["want_keyframe", "live", "down", "tick", "fatal"]


@dataclass(frozen=True)
class SenderConfig:
    url: str
    width: int
    height: int
    fps: float

    def to_line(self) -> bytes:
        return json.dumps(asdict(self)).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> SenderConfig:
        d = json.loads(line)
        return cls(url=str(d["url"]), width=int(d["width"]), height=int(d["height"]), fps=float(d["fps"]))


@dataclass(frozen=True)
class SenderEvent:
    """``want_keyframe``: ready to connect, waiting for a keyframe.  ``live``: connected, sending.
    ``down``: the connection failed or dropped; the next try is in ``retry_in_s``.
    ``tick``: cumulative counters (at start, after every frame, and at exit).
    ``fatal``: the stream itself cannot be sent (retrying would not help); the sender exits."""

    kind: EventKind
    error: str | None = None
    retry_in_s: float | None = None
    counters: dict[str, int] = field(default_factory=dict)   # tick: sent, dropped, bytes

    def to_line(self) -> bytes:
        return json.dumps(asdict(self)).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> SenderEvent:
        d = json.loads(line)
        return cls(kind=d["kind"], error=d.get("error"), retry_in_s=d.get("retry_in_s"),
                   counters={k: int(v) for k, v in (d.get("counters") or {}).items()})


def encode_frame(frame: BroadcastFrame) -> bytes:
    return _RECORD.pack(frame.index, int(frame.keyframe), len(frame.video), len(frame.pcm)) + frame.video + frame.pcm


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    if data is None or len(data) < n:
        return None
    return data


def read_frames(stream: BinaryIO) -> Iterator[BroadcastFrame]:
    """Frames from ``stream`` until it ends (a truncated last record ends it too)."""
    while True:
        head = _read_exactly(stream, _RECORD.size)
        if head is None:
            return
        index, keyframe, n_video, n_pcm = _RECORD.unpack(head)
        if n_video > MAX_VIDEO_BYTES or n_pcm > MAX_PCM_BYTES:
            raise ValueError(f"frame record too large ({n_video} + {n_pcm} bytes)")
        body = _read_exactly(stream, n_video + n_pcm) if n_video + n_pcm else b""
        if body is None:
            return
        yield BroadcastFrame(index=index, video=body[:n_video], keyframe=bool(keyframe), pcm=body[n_video:])
