"""Log-mel features, computed offline or incrementally with identical results.

The parameters follow Wav2Lip's audio front-end (16 kHz, 80 mels, 12.5 ms hop,
50 ms window, pre-emphasis 0.97, 55-7600 Hz, dB normalised to [-4, 4]) so that a
user-supplied Wav2Lip checkpoint can consume the same features.  Frames are not
centred (no reflect padding): frame ``k`` covers samples ``[k*HOP, k*HOP + WIN)``.
That makes streaming exact: a frame is emitted as soon as its last sample arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from models.audio.pcm import SAMPLE_RATE

N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS_VALUE = 4.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney scale: linear below 1 kHz, logarithmic above (librosa's default).
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    mel = hz / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """(N_MELS, N_FFT//2+1) Slaney-normalised triangular filters."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    mel_pts = np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2)
    hz_pts = _mel_to_hz(mel_pts)
    fdiff = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_pts[2 : N_MELS + 2] - hz_pts[:N_MELS]))[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    n = np.arange(WIN)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / WIN)).astype(np.float32)  # periodic Hann


def _frames_to_mel(emphasised: np.ndarray, n_frames: int) -> np.ndarray:
    """Mel frames from pre-emphasised samples that start on a frame boundary."""
    if n_frames <= 0:
        return np.zeros((N_MELS, 0), dtype=np.float32)
    idx = np.arange(WIN)[None, :] + HOP * np.arange(n_frames)[:, None]
    frames = emphasised[idx] * _window()[None, :]
    spec = np.abs(np.fft.rfft(frames, n=N_FFT, axis=1)).astype(np.float32)
    mel = mel_filterbank() @ spec.T
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    norm = (2 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE
    return np.clip(norm, -MAX_ABS_VALUE, MAX_ABS_VALUE).astype(np.float32)


def preemphasis(samples: np.ndarray, previous: float = 0.0) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    out = np.empty_like(x)
    if len(x):
        out[0] = x[0] - PREEMPHASIS * np.float32(previous)
        out[1:] = x[1:] - PREEMPHASIS * x[:-1]
    return out


def n_complete_frames(n_samples: int) -> int:
    return 0 if n_samples < WIN else 1 + (n_samples - WIN) // HOP


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Offline log-mel of 16 kHz mono float samples in [-1, 1]: (N_MELS, n_frames)."""
    x = np.asarray(samples, dtype=np.float32)
    return _frames_to_mel(preemphasis(x), n_complete_frames(len(x)))


@dataclass
class MelStream:
    """Incremental ``log_mel``: push samples of any chunk size, get new frames.

    Keeps only the pre-emphasised tail that the next frame still needs, so memory
    is bounded however long the stream runs.
    """

    frames_emitted: int = 0
    _tail: np.ndarray | None = None  # pre-emphasised samples from frames_emitted*HOP on
    _last_sample: float = 0.0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Append samples; return the (N_MELS, n) frames completed by them."""
        x = np.asarray(samples, dtype=np.float32)
        if len(x) == 0:
            return np.zeros((N_MELS, 0), dtype=np.float32)
        emph = preemphasis(x, self._last_sample)
        self._last_sample = float(x[-1])
        buf = emph if self._tail is None else np.concatenate([self._tail, emph])
        n = n_complete_frames(len(buf))
        mel = _frames_to_mel(buf, n)
        self._tail = buf[n * HOP :]
        self.frames_emitted += n
        return mel

    def reset(self) -> None:
        self.frames_emitted = 0
        self._tail = None
        self._last_sample = 0.0

    @classmethod
    def starting_at(cls, frame_index: int, samples: np.ndarray, previous_sample: float) -> "MelStream":
        """A stream whose next frame is ``frame_index``.

        ``samples`` are the raw stream samples from ``frame_index * HOP`` on, and
        ``previous_sample`` the one just before them (pre-emphasis reaches back one
        sample).  Used to rewind after an interrupt discards buffered audio.
        """
        stream = cls(frames_emitted=frame_index)
        stream._last_sample = float(previous_sample)
        head = np.asarray(samples, dtype=np.float32)
        stream._tail = np.zeros(0, dtype=np.float32)
        if len(head):
            stream._tail = preemphasis(head, previous_sample)
            stream._last_sample = float(head[-1])
        n = n_complete_frames(len(stream._tail))
        if n:
            raise ValueError("starting_at expects fewer samples than one complete frame beyond the start")
        return stream
