"""The mouth shape: what the audio model predicts and the renderer draws."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Fifteen visemes (the common "sil / PP / FF ..." set used by real-time avatar SDKs).
VISEMES: tuple[str, ...] = (
    "sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou",
)
N_VISEMES = len(VISEMES)


@dataclass(frozen=True)
class MouthShape:
    """One video frame's mouth.

    openness: 0 = lips together, 1 = jaw fully open.
    width:   -1 = pursed/narrow, 0 = neutral, 1 = spread (smile-like, /i/).
    rounding: 0 = none, 1 = fully rounded protruded lips (/u/, /w/).
    visemes: posterior over VISEMES (sums to 1); informational for the renderer.
    speech:  whether voice activity was detected for this frame.
    """

    openness: float = 0.0
    width: float = 0.0
    rounding: float = 0.0
    visemes: np.ndarray = field(default_factory=lambda: _one_hot(0))
    speech: bool = False

    @property
    def viseme(self) -> str:
        return VISEMES[int(np.argmax(self.visemes))]

    def as_vector(self) -> np.ndarray:
        return np.array([self.openness, self.width, self.rounding], dtype=np.float32)


def _one_hot(i: int) -> np.ndarray:
    v = np.zeros(N_VISEMES, dtype=np.float32)
    v[i] = 1.0
    return v


CLOSED = MouthShape()
