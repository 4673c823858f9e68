"""The session timeline: how video frame numbers map onto audio samples.

Frame ``i`` is shown during ``[i/fps, (i+1)/fps)`` and plays the stream samples
``audio_range(i)``; its mouth describes the frame's midpoint.  Everything that
must stay in sync (the mouth, the audio sent with the frame, RTP timestamps)
is derived from these three functions, so A/V alignment holds by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.audio.pcm import SAMPLE_RATE
from models.mouth.feature_window import samples_needed


@dataclass(frozen=True)
class Timeline:
    fps: float = 25.0

    def __post_init__(self) -> None:
        if not 1.0 <= self.fps <= 60.0:
            raise ValueError(f"fps must be between 1 and 60, got {self.fps}")

    def frame_start_sample(self, i: int) -> int:
        # Rounded per frame (not accumulated) so 30 fps never drifts from 16 kHz.
        return int(round(i * SAMPLE_RATE / self.fps))

    def audio_range(self, i: int) -> tuple[int, int]:
        return self.frame_start_sample(i), self.frame_start_sample(i + 1)

    def moment(self, i: int) -> float:
        """Seconds from stream start to the midpoint of frame ``i``."""
        return (i + 0.5) / self.fps

    def samples_needed(self, i: int) -> int:
        """Samples that must be in the stream before frame ``i`` can be rendered."""
        return max(samples_needed(self.moment(i)), self.frame_start_sample(i + 1))

    def frames_covering(self, n_samples: int) -> int:
        """Number of frames needed to play ``n_samples`` of audio completely."""
        i = int(n_samples * self.fps // SAMPLE_RATE)
        while self.frame_start_sample(i) < n_samples:
            i += 1
        return i
