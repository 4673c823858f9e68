"""The engine's one audio format, defined once: 16 kHz mono, float32 in [-1, 1].

Every layer (features, VAD, TTS, codecs, the MP4 writer, tests) imports the rate
and the int16 scaling from here, so a change of convention cannot leave one
module a few percent louder or a sample rate out of step with the rest.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np

SAMPLE_RATE = 16_000
INT16_SCALE = 32768.0  # int16 ↔ float: full scale is 2**15, clipped at 32767


def int16_to_float(pcm: np.ndarray) -> np.ndarray:
    return np.asarray(pcm, dtype=np.int16).astype(np.float32) / INT16_SCALE


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """Float in [-1, 1] to int16, clipping rather than wrapping around on overload."""
    x = np.asarray(samples, dtype=np.float32) * INT16_SCALE
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def write_wav(path: str | Path | BinaryIO, samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """16-bit WAV from float or int16 samples, (n,) or (n, channels), to a path or a binary file
    object; returns its duration in seconds."""
    a = np.asarray(samples)
    pcm = a if a.dtype == np.int16 else float_to_int16(a)
    with wave.open(path if hasattr(path, "write") else str(path), "wb") as w:
        w.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
    return len(pcm) / rate


def read_wav(path: str | Path | BinaryIO) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV -> (int16 samples of its first channel, rate).

    Raises ``ValueError`` with a readable reason for anything else.
    """
    try:
        with wave.open(path if hasattr(path, "read") else str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
            rate = w.getframerate()
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            if w.getnchannels() > 1:
                data = data.reshape(-1, w.getnchannels())[:, 0]
    except (OSError, EOFError, wave.Error) as e:
        raise ValueError(f"no readable audio in {path}: {e}") from e
    return data.copy(), rate
