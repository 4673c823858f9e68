"""Time-aligned phones: what the TTS engines and the forced aligner produce."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Alphabet = Literal["ipa", "arpabet", "sampa", "espeak"]


@dataclass(frozen=True)
class PhoneSpan:
    start: float  # seconds from the start of the utterance's audio
    end: float
    phone: str    # symbol in ``alphabet``; silence/pause is "" or the alphabet's pause symbol
    alphabet: Alphabet


@dataclass
class AlignedUtterance:
    audio: np.ndarray          # float32 mono, 16 kHz, in [-1, 1]
    phones: list[PhoneSpan]
    text: str
    source: str                # "engine/voice", e.g. "piper/joe", "flite/slt"
    language: str = "en"
    meta: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return len(self.audio) / 16_000
