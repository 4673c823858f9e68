"""Turns the model's per-frame guesses into a steady, honest mouth.

The network's outputs jitter a little from frame to frame, and it can't know that
a voice-activity decision says "silence".  This module applies the rules a viewer
notices: lips meet on bilabials and in silence, motion is smooth but never lags
more than about half a frame, and an interrupt closes the mouth within two frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.mouth.mouth_shape import N_VISEMES, VISEMES, MouthShape

_PP = VISEMES.index("PP")
_SIL = VISEMES.index("sil")


@dataclass(frozen=True)
class SmootherConfig:
    attack: float = 0.75        # fraction of the way to a larger opening per frame
    release: float = 0.65       # fraction of the way to a smaller opening per frame
    closure_posterior: float = 0.5   # P(PP) above which the lips are shut this frame
    snap_closed: float = 0.06   # openness below this with a closed target reads as closed


@dataclass
class MouthSmoother:
    config: SmootherConfig = field(default_factory=SmootherConfig)
    _state: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.float32))

    def reset(self) -> None:
        self._state = np.zeros(3, dtype=np.float32)

    def close_now(self) -> None:
        """After an interrupt: most of the way shut at once, so lips meet within two frames."""
        self._state = self._state * 0.25

    def step(self, posteriors: np.ndarray, shape: np.ndarray, speech: bool) -> MouthShape:
        """One frame: raw model outputs (posteriors (15,), shape (3,)) → MouthShape."""
        cfg = self.config
        target = np.asarray(shape, dtype=np.float32).copy()
        posteriors = np.asarray(posteriors, dtype=np.float32)
        if not speech:
            target[:] = 0.0
            posteriors = _one_hot(_SIL)
        rate = np.where(target > self._state, cfg.attack, cfg.release).astype(np.float32)
        # Width/rounding may go negative; the attack/release choice only matters for openness.
        self._state = self._state + rate * (target - self._state)
        bilabial = speech and posteriors[_PP] >= cfg.closure_posterior
        closed = bilabial or (target[0] <= 0.0 and self._state[0] < cfg.snap_closed)
        if closed:
            self._state[0] = 0.0
        return MouthShape(
            openness=float(np.clip(self._state[0], 0.0, 1.0)),
            width=float(np.clip(self._state[1], -1.0, 1.0)),
            rounding=float(np.clip(self._state[2], 0.0, 1.0)),
            visemes=posteriors,
            speech=bool(speech),
        )


def _one_hot(i: int) -> np.ndarray:
    v = np.zeros(N_VISEMES, dtype=np.float32)
    v[i] = 1.0
    return v
