"""Streaming log-mel must equal offline log-mel, whatever the chunking."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.audio.mel_stream import (
    HOP,
    N_MELS,
    SAMPLE_RATE,
    WIN,
    MelStream,
    _hz_to_mel,
    log_mel,
    mel_filterbank,
    n_complete_frames,
)


def stream_all(samples: np.ndarray, cuts: list[int]) -> np.ndarray:
    stream = MelStream()
    parts = [stream.push(chunk) for chunk in np.split(samples, sorted(cuts))]
    out = np.concatenate(parts, axis=1)
    assert stream.frames_emitted == out.shape[1]
    return out


@st.composite
def audio_and_cuts(draw) -> tuple[np.ndarray, list[int]]:
    n = draw(st.integers(0, 6000))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["noise", "quiet", "tone", "silence"]))
    t = np.arange(n) / SAMPLE_RATE
    if kind == "noise":
        x = rng.uniform(-1, 1, n)
    elif kind == "quiet":
        x = rng.normal(0, 1e-3, n)
    elif kind == "tone":
        x = 0.8 * np.sin(2 * np.pi * rng.uniform(60, 7000) * t)
    else:
        x = np.zeros(n)
    cuts = draw(st.lists(st.integers(0, n), max_size=30))
    return x.astype(np.float32), cuts


@settings(max_examples=120, deadline=None)
@given(audio_and_cuts())
def test_streaming_equals_offline_for_any_chunking(case: tuple[np.ndarray, list[int]]) -> None:
    samples, cuts = case
    offline = log_mel(samples)
    streamed = stream_all(samples, cuts)
    assert streamed.shape == offline.shape == (N_MELS, n_complete_frames(len(samples)))
    if offline.size:
        assert np.max(np.abs(streamed - offline)) < 1e-4


def test_one_sample_chunks_and_empty_pushes() -> None:
    x = np.random.default_rng(1).uniform(-0.5, 0.5, WIN + 3 * HOP + 7).astype(np.float32)
    stream = MelStream()
    parts = []
    for v in x:
        parts.append(stream.push(np.array([v], dtype=np.float32)))
        parts.append(stream.push(np.zeros(0, dtype=np.float32)))
    streamed = np.concatenate(parts, axis=1)
    assert streamed.shape == (N_MELS, 4)
    np.testing.assert_allclose(streamed, log_mel(x), atol=1e-4)
    # A frame is emitted exactly when its last sample arrives, not later.
    sizes = [p.shape[1] for p in parts[::2]]
    assert [i for i, s in enumerate(sizes) if s] == [WIN - 1 + k * HOP for k in range(4)]


def test_fewer_samples_than_a_window_give_no_frames() -> None:
    stream = MelStream()
    assert stream.push(np.zeros(WIN - 1, dtype=np.float32)).shape == (N_MELS, 0)
    assert log_mel(np.zeros(WIN - 1, dtype=np.float32)).shape == (N_MELS, 0)
    assert stream.push(np.zeros(1, dtype=np.float32)).shape == (N_MELS, 1)


def test_reset_starts_a_fresh_stream() -> None:
    rng = np.random.default_rng(2)
    a = rng.uniform(-1, 1, 3000).astype(np.float32)
    b = rng.uniform(-1, 1, 2500).astype(np.float32)
    stream = MelStream()
    stream.push(a)
    stream.reset()
    assert stream.frames_emitted == 0
    np.testing.assert_allclose(stream.push(b), log_mel(b), atol=1e-4)


def test_output_range_silence_and_loud_tone() -> None:
    """Values are clipped to [-4, 4]; a full-scale sine sits near the top, silence at -4."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    loud = log_mel((0.9 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    silent = log_mel(np.zeros(SAMPLE_RATE, dtype=np.float32))
    assert np.all(silent == -4.0)
    assert loud.max() > 2.0
    assert loud.min() >= -4.0 and loud.max() <= 4.0


def test_440_hz_tone_peaks_in_the_band_that_contains_440_hz() -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    mel = log_mel((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    peak_band = int(np.argmax(mel.mean(axis=1)))
    fb = mel_filterbank()
    freqs = np.linspace(0, SAMPLE_RATE / 2, fb.shape[1])
    # The band whose triangular filter responds most to 440 Hz.
    expected = int(np.argmax(fb[:, np.argmin(np.abs(freqs - 440))]))
    assert abs(peak_band - expected) <= 1
    # Sanity of the scale itself: band centres are increasing and 440 Hz is low in the range.
    assert 5 < expected < 30
    assert _hz_to_mel(440.0) < _hz_to_mel(1000.0)
    # A 3 kHz tone must peak in a clearly higher band.
    high = log_mel((0.5 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32))
    assert int(np.argmax(high.mean(axis=1))) > peak_band + 20
