"""Raw audio bytes arriving in pieces of any size -> 16 kHz mono float32, as they come.

A streamed TTS response (``s16le`` PCM, or a WAV whose header says how long it
is before the audio exists) and an agent's audio socket both deliver bytes cut
anywhere: in the middle of a sample, of a multi-channel frame, of a WAV header.
``PcmStream`` keeps the partial frame until the rest arrives and resamples with
one filter state for the whole stream; ``WavStream`` reads the header first and
then is a ``PcmStream``.  Nothing is decoded twice or buffered beyond one frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from models.audio.audio_io import AudioDecodeError, StreamResampler

SAMPLE_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
MAX_WAV_HEADER = 64 * 1024          # a header (fmt, LIST, fact ...) longer than this is not a WAV we stream
_WAV_PCM, _WAV_FLOAT, _WAV_EXTENSIBLE = 1, 3, 0xFFFE
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)    # streaming writers don't know the data size yet


@dataclass(frozen=True)
class PcmFormat:
    """What raw PCM bytes mean: rate, interleaved channels, sample encoding."""

    sample_rate: int
    channels: int = 1
    sample_format: str = "s16le"

    def __post_init__(self) -> None:
        if not 1000 <= self.sample_rate <= 384_000:
            raise AudioDecodeError(f"unsupported sample rate {self.sample_rate}")
        if not 1 <= self.channels <= 8:
            raise AudioDecodeError(f"unsupported channel count {self.channels}")
        if self.sample_format not in SAMPLE_FORMATS:
            raise AudioDecodeError(f"unsupported sample format {self.sample_format!r} "
                                   f"(one of {', '.join(SAMPLE_FORMATS)})")

    @property
    def frame_bytes(self) -> int:
        return SAMPLE_FORMATS[self.sample_format].itemsize * self.channels


class PcmStream:
    """Interleaved PCM bytes in any pieces -> 16 kHz mono float32 chunks."""

    def __init__(self, fmt: PcmFormat) -> None:
        self.format = fmt
        self._carry = b""                   # an incomplete frame from the last piece
        self._resampler = StreamResampler()
        self.bytes_in = 0

    def push(self, data: bytes) -> np.ndarray:
        self.bytes_in += len(data)
        data = self._carry + bytes(data)
        usable = len(data) - len(data) % self.format.frame_bytes
        self._carry = data[usable:]
        if not usable:
            return np.zeros(0, np.float32)
        samples = np.frombuffer(data[:usable], dtype=SAMPLE_FORMATS[self.format.sample_format])
        samples = samples.reshape(-1, self.format.channels)
        if self.format.sample_format == "f32le" and not np.all(np.isfinite(samples)):
            raise AudioDecodeError("float PCM contains NaN or infinite samples")
        return self._resampler.push(samples if self.format.channels > 1 else samples[:, 0], self.format.sample_rate)

    def flush(self) -> np.ndarray:
        """The end of the stream: the resampler's tail.  A trailing partial frame is dropped."""
        self._carry = b""
        return self._resampler.flush()

    @property
    def partial_bytes(self) -> int:
        """Bytes of an incomplete frame still waiting (non-zero at the end: a truncated stream)."""
        return len(self._carry)


class WavStream:
    """A WAV file arriving in pieces: the header is parsed as soon as it is complete."""

    def __init__(self) -> None:
        self._head = b""
        self._pcm: PcmStream | None = None
        self._left: int | None = None       # data bytes still expected (None: until the end)

    @property
    def format(self) -> PcmFormat | None:
        return self._pcm.format if self._pcm is not None else None

    def push(self, data: bytes) -> np.ndarray:
        if self._pcm is None:
            self._head += bytes(data)
            parsed = _parse_header(self._head)
            if parsed is None:
                if len(self._head) > MAX_WAV_HEADER:
                    raise AudioDecodeError(f"no audio data in the first {MAX_WAV_HEADER} bytes of the WAV")
                return np.zeros(0, np.float32)
            fmt, offset, size = parsed
            self._pcm = PcmStream(fmt)
            self._left = None if size in _UNKNOWN_SIZES else size
            data, self._head = self._head[offset:], b""
        if self._left is not None:
            data, self._left = data[: self._left], max(0, self._left - len(data))
        return self._pcm.push(data)

    def flush(self) -> np.ndarray:
        if self._pcm is None:
            raise AudioDecodeError("the WAV ended before its header was complete" if self._head else "no audio")
        return self._pcm.flush()


def _parse_header(head: bytes) -> tuple[PcmFormat, int, int] | None:
    """(format, offset of the audio, declared data size) once ``head`` holds the whole header."""
    if not head[:4] == b"RIFF"[: len(head[:4])]:
        raise AudioDecodeError("not a WAV file (no RIFF header)")
    if len(head) < 12:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioDecodeError("not a WAV file (no RIFF/WAVE header)")
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        if chunk == b"data":
            if fmt is None:
                raise AudioDecodeError("WAV data comes before its format (no fmt chunk)")
            return fmt, pos + 8, size
        if chunk == b"fmt ":
            if pos + 8 + size > len(head):
                return None
            fmt = _parse_fmt(head[pos + 8:pos + 8 + size])
        elif size > MAX_WAV_HEADER:
            raise AudioDecodeError(f"WAV chunk {chunk!r} before the audio is too large ({size} bytes)")
        pos += 8 + size + (size & 1)        # chunks are padded to even sizes
    return None


def _parse_fmt(body: bytes) -> PcmFormat:
    if len(body) < 16:
        raise AudioDecodeError("WAV fmt chunk is too short")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _WAV_EXTENSIBLE and len(body) >= 26:
        tag = struct.unpack_from("<H", body, 24)[0]     # the sub-format GUID starts with the real tag
    if tag == _WAV_PCM and bits == 16:
        sample_format = "s16le"
    elif tag == _WAV_FLOAT and bits == 32:
        sample_format = "f32le"
    else:
        raise AudioDecodeError(f"unsupported WAV encoding (format {tag}, {bits}-bit); 16-bit PCM or 32-bit float")
    return PcmFormat(rate, channels, sample_format)
