"""Which mel frames the mouth model sees for a given moment of video.

The window ends ``LOOKAHEAD_S`` after the moment it describes; that look-ahead is
the only part of the engine's latency that is inherent (the rest is compute), so
it is kept as short as the model's accuracy allows.
"""

from __future__ import annotations

import numpy as np

from models.audio.mel_stream import HOP, N_MELS, WIN
from models.audio.pcm import SAMPLE_RATE

LOOKAHEAD_S = 0.060          # audio after the shown moment that the model may hear
WINDOW_FRAMES = 24           # 24 mel frames = 300 ms: 240 ms of past, 60 ms of future
LOOKAHEAD_SAMPLES = int(round(LOOKAHEAD_S * SAMPLE_RATE))


def samples_needed(t: float) -> int:
    """Number of stream samples that must exist before the moment ``t`` can be rendered."""
    return int(np.floor(t * SAMPLE_RATE)) + LOOKAHEAD_SAMPLES


def last_frame_for(t: float) -> int:
    """Index of the newest mel frame whose samples all lie before ``t + LOOKAHEAD_S``.

    May be negative near the start of a stream; callers pad with silence frames.
    """
    return int(np.floor((samples_needed(t) - WIN) / HOP))


def window_for(mel: np.ndarray, t: float, first_frame: int = 0, pad_value: float = -4.0) -> np.ndarray:
    """(N_MELS, WINDOW_FRAMES) slice of ``mel`` (whose column 0 is frame ``first_frame``)
    for moment ``t``; frames outside ``mel`` read as ``pad_value`` (silence)."""
    end = last_frame_for(t) + 1 - first_frame
    start = end - WINDOW_FRAMES
    out = np.full((N_MELS, WINDOW_FRAMES), pad_value, dtype=np.float32)
    lo, hi = max(start, 0), min(end, mel.shape[1])
    if hi > lo:
        out[:, lo - start : hi - start] = mel[:, lo:hi]
    return out
