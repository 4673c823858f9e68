"""Real test media, made on the fly: tones, real human speech, encoded files,
videos with a real face, damaged files, and a decoder that reads files back the
way a player does.  Shared by everybody's tests; nothing here is mocked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np

from models.audio import pcm
from models.audio.audio_io import StreamResampler, frame_to_mono, load_audio
from models.audio.pcm import SAMPLE_RATE, float_to_int16

ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")

# Container suffix -> (audio codec, video codec); what a user's files typically hold.
DEFAULT_CODECS: dict[str, tuple[str, str | None]] = {
    ".wav": ("pcm_s16le", None),
    ".mp3": ("libmp3lame", None),
    ".m4a": ("aac", None),
    ".aac": ("aac", None),
    ".ogg": ("libopus", None),
    ".opus": ("libopus", None),
    ".flac": ("flac", None),
    ".mka": ("libopus", None),
    ".webm": ("libopus", "libvpx"),
    ".mp4": ("aac", "libx264"),
    ".mov": ("aac", "libx264"),
    ".mkv": ("aac", "libx264"),
}
_FORMAT_FOR_SUFFIX = {".m4a": "ipod", ".aac": "adts", ".opus": "ogg", ".mka": "matroska", ".mkv": "matroska"}


# ---------------------------------------------------------------------------
# signals


def tone(
    freq: float,
    seconds: float,
    rate: int = SAMPLE_RATE,
    amplitude: float = 0.5,
    channels: int = 1,
) -> np.ndarray:
    """Sine as float32: (n,) for mono, (n, channels) otherwise (same signal in each)."""
    t = np.arange(int(round(seconds * rate))) / rate
    x = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return x if channels == 1 else np.repeat(x[:, None], channels, axis=1)


def dominant_frequency(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Frequency of the strongest spectral peak (Hann window, parabolic refinement)."""
    x = np.asarray(samples, dtype=np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + offset) * rate / len(x)


def rms_envelope(samples: np.ndarray, hop: int, win: int | None = None) -> np.ndarray:
    """RMS per hop (window ``win`` centred on each hop, default = hop)."""
    win = win or hop
    x = np.asarray(samples, dtype=np.float64)
    n = len(x) // hop
    padded = np.pad(x, (win // 2, win))
    return np.array([np.sqrt(np.mean(padded[i * hop + hop // 2 : i * hop + hop // 2 + win] ** 2)) for i in range(n)])


# ---------------------------------------------------------------------------
# real speech


@lru_cache(maxsize=16)
def _speech_cached(path: str) -> np.ndarray:
    return load_audio(path)


def speech_sample(name: str = "Front_Center") -> np.ndarray:
    """A real human recording at 16 kHz mono float32 (a copy; mutate freely).

    ``name`` is an alsa-utils sound ("Front_Center", "Rear_Left", ... the text is
    the name; ~1.5 s) or "librivox:<i>" for the i-th LibriVox clip (3-7 s).
    """
    if name.startswith("librivox:"):
        path = librivox_clips()[int(name.split(":", 1)[1])][0]
    else:
        path = ALSA_SOUNDS / f"{name}.wav"
    return _speech_cached(str(path)).copy()


def librivox_clips() -> list[tuple[Path, str]]:
    """(wav path, transcript) of the LibriVox clips in pocketsphinx-testdata."""
    out = []
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        text, _, fileid = line.rpartition("(")
        words = text.replace("<s>", "").replace("</s>", "").strip()
        out.append((LIBRIVOX / f"{fileid.rstrip(') ')}.wav", words))
    return out


def trim_silence(samples: np.ndarray, threshold_db: float = -30.0, hop: int = 160) -> np.ndarray:
    """Cut leading/trailing parts quieter than ``threshold_db`` below the loudest 10 ms."""
    env = rms_envelope(samples, hop)
    loud = np.flatnonzero(env > env.max() * 10 ** (threshold_db / 20))
    if len(loud) == 0:
        return samples[:0]
    return samples[loud[0] * hop : (loud[-1] + 1) * hop]


@dataclass
class SpeechTrack:
    """Real speech separated by exact silences; ``spans`` are (start_s, end_s) of speech."""

    audio: np.ndarray
    spans: list[tuple[float, float]]
    rate: int = SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.rate

    def is_speech(self, t: float, margin: float = 0.0) -> bool:
        return any(a - margin <= t < b + margin for a, b in self.spans)

    def is_silence(self, t: float, margin: float = 0.0) -> bool:
        return not self.is_speech(t, margin)


def speech_with_gaps(
    clips: Sequence[str] = ("Front_Center", "Rear_Left", "Front_Right"),
    gaps: Sequence[float] = (0.8, 0.6),
    lead: float = 0.5,
    tail: float = 0.5,
    noise_db: float | None = None,
) -> SpeechTrack:
    """Trimmed real speech clips with digital silence (or noise at ``noise_db``
    dBFS) of known length before, between and after them."""
    if len(gaps) != len(clips) - 1:
        raise ValueError("need exactly one gap between each pair of clips")
    parts: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    pos = 0

    def silence(seconds: float) -> None:
        nonlocal pos
        parts.append(np.zeros(int(round(seconds * SAMPLE_RATE)), dtype=np.float32))
        pos += len(parts[-1])

    silence(lead)
    for i, name in enumerate(clips):
        speech = trim_silence(speech_sample(name))
        spans.append((pos / SAMPLE_RATE, (pos + len(speech)) / SAMPLE_RATE))
        parts.append(speech)
        pos += len(speech)
        silence(gaps[i] if i < len(gaps) else tail)
    audio = np.concatenate(parts)
    if noise_db is not None:
        rng = np.random.default_rng(0)
        audio = audio + rng.normal(0, 10 ** (noise_db / 20), len(audio)).astype(np.float32)
    return SpeechTrack(audio.astype(np.float32), spans)


# ---------------------------------------------------------------------------
# writing files


def write_wav(path: str | Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """16-bit PCM WAV from float ([-1, 1]) or int16 samples, (n,) or (n, channels)."""
    pcm.write_wav(path, samples, rate)
    return Path(path)


def encode_audio(
    path: str | Path,
    samples: np.ndarray,
    rate: int = SAMPLE_RATE,
    codec: str | None = None,
    bitrate: int | None = None,
) -> Path:
    """Encode float/int16 samples ((n,) or (n, channels)) into the container named
    by the suffix (.wav .mp3 .m4a .aac .ogg .opus .flac .mka .webm .mp4 .mov .mkv)."""
    path = Path(path)
    audio_codec = codec or DEFAULT_CODECS[path.suffix.lower()][0]
    with av.open(str(path), "w", format=_FORMAT_FOR_SUFFIX.get(path.suffix.lower())) as container:
        _add_audio(container, samples, rate, audio_codec, bitrate)
    return path


def make_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float = 25.0,
    codec: str | None = None,
    audio: np.ndarray | None = None,
    audio_rate: int = SAMPLE_RATE,
    audio_codec: str | None = None,
) -> Path:
    """Small test video (mp4/mov/mkv/webm by suffix) from BGR uint8 frames, with
    optional audio ((n,) or (n, channels), float or int16) starting at time 0."""
    path = Path(path)
    v_default = DEFAULT_CODECS.get(path.suffix.lower(), ("aac", "libx264"))
    rate = Fraction(fps).limit_denominator(1001)
    frames = list(frames)
    if not frames:
        raise ValueError("make_video needs at least one frame")
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format=_FORMAT_FOR_SUFFIX.get(path.suffix.lower())) as container:
        stream = container.add_stream(codec or v_default[1], rate=rate)
        stream.width, stream.height = w - w % 2, h - h % 2
        stream.pix_fmt = "yuv420p"
        encoded: list[av.Packet] = []
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[: stream.height, : stream.width]), format="bgr24")
            frame.pts = i
            encoded.extend(stream.encode(frame))
        encoded.extend(stream.encode(None))
        if audio is not None:
            _add_audio(container, audio, audio_rate, audio_codec or v_default[0], None)
        container.mux(encoded)
    return path


def _add_audio(container, samples: np.ndarray, rate: int, codec: str, bitrate: int | None) -> None:
    a = np.asarray(samples)
    x = a.astype(np.float32) / 32768.0 if a.dtype == np.int16 else a.astype(np.float32)
    if x.ndim == 1:
        x = x[:, None]
    channels = x.shape[1]
    supported = av.Codec(codec, "w").audio_rates
    out_rate = rate if not supported or rate in supported else 48_000
    if out_rate != rate:
        x = np.stack([_resample(x[:, c], rate, out_rate) for c in range(channels)], axis=1)
    layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")
    stream = container.add_stream(codec, rate=out_rate, layout=layout)
    if bitrate:
        stream.bit_rate = bitrate
    fmt = stream.codec_context.format
    size = stream.codec_context.frame_size or 1024
    pts = 0
    for i in range(0, len(x), size):
        chunk = x[i : i + size]
        frame = av.AudioFrame.from_ndarray(_as_format(chunk, fmt), format=fmt.name, layout=layout)
        frame.sample_rate = out_rate
        frame.pts = pts
        pts += len(chunk)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _resample(x: np.ndarray, rate: int, out_rate: int) -> np.ndarray:
    r = StreamResampler(out_rate)
    return np.concatenate([r.push(x, rate), r.flush()])


def _as_format(chunk: np.ndarray, fmt: av.AudioFormat) -> np.ndarray:
    """(n, channels) float32 to the array layout PyAV expects for ``fmt``."""
    kind = fmt.name.rstrip("p")
    if kind == "s16":
        data = float_to_int16(chunk)
    elif kind == "s32":
        data = np.clip(np.round(chunk.astype(np.float64) * 2**31), -(2**31), 2**31 - 1).astype(np.int32)
    elif kind == "flt":
        data = chunk.astype(np.float32)
    elif kind == "dbl":
        data = chunk.astype(np.float64)
    else:
        raise ValueError(f"test helper does not handle sample format {fmt.name}")
    return np.ascontiguousarray(data.T) if fmt.is_planar else np.ascontiguousarray(data.reshape(1, -1))


# ---------------------------------------------------------------------------
# a real face


ASTRONAUT_FACE_CENTER = (225.0, 130.0)  # FaceMesh box of skimage's astronaut: x 178-272, y 72-175


@lru_cache(maxsize=1)
def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


def face_frames(seconds: float = 2.0, size: tuple[int, int] = (256, 256), fps: float = 25.0) -> list[np.ndarray]:
    """BGR frames (size = (width, height)) of the astronaut's head drifting and
    zooming slowly, like a person sitting in front of a camera."""
    img = astronaut_bgr()
    w, h = size
    n = max(1, int(round(seconds * fps)))
    cx, cy = ASTRONAUT_FACE_CENTER
    frames = []
    for i in range(n):
        t = i / fps
        scale = 1.0 + 0.05 * np.sin(2 * np.pi * 0.4 * t)
        side = 250.0 / scale  # about 2.5 face heights of context
        x0 = cx + 8 * np.sin(2 * np.pi * 0.3 * t) - side * w / max(w, h) / 2
        y0 = cy + 5 * np.sin(2 * np.pi * 0.5 * t + 1) - side * h / max(w, h) / 2
        # Affine crop-and-resize keeps sub-pixel motion smooth.
        m = np.array([[w / (side * w / max(w, h)), 0, 0], [0, h / (side * h / max(w, h)), 0]], dtype=np.float64)
        m[0, 2] = -x0 * m[0, 0]
        m[1, 2] = -y0 * m[1, 1]
        frames.append(cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return frames


def face_video(
    path: str | Path,
    seconds: float = 2.0,
    size: tuple[int, int] = (256, 256),
    fps: float = 25.0,
    codec: str | None = None,
    audio: np.ndarray | None = None,
    audio_rate: int = SAMPLE_RATE,
) -> Path:
    """A video of a real face (skimage's astronaut, moving slightly), optional audio."""
    return make_video(path, face_frames(seconds, size, fps), fps, codec, audio, audio_rate)


# ---------------------------------------------------------------------------
# damage


def corrupt_file(src: str | Path, dst: str | Path, mode: str = "truncate", fraction: float = 0.5, seed: int = 0) -> Path:
    """Copy ``src`` to ``dst`` damaged: "truncate" keeps the first ``fraction`` of
    the bytes; "garble" overwrites ``fraction`` of them (after the first 64) with
    random bytes; "header" garbles the first 256 bytes only."""
    data = bytearray(Path(src).read_bytes())
    rng = np.random.default_rng(seed)
    if mode == "truncate":
        data = data[: int(len(data) * fraction)]
    elif mode == "garble":
        idx = rng.choice(np.arange(64, len(data)), size=int((len(data) - 64) * fraction), replace=False)
        for i, b in zip(idx, rng.integers(0, 256, len(idx))):
            data[i] = int(b)
    elif mode == "header":
        data[: min(256, len(data))] = rng.integers(0, 256, min(256, len(data)), dtype=np.uint8).tobytes()
    else:
        raise ValueError(f"unknown corruption mode {mode!r}")
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


# ---------------------------------------------------------------------------
# reading back like a player


@dataclass
class DecodedMedia:
    """A file as a player presents it: frames with their display times, and the
    audio on the same clock (``audio[0]`` plays at ``audio_start`` seconds)."""

    frames: list[np.ndarray] = field(default_factory=list)  # BGR
    frame_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))  # mono
    audio_rate: int = 0
    audio_start: float = 0.0
    duration: float | None = None  # container duration, seconds

    def audio_time(self, index: int | np.ndarray) -> float | np.ndarray:
        return self.audio_start + np.asarray(index) / self.audio_rate


def decode_media(path: str | Path, video: bool = True, audio: bool = True) -> DecodedMedia:
    """Decode every frame, honouring stream start times and edit lists (as the
    demuxer applies them), and place the audio by its timestamps."""
    out = DecodedMedia()
    with av.open(str(path)) as c:
        out.duration = c.duration / av.time_base if c.duration is not None else None
        if video and c.streams.video:
            times = []
            for frame in c.decode(c.streams.video[0]):
                out.frames.append(frame.to_ndarray(format="bgr24"))
                times.append(frame.time)
            out.frame_times = np.array(times, dtype=np.float64)
    if audio:
        with av.open(str(path)) as c:
            if c.streams.audio:
                _decode_audio_timeline(c, out)
    return out


def _decode_audio_timeline(c, out: DecodedMedia) -> None:
    pieces: list[tuple[float, np.ndarray]] = []
    for frame in c.decode(c.streams.audio[0]):
        out.audio_rate = frame.sample_rate
        pieces.append((frame.time, frame_to_mono(frame)))
    if not pieces:
        return
    start = pieces[0][0]
    end = max(round((t - start) * out.audio_rate) + len(x) for t, x in pieces)
    timeline = np.zeros(end, dtype=np.float32)
    for t, x in pieces:
        at = round((t - start) * out.audio_rate)
        timeline[at : at + len(x)] = x
    out.audio, out.audio_start = timeline, start
