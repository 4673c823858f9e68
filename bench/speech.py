"""Real human speech for benchmarks, from Debian's pocketsphinx-testdata and alsa-utils."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.audio.audio_io import load_audio
from models.audio.pcm import SAMPLE_RATE

_SOURCES = [
    Path("/usr/share/pocketsphinx/test/data/librivox"),
    Path("/usr/share/pocketsphinx/test/data/cards"),
    Path("/usr/share/sounds/alsa"),
]


def speech_files() -> list[Path]:
    files: list[Path] = []
    for d in _SOURCES:
        if d.is_dir():
            files += sorted(p for p in d.iterdir() if p.suffix in (".wav", ".raw") and "Noise" not in p.name)
    return files


def _load(path: Path) -> np.ndarray:
    if path.suffix == ".raw":  # pocketsphinx test data: headerless 16 kHz s16le
        return np.fromfile(path, dtype="<i2").astype(np.float32) / 32768
    return load_audio(path)


def long_speech(seconds: float, pause_s: float = 0.6) -> np.ndarray:
    """``seconds`` of real speech: the recordings in turn, with pauses between them."""
    files = speech_files()
    if not files:
        raise SystemExit("no real speech found: install pocketsphinx-testdata or alsa-utils")
    parts, total, i = [], 0, 0
    target = int(seconds * SAMPLE_RATE)
    while total < target:
        clip = _load(files[i % len(files)])
        parts += [clip, np.zeros(int(pause_s * SAMPLE_RATE), np.float32)]
        total += len(clip) + int(pause_s * SAMPLE_RATE)
        i += 1
    return np.concatenate(parts)[:target].astype(np.float32)
