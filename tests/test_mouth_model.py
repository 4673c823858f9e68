"""The shipped mouth model: loading, validation of its inputs, and behaviour on real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.audio.mel_stream import N_MELS, log_mel
from models.mouth.feature_window import WINDOW_FRAMES, window_for
from models.mouth.mouth_model import (
    DEFAULT_CHECKPOINT,
    MouthModelError,
    MouthNet,
    MouthPredictor,
    feature_hash,
    load_checkpoint,
    save_checkpoint,
)
from models.mouth.mouth_shape import N_VISEMES, VISEMES, MouthShape

ALSA = Path("/usr/share/sounds/alsa")
FPS = 25.0


@pytest.fixture(scope="module")
def predictor() -> MouthPredictor:
    return MouthPredictor.load()


def load_wav(path: Path) -> np.ndarray:
    from models.audio.audio_io import load_audio

    return load_audio(path)


def track(pred: MouthPredictor, audio: np.ndarray, step: float = 1 / FPS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted (times, posteriors, shapes) for the audio, as the live engine cuts windows."""
    mel = log_mel(audio)
    times = np.arange(0.0, len(audio) / 16000, step)
    post, shape = pred.predict_arrays(np.stack([window_for(mel, t) for t in times]))
    return times, post, shape


def rms_db(audio: np.ndarray, times: np.ndarray, half: float = 0.06) -> np.ndarray:
    out = []
    for t in times:
        seg = audio[max(0, int((t - half) * 16000)) : int((t + half) * 16000)]
        out.append(20 * np.log10(np.sqrt(np.mean(seg.astype(np.float64) ** 2)) + 1e-9) if len(seg) else -200)
    return np.array(out)


# --------------------------------------------------------------------------- checkpoint
def test_shipped_checkpoint_is_small_and_documented():
    assert DEFAULT_CHECKPOINT.is_file()
    assert DEFAULT_CHECKPOINT.stat().st_size <= 2_000_000
    net, meta = load_checkpoint(DEFAULT_CHECKPOINT)
    assert 50_000 <= sum(p.numel() for p in net.parameters()) <= 300_000
    assert meta["feature_hash"] == feature_hash()
    assert meta["best_val"]["viseme_acc"] > 0.5
    assert DEFAULT_CHECKPOINT.with_suffix(".json").is_file()


def test_missing_and_corrupt_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(MouthModelError, match="not found"):
        MouthPredictor.load(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(MouthModelError, match="unreadable"):
        MouthPredictor.load(bad)
    other = tmp_path / "other.pt"
    torch.save({"something": torch.zeros(3)}, other)
    with pytest.raises(MouthModelError, match="not a lipstream"):
        MouthPredictor.load(other)


def test_feature_mismatch_is_detected_at_load(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    save_checkpoint(MouthNet(), path, {"note": "test"})
    assert load_checkpoint(path)[1] == {"note": "test"}
    import models.mouth.mouth_model as mm

    monkeypatch.setattr(mm.mel_stream, "FMAX", 8000.0)
    with pytest.raises(MouthModelError, match="different audio features.*fmax"):
        load_checkpoint(path)
    monkeypatch.undo()
    # same parameters, different computation: the probe catches it
    blob = torch.load(path, weights_only=True)
    blob["feature_probe"] = blob["feature_probe"] + 0.5
    torch.save(blob, path)
    with pytest.raises(MouthModelError, match="front-end computes different values"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- predictor
def test_predictions_are_in_range_for_any_input(predictor):
    rng = np.random.default_rng(0)
    windows = rng.uniform(-4, 4, size=(64, N_MELS, WINDOW_FRAMES)).astype(np.float32)
    post, shape = predictor.predict_arrays(windows)
    assert post.shape == (64, N_VISEMES) and shape.shape == (64, 3)
    np.testing.assert_allclose(post.sum(1), 1.0, atol=1e-5)
    assert (shape[:, 0] >= 0).all() and (shape[:, 0] <= 1).all()
    assert (np.abs(shape[:, 1]) <= 1).all() and (shape[:, 2] >= 0).all() and (shape[:, 2] <= 1).all()
    shapes = predictor.predict(windows[:3])
    assert all(isinstance(s, MouthShape) for s in shapes)
    single = predictor.predict_arrays(windows[0])  # a bare (80, 24) window is batch 1
    np.testing.assert_allclose(single[1][0], shape[0], atol=1e-5)


def test_bad_windows_are_rejected(predictor):
    with pytest.raises(MouthModelError, match="shape"):
        predictor.predict_arrays(np.zeros((2, 40, WINDOW_FRAMES)))
    bad = np.zeros((1, N_MELS, WINDOW_FRAMES), np.float32)
    bad[0, 3, 4] = np.nan
    with pytest.raises(MouthModelError, match="NaN"):
        predictor.predict_arrays(bad)


def test_digital_silence_is_exactly_closed(predictor):
    window = np.full((1, N_MELS, WINDOW_FRAMES), -4.0, np.float32)
    (shape,) = predictor.predict(window)
    assert shape.openness == 0.0
    assert shape.viseme == "sil" and not shape.speech


def test_inference_uses_one_thread_by_default():
    MouthPredictor.load()
    assert torch.get_num_threads() == 1


# --------------------------------------------------------------------------- real speech
@pytest.mark.skipif(not ALSA.is_dir(), reason="alsa-utils sounds not installed")
@pytest.mark.parametrize("name", ["Front_Center", "Rear_Left", "Side_Right"])
def test_real_voice_opens_in_speech_and_closes_in_silence(predictor, name):
    audio = load_wav(ALSA / f"{name}.wav")
    times, post, shape = track(predictor, audio)
    level = rms_db(audio, times)
    loud = level > level.max() - 12          # the vowels' neighbourhood
    quiet = level < level.max() - 45         # clear silence
    assert loud.sum() >= 3 and quiet.sum() >= 3
    assert shape[loud, 0].max() > 0.45
    assert np.median(shape[loud, 0]) > 0.2
    assert (shape[quiet, 0] < 0.1).mean() >= 0.9
    assert (post[quiet].argmax(1) == VISEMES.index("sil")).mean() >= 0.9


def test_pink_noise_is_not_read_as_wide_open_speech(predictor):
    audio = load_wav(ALSA / "Noise.wav") if (ALSA / "Noise.wav").exists() else None
    if audio is None:
        pytest.skip("alsa-utils sounds not installed")
    _, _, shape = track(predictor, audio)
    assert np.median(shape[:, 0]) < 0.45


def test_lips_close_on_m_and_open_on_vowels_in_real_speech(predictor):
    rs = pytest.importorskip("models.training.real_speech")
    recs = {r.id: r for r in rs.discover()}
    wanted = ["librivox/sense_and_sensibility_01_austen_64kb-0930", "psphinx/something"]
    recs = [recs[k] for k in wanted if k in recs]
    if not recs:
        pytest.skip("pocketsphinx-testdata not installed")
    aligner = rs.Aligner()
    m_min, vowel_max = [], []
    for rec in recs:
        audio = rs.read_audio(rec)
        phones = aligner.align(audio, rec.text)
        times, _, shape = track(predictor, audio, step=0.01)
        for p in phones:
            inside = (times >= p.start) & (times < p.end)
            if not inside.any():
                continue
            if p.phone in ("M", "B", "P"):
                m_min.append(shape[inside, 0].min())
            elif p.phone in ("AA", "AE", "AY", "EY", "AW", "AH"):
                vowel_max.append(shape[inside, 0].max())
    assert len(m_min) >= 5 and len(vowel_max) >= 5
    assert np.median(m_min) < 0.1
    assert np.median(vowel_max) > 0.35
    assert np.median(m_min) < 0.3 * np.median(vowel_max)
    assert np.mean(np.array(m_min) < 0.15) >= 0.7


# --------------------------------------------------------------------------- training data
def test_training_windows_are_exactly_what_the_live_engine_cuts():
    from models.mouth.phonemes import AlignedUtterance, PhoneSpan
    from models.training.train_mouth import concat_frames, utterance_frames

    rng = np.random.default_rng(3)
    audio = (0.2 * rng.standard_normal(int(1.3 * 16000))).astype(np.float32)
    phones = [PhoneSpan(0.0, 0.4, "", "ipa"), PhoneSpan(0.4, 0.6, "m", "ipa"), PhoneSpan(0.6, 1.3, "a", "ipa")]
    utt = AlignedUtterance(audio, phones, "ma", "test/noise")
    part = utterance_frames(utt, np.random.default_rng(0), augment=False)
    fs = concat_frames([part, part])
    mel = log_mel(audio)
    assert len(fs) == 2 * len(part.times)
    for i in [0, 1, len(part.times) // 2, len(part.times) - 1]:
        live = window_for(mel, float(part.times[i]))
        np.testing.assert_allclose(fs.windows(np.array([i]))[0], live, atol=2e-3)  # float16 storage
        np.testing.assert_allclose(fs.windows(np.array([i + len(part.times)]))[0], live, atol=2e-3)
    in_m = (part.times > 0.45) & (part.times < 0.55)
    assert (fs.visemes[: len(part.times)][in_m] == VISEMES.index("PP")).all()
    assert (fs.weights[: len(part.times)][in_m] > 1).all()  # closures are weighted up


def test_whole_voices_are_held_out():
    from models.mouth.phonemes import AlignedUtterance
    from models.training.train_mouth import split_by_voice

    utts = [
        AlignedUtterance(np.zeros(160, np.float32), [], f"t{i}", src, language=lang, meta={"split": split})
        for i, (src, lang, split) in enumerate([
            ("flite/slt", "en", "train"), ("flite/rms", "en", "train"), ("flite/awb", "en", "train"),
            ("piper/joe", "en", "train"), ("piper/joe", "en", "val"), ("espeak/cmn", "cmn", "train"),
        ])
    ]
    train, val, held = split_by_voice(utts, seed=0)
    assert len(held) == 1 and held[0].startswith("flite/")
    assert all(u.source != held[0] for u in train)
    assert {u.text for u in val} == {"t4"} | {u.text for u in utts if u.source == held[0]}
    assert any(u.source == "espeak/cmn" for u in train)  # single-voice languages stay in training
