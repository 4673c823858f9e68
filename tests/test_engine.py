"""The lip-sync engine end to end: real speech, the shipped model, the default avatar."""

from __future__ import annotations

import numpy as np
import pytest

from live.engine.offline_render import analyze_audio
from live.engine.session import EngineConfig, LipSyncSession
from models.audio.mel_stream import SAMPLE_RATE
from models.mouth.feature_window import LOOKAHEAD_S
from models.mouth.mouth_shape import VISEMES
from models.mouth.mouth_smoother import MouthSmoother
from models.mouth.timeline import Timeline
from testing.media import speech_with_gaps

FPS = 25.0


@pytest.fixture(scope="module")
def predictor():
    import torch

    from models.mouth.mouth_model import MouthPredictor

    torch.set_num_threads(1)
    return MouthPredictor.load()


@pytest.fixture(scope="module")
def avatar(tmp_path_factory):
    from models.avatar.avatar import default_avatar

    return default_avatar(tmp_path_factory.mktemp("avatars"))


@pytest.fixture(scope="module")
def speech():
    return speech_with_gaps(("Front_Center", "Rear_Left"), gaps=(0.9,), lead=0.6, tail=0.7)


def _drain(session: LipSyncSession, audio: np.ndarray, chunks: list[int]) -> list:
    frames, pos = [], 0
    for n in chunks:
        session.push_audio(audio[pos : pos + n], SAMPLE_RATE)
        pos += n
        while session.ready():
            frames.append(session.next_frame(pad_silence=False))
    session.push_audio(audio[pos:], SAMPLE_RATE)
    session.end_of_stream()
    while session.pending_frames():
        frames.append(session.next_frame())
    return frames


def test_timeline_is_contiguous_and_never_drifts():
    for fps in (25.0, 30.0, 29.97):
        t = Timeline(fps)
        n = int(600 * fps)  # ten minutes
        starts = [t.frame_start_sample(i) for i in range(n + 1)]
        assert all(t.audio_range(i) == (starts[i], starts[i + 1]) for i in range(0, n, 997))
        assert abs(starts[n] - 600 * SAMPLE_RATE * (n / fps) / 600) <= 1


def test_smoother_closes_on_bilabials_silence_and_interrupt():
    s = MouthSmoother()
    post = np.zeros(len(VISEMES), np.float32)
    post[VISEMES.index("aa")] = 1
    for _ in range(5):
        opened = s.step(post, np.array([0.9, 0.1, 0.0]), speech=True)
    assert opened.openness > 0.8
    pp = np.zeros_like(post)
    pp[VISEMES.index("PP")] = 1
    assert s.step(pp, np.array([0.4, 0.0, 0.0]), speech=True).openness == 0.0
    for _ in range(3):
        s.step(post, np.array([0.9, 0.1, 0.0]), speech=True)
    s.close_now()
    shut = [s.step(post, np.array([0.9, 0.1, 0.0]), speech=False).openness for _ in range(2)]
    assert shut[-1] == 0.0


def test_streaming_matches_offline_for_any_chunking(predictor, avatar, speech):
    offline = analyze_audio(speech.audio, predictor, FPS)
    rng = np.random.default_rng(7)
    for sizes in ([160] * 2000, list(rng.integers(1, 4000, 400)), [len(speech.audio)]):
        session = LipSyncSession(avatar, predictor, EngineConfig(fps=FPS))
        frames = _drain(session, speech.audio, [int(s) for s in sizes])
        got = np.array([f.shape.as_vector() for f in frames[: offline.n_frames]])
        np.testing.assert_allclose(got, offline.shapes, atol=1e-5)
        # Each frame carries exactly its own slice of the input: A/V sync by construction.
        played = np.concatenate([f.audio for f in frames]).astype(np.float32) / 32767
        assert np.max(np.abs(played[: len(speech.audio)] - speech.audio)) < 2e-4


def test_mouth_opens_in_speech_and_closes_in_silence(predictor, speech):
    track = analyze_audio(speech.audio, predictor, FPS)
    t = (np.arange(track.n_frames) + 0.5) / FPS
    opening = track.shapes[:, 0]
    in_gap = np.array([speech.is_silence(x, margin=0.12) for x in t])
    assert in_gap.sum() > 20
    assert np.mean(opening[in_gap] == 0.0) >= 0.95
    for a, b in speech.spans:
        inside = (t >= a) & (t < b)
        assert opening[inside].max() > 0.3, f"mouth stays shut in the phrase at {a:.2f}-{b:.2f} s"
        assert np.mean(opening[inside] > 0.05) > 0.4


def test_added_latency_is_lookahead_plus_one_frame(predictor, avatar):
    session = LipSyncSession(avatar, predictor, EngineConfig(fps=FPS))
    timeline = session.timeline
    pushed = 0
    for i in range(10):
        needed = timeline.samples_needed(i)
        # One sample short of the look-ahead: the frame must wait.
        session.push_audio(np.zeros(needed - 1 - pushed, np.float32), SAMPLE_RATE)
        pushed = needed - 1
        assert not session.ready()
        session.push_audio(np.zeros(1, np.float32), SAMPLE_RATE)
        pushed += 1
        assert session.ready()
        assert session.next_frame(pad_silence=False).index == i
        # The first sample of frame i can wait at most look-ahead + one frame for its frame.
        assert needed - timeline.frame_start_sample(i) <= (LOOKAHEAD_S + 1 / FPS) * SAMPLE_RATE


def test_idle_without_audio_walks_the_loop_with_lips_closed(predictor, avatar):
    session = LipSyncSession(avatar, predictor, EngineConfig(fps=FPS))
    assert session.next_frame(pad_silence=False) is None
    frames = [session.next_frame(pad_silence=True) for _ in range(8)]
    assert [f.index for f in frames] == list(range(8))
    assert all(f.shape.openness == 0.0 and not f.speaking for f in frames)
    assert all(not f.audio.any() for f in frames)
    assert frames[0].image.shape == (avatar.info.height, avatar.info.width, 3)


def test_interrupt_drops_queued_audio_and_closes_within_two_frames(predictor, avatar, speech):
    session = LipSyncSession(avatar, predictor, EngineConfig(fps=FPS))
    session.push_audio(speech.audio, SAMPLE_RATE)  # a TTS burst: seconds ahead of playback
    first_speech = int(speech.spans[0][0] * FPS) + 8
    frames = [session.next_frame() for _ in range(first_speech)]
    assert max(f.shape.openness for f in frames[-6:]) > 0.2
    assert session.buffered_seconds > 1.0
    session.interrupt()
    assert session.buffered_seconds < 1 / FPS
    after = [session.next_frame() for _ in range(6)]
    assert after[0].index == frames[-1].index + 1
    assert after[1].shape.openness == 0.0
    assert all(not f.audio.any() for f in after)
    # The session goes on: new speech after the interrupt opens the mouth again, and its
    # features match an offline pass over exactly what was played.
    session.push_audio(speech.audio, SAMPLE_RATE)
    more = [session.next_frame() for _ in range(first_speech)]
    assert max(f.shape.openness for f in more[-6:]) > 0.2
    played = np.concatenate([f.audio for f in frames + after + more]).astype(np.float32) / 32767
    offline = analyze_audio(played, predictor, FPS)
    got = np.array([f.shape.as_vector() for f in more[4:-4]])
    ref = offline.shapes[len(frames) + len(after) + 4 : len(frames) + len(after) + len(more) - 4]
    # The reference hears the int16 audio that was played, the session heard floats.
    np.testing.assert_allclose(got, ref, atol=2e-3)


def test_long_audio_keeps_its_voice_activity(predictor):
    """A minute-long file (or TTS burst) must not read as silence at its start."""
    one = speech_with_gaps(("Front_Center",), gaps=(), lead=0.3, tail=0.5).audio
    audio = np.concatenate([one] * int(np.ceil(75 * SAMPLE_RATE / len(one))))
    track = analyze_audio(audio, predictor, FPS)
    first, last = track.speech[: 10 * int(FPS)], track.speech[-10 * int(FPS) :]
    assert first.mean() > 0.5 and abs(first.mean() - last.mean()) < 0.1
    assert track.shapes[: 10 * int(FPS), 0].max() > 0.3
