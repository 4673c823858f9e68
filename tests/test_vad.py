"""Voice activity on real speech, silence, clicks and quiet hiss."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.audio.vad import VadConfig, VadError, VoiceActivity, decide, frame_decisions, speech_mask
from testing.media import speech_with_gaps

HOP = 160  # 10 ms resolution for the checks


@pytest.fixture(scope="module")
def track():
    return speech_with_gaps(
        clips=("Front_Center", "librivox:4", "Rear_Right"), gaps=(0.9, 0.7), lead=0.6, tail=0.8
    )


def reference_rules(voiced: list[bool], min_frames: int, hangover: int) -> np.ndarray:
    """The rules as a person would state them, one frame at a time, with hindsight."""
    out = np.zeros(len(voiced), dtype=bool)
    on, run, last = False, 0, -1
    for j, v in enumerate(voiced):
        run = run + 1 if v else 0
        if on:
            last = j if v else last
            on = j - last <= hangover
            out[j] = on
        if not on and run >= min_frames:
            on, last = True, j
            out[j - run + 1 : j + 1] = True
    return out


@settings(max_examples=300, deadline=None)
@given(
    voiced=st.lists(st.booleans(), max_size=120),
    min_frames=st.integers(1, 6),
    hangover=st.integers(0, 10),
)
def test_vectorised_rules_equal_the_frame_by_frame_rules(voiced, min_frames, hangover) -> None:
    np.testing.assert_array_equal(decide(np.array(voiced, dtype=bool), min_frames, hangover),
                                  reference_rules(voiced, min_frames, hangover))


def test_speech_detected_in_speech_and_not_in_silence(track) -> None:
    cfg = VadConfig()
    mask = speech_mask(track.audio, HOP, cfg)
    t = np.arange(len(mask)) * HOP / track.rate
    for a, b in track.spans:
        inside = mask[(t >= a) & (t < b)]
        assert inside.mean() > 0.8, (a, b, inside.mean())
        onset = t[np.flatnonzero(mask & (t >= a - 0.2))[0]]
        assert abs(onset - a) <= 0.06, (a, onset)
    # Silence more than the hangover (+ one frame) after speech: the mouth must be shut.
    hang = (cfg.hangover_ms + cfg.frame_ms) / 1000
    clear = np.array([track.is_silence(x, margin=0.0) and not track.is_speech(x - hang) for x in t])
    assert clear.sum() > 100
    assert not mask[clear].any()


def test_hangover_keeps_speech_on_after_the_last_voiced_frame(track) -> None:
    raw = speech_mask(track.audio, HOP, VadConfig(min_speech_ms=0, hangover_ms=0))
    short = speech_mask(track.audio, HOP, VadConfig(hangover_ms=0))
    long = speech_mask(track.audio, HOP, VadConfig(hangover_ms=300))
    last_voiced = np.flatnonzero(raw)[-1] * HOP / track.rate
    end_long = np.flatnonzero(long)[-1] * HOP / track.rate
    assert end_long - last_voiced == pytest.approx(0.300, abs=0.021)
    assert np.all(long[short])  # hangover only ever adds speech
    assert long.sum() > short.sum() + 3 * 30  # ... and bridges the pauses between words


def _click_signal() -> np.ndarray:
    x = np.zeros(16000, dtype=np.float32)
    x[8000:8160] = np.random.default_rng(0).uniform(-0.8, 0.8, 160)  # a 10 ms click
    return x


def test_a_click_does_not_open_the_mouth() -> None:
    x = _click_signal()
    assert speech_mask(x, HOP, VadConfig(min_speech_ms=0)).any()  # raw webrtcvad fires on it
    assert not speech_mask(x, HOP, VadConfig()).any()


def test_energy_floor_ignores_faint_sound(track) -> None:
    faint = track.audio * np.float32(10 ** (-45 / 20))  # loudest 10 ms now below -55 dBFS
    assert speech_mask(faint, HOP, VadConfig(energy_floor_db=-200)).any()  # webrtcvad alone hears it
    assert not speech_mask(faint, HOP, VadConfig()).any()


@settings(max_examples=8, deadline=None)
@given(cuts=st.lists(st.integers(0, 10**9), max_size=25), frame_ms=st.sampled_from([10, 20, 30]))
def test_streaming_agrees_with_offline_for_any_chunking(track, cuts, frame_ms) -> None:
    cfg = VadConfig(frame_ms=frame_ms)
    audio = track.audio
    stream = VoiceActivity(cfg)
    for chunk in np.split(audio, sorted(c % (len(audio) + 1) for c in cuts)):
        stream.push(chunk)
    assert stream.samples_pushed == len(audio)
    offline = speech_mask(audio, HOP, cfg)
    streamed = np.array([stream.is_speech_at(i) for i in range(0, len(audio), HOP)])
    np.testing.assert_array_equal(streamed, offline)


def test_streaming_decisions_are_final_after_min_speech(track) -> None:
    """What the engine reads at ``final_until`` never changes later."""
    cfg = VadConfig()
    offline = frame_decisions(track.audio, cfg)
    stream = VoiceActivity(cfg)
    f = cfg.frame_samples
    for start in range(0, len(track.audio), 640):  # 40 ms pushes, like 25 fps
        stream.push(track.audio[start : start + 640])
        final_frames = stream.final_until // f
        got = [stream.is_speech_at(j * f) for j in range(max(0, final_frames - 10), final_frames)]
        np.testing.assert_array_equal(got, offline[max(0, final_frames - 10) : final_frames])
    assert stream.samples_pushed - stream.final_until <= cfg.min_speech_ms * 16 + f


def test_history_is_bounded_and_reset_restarts(track) -> None:
    stream = VoiceActivity(VadConfig(), history_s=1.0)
    stream.push(track.audio)
    first_speech = int(track.spans[0][0] * 16000) + 3200
    assert stream.is_speech_at(first_speech) is False  # forgotten: older than 1 s
    last_speech = int(track.spans[-1][1] * 16000) - 1600
    assert len(track.audio) - last_speech < 16000 and stream.is_speech_at(last_speech)
    stream.reset()
    assert stream.samples_pushed == 0 and not stream.is_speech_at(0)


def test_bad_configuration_is_a_clear_error() -> None:
    with pytest.raises(VadError, match="aggressiveness"):
        VadConfig(aggressiveness=5)
    with pytest.raises(VadError, match="frame_ms"):
        VadConfig(frame_ms=25)
    with pytest.raises(VadError, match="hop"):
        speech_mask(np.zeros(100, np.float32), 0)
