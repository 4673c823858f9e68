"""Audio in: any file, array or WebRTC frame becomes 16 kHz mono float32.

Everything downstream (mel features, VAD, the mouth model, the MP4 writer) works
on one format, so every conversion lives here.  Channels are averaged by hand
rather than by libswresample, whose stereo-to-mono matrix adds the channels at
-3 dB each and so can push a correlated full-scale signal past 1.0.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import av.error
import numpy as np

from models.audio.pcm import INT16_SCALE, SAMPLE_RATE, float_to_int16, int16_to_float  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

DEFAULT_MAX_SECONDS = 2 * 3600 + 1
MAX_BAD_PACKET_FRACTION = 0.1  # more undecodable packets than this means a corrupt file, not a glitch


class AudioDecodeError(ValueError):
    """The input could not be turned into audio; the message says why, for a user."""


# ---------------------------------------------------------------------------
# sample-format helpers


def _to_float(pcm: np.ndarray) -> np.ndarray:
    """Any common PCM dtype to float32 in [-1, 1], shape kept."""
    a = np.asarray(pcm)
    if a.dtype == np.int16:
        return a.astype(np.float32) / INT16_SCALE
    if a.dtype == np.int32:
        return (a.astype(np.float64) / 2147483648.0).astype(np.float32)
    if a.dtype == np.uint8:
        return (a.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32, copy=False)
    raise AudioDecodeError(f"unsupported PCM sample type {a.dtype}; use int16 or float")


def _downmix(pcm: np.ndarray) -> np.ndarray:
    """(n,) or (n, channels) float to (n,) mono by averaging the channels."""
    if pcm.ndim == 1:
        return pcm
    if pcm.ndim == 2:
        mono = pcm[:, 0].astype(np.float32)  # a copy: summed into below
        for c in range(1, pcm.shape[1]):
            mono += pcm[:, c]  # column sums: numpy's mean(axis=1) is ~8x slower on short rows
        if pcm.shape[1] > 1:
            mono *= np.float32(1.0 / pcm.shape[1])
        return mono
    raise AudioDecodeError(f"PCM must be 1-D (mono) or 2-D (samples, channels), got shape {pcm.shape}")


_SAMPLE_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "flt": np.float32, "dbl": np.float64}


def frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """Decoded frame of any sample format/layout to (n,) float32 mono.

    Reads the planes directly: ``AudioFrame.to_ndarray`` stacks them first and
    costs more than the resampling itself on a 20 ms WebRTC frame.
    """
    channels = frame.layout.nb_channels
    n = frame.samples
    dtype = _SAMPLE_DTYPES.get(frame.format.name.rstrip("p"))
    if dtype is None:  # s64 and other rarities: the slow general path
        data = frame.to_ndarray()
        interleaved = data.T if frame.format.is_planar else data.reshape(-1, channels)
        return _downmix(_to_float(interleaved))
    if frame.format.is_planar:
        columns = [np.frombuffer(p, dtype=dtype, count=n) for p in frame.planes[:channels]]
    else:
        packed = np.frombuffer(frame.planes[0], dtype=dtype, count=n * channels).reshape(n, channels)
        columns = [packed[:, c] for c in range(channels)]
    mono = _to_float(columns[0]).copy()  # a fresh, writable array that outlives the frame
    for column in columns[1:]:
        mono += _to_float(column)
    if channels > 1:
        mono *= np.float32(1.0 / channels)
    return mono


# ---------------------------------------------------------------------------
# resampling


class StreamResampler:
    """Stateful converter of a live stream to 16 kHz mono float32 chunks.

    Keeps one libswresample context across chunks so that chunk boundaries carry
    the filter state (no clicks) and the output sample count tracks the input
    exactly over hours.  If the input rate changes mid-stream (a new track, a
    renegotiated codec) the old context is drained and a new one started.
    """

    def __init__(self, out_rate: int = SAMPLE_RATE) -> None:
        self.out_rate = out_rate
        self._rate: int | None = None
        self._resampler: av.AudioResampler | None = None
        self.samples_in = 0
        self.samples_out = 0

    def push(self, chunk: av.AudioFrame | np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """Convert one chunk: an ``av.AudioFrame`` (rate from the frame) or a numpy
        PCM array (int16/float, (n,) or (n, channels)) with ``sample_rate``."""
        if isinstance(chunk, av.AudioFrame):
            mono = frame_to_mono(chunk)
            rate = int(chunk.sample_rate)
        else:
            if sample_rate is None:
                raise AudioDecodeError("sample_rate is required for numpy PCM chunks")
            mono = _downmix(_to_float(chunk))
            rate = int(sample_rate)
        if rate <= 0:
            raise AudioDecodeError(f"invalid sample rate {rate}")
        return self._resample(mono, rate)

    def flush(self) -> np.ndarray:
        """Return the samples still inside the filter (end of stream)."""
        out = self._drain()
        self._rate = None
        return out

    def _resample(self, mono: np.ndarray, rate: int) -> np.ndarray:
        self.samples_in += len(mono)
        head = np.zeros(0, dtype=np.float32)
        if rate != self._rate:
            head = self._drain()
            self._rate = rate
            self._resampler = None if rate == self.out_rate else av.AudioResampler(
                format="flt", layout="mono", rate=self.out_rate
            )
        if len(mono) == 0:
            return head
        if self._resampler is None:
            out = np.ascontiguousarray(mono, dtype=np.float32)
        else:
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(mono, dtype=np.float32)[None, :], format="flt", layout="mono"
            )
            frame.sample_rate = rate
            out = _concat(self._resampler.resample(frame))
        if len(head):
            out = np.concatenate([head, out])
        self.samples_out += len(out)
        return out

    def _drain(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        out = _concat(self._resampler.resample(None))
        self._resampler = None
        self.samples_out += len(out)
        return out


def _concat(frames: list[av.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([np.frombuffer(f.planes[0], dtype=np.float32, count=f.samples) for f in frames])


def to_mono_16k(pcm: np.ndarray, sample_rate: int) -> np.ndarray:
    """Whole numpy PCM (int16/float, (n,) or (n, channels)) to 16 kHz mono float32."""
    resampler = StreamResampler()
    head = resampler.push(pcm, sample_rate)
    return np.concatenate([head, resampler.flush()])


# ---------------------------------------------------------------------------
# files


def load_audio(path: str | Path, max_seconds: float = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """Decode the first audio stream of any media file to 16 kHz mono float32.

    Raises AudioDecodeError for a missing/unreadable/corrupt file, a file with no
    audio stream, an audio stream with zero samples, or audio longer than
    ``max_seconds`` (checked from the container before decoding, and again while
    decoding because a container's duration may be absent or lie).
    """
    p = Path(path)
    if not p.exists():
        raise AudioDecodeError(f"{p}: no such file")
    if not p.is_file():
        raise AudioDecodeError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise AudioDecodeError(f"{p}: file is empty")
    try:
        container = av.open(str(p), mode="r")
    except PermissionError as e:
        raise AudioDecodeError(f"{p}: permission denied") from e
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise AudioDecodeError(f"{p}: not a readable audio or video file ({_reason(e)})") from e
    with container:
        if not container.streams.audio:
            raise AudioDecodeError(f"{p}: the file has no audio stream")
        stream = container.streams.audio[0]
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > max_seconds:
            raise AudioDecodeError(
                f"{p}: audio is {declared:.0f} s long; the limit is {max_seconds:.0f} s"
            )
        samples = _decode_stream(container, stream, max_seconds, p)
    if len(samples) == 0:
        raise AudioDecodeError(f"{p}: the audio stream contains no samples")
    return samples


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _decode_stream(container, stream, max_seconds: float, p: Path) -> np.ndarray:
    """Decode like a player does: a few undecodable packets (a glued-on second
    MP3, a damaged sector) are skipped, but a stream that is mostly damage is an error."""
    resampler = StreamResampler()
    chunks: list[np.ndarray] = []
    limit = int(max_seconds * SAMPLE_RATE)
    total = packets = bad = 0
    try:
        for packet in container.demux(stream):
            packets += 1
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                bad += 1
                continue
            for frame in frames:
                out = resampler.push(frame)
                chunks.append(out)
                total += len(out)
            if total > limit:
                raise AudioDecodeError(f"{p}: audio is longer than the limit of {max_seconds:.0f} s")
        chunks.append(resampler.flush())
    except av.error.FFmpegError as e:
        raise AudioDecodeError(f"{p}: the audio is corrupt ({_reason(e)})") from e
    if bad and bad > MAX_BAD_PACKET_FRACTION * packets:
        raise AudioDecodeError(f"{p}: the audio is corrupt ({bad} of {packets} packets undecodable)")
    if bad:
        log.warning("%s: skipped %d undecodable audio packets of %d", p, bad, packets)
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def _reason(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def probe_seconds(path: str | Path) -> float | None:
    """Declared duration of a file's first audio stream, without decoding (None if unknown)."""
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.audio:
                return None
            return _declared_seconds(container, container.streams.audio[0])
    except (av.error.FFmpegError, OSError) as e:
        raise AudioDecodeError(f"{path}: not a readable audio or video file ({_reason(e)})") from e
