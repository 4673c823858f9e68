"""Streaming 16 kHz → 48 kHz for the outgoing audio, with no look-ahead.

aiortc's Opus encoder resamples anything that isn't 48 kHz itself, and its
resampler holds each 20 ms packet back until part of the *next* one has arrived
(swresample needs a few future samples).  That made every audio packet leave one
packet (20 ms) after its video frame.  Fed 48 kHz it passes frames straight
through, so we upsample here with a causal polyphase FIR: each chunk's output is
complete when the chunk is, at a constant 0.5 ms group delay.
"""

from __future__ import annotations

import numpy as np

FACTOR = 3
_TAPS = 48                 # 16 per phase
_CUTOFF_HZ = 7600.0        # just under the 8 kHz Nyquist of the input
_OUT_RATE = 48_000


def _design() -> np.ndarray:
    n = np.arange(_TAPS) - (_TAPS - 1) / 2
    h = 2 * _CUTOFF_HZ / _OUT_RATE * np.sinc(2 * _CUTOFF_HZ / _OUT_RATE * n) * np.kaiser(_TAPS, 6.0)
    h *= FACTOR / h.sum()  # zero-stuffing divides the level by the factor; restore it
    return h.astype(np.float32)


_PHASES = [_design()[p::FACTOR] for p in range(FACTOR)]
_K = len(_PHASES[0])
DELAY_S = (_TAPS - 1) / 2 / _OUT_RATE


class Upsampler3:
    def __init__(self) -> None:
        self._history = np.zeros(_K - 1, dtype=np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """float32 16 kHz chunk -> float32 48 kHz chunk of exactly 3x the length."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not len(x):
            return np.zeros(0, np.float32)
        ext = np.concatenate([self._history, x])
        self._history = ext[len(ext) - (_K - 1) :]
        out = np.empty(len(x) * FACTOR, dtype=np.float32)
        for p, h in enumerate(_PHASES):
            out[p::FACTOR] = np.convolve(ext, h, mode="valid")
        return out
