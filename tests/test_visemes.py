"""Phone → viseme tables and the per-frame targets the mouth model is trained on."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.mouth.mouth_shape import N_VISEMES, VISEMES
from models.mouth.phonemes import PhoneSpan
from models.mouth.visemes import (
    COARSE_OF_VISEME,
    LONG_SILENCE_S,
    UNKNOWN_PHONES,
    VISEME_SHAPES,
    frame_targets,
    is_known,
    phone_visemes,
    phone_visemes_named,
    viseme_segments,
)

V = {n: i for i, n in enumerate(VISEMES)}
CMU_PHONES = (
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH"
).split()


def spans(seq: list[tuple[str, float]], alphabet: str = "arpabet", start: float = 0.0) -> list[PhoneSpan]:
    out, t = [], start
    for phone, dur in seq:
        out.append(PhoneSpan(t, t + dur, phone, alphabet))
        t += dur
    return out


# --------------------------------------------------------------------------- tables
def test_shapes_are_in_range_and_pp_is_exactly_closed():
    assert VISEME_SHAPES.shape == (N_VISEMES, 3)
    assert VISEME_SHAPES[V["PP"], 0] == 0.0 and VISEME_SHAPES[V["sil"], 0] == 0.0
    assert (VISEME_SHAPES[:, 0] >= 0).all() and (VISEME_SHAPES[:, 0] <= 1).all()
    assert (np.abs(VISEME_SHAPES[:, 1]) <= 1).all()
    # articulatory sanity: /a/ is the most open, /u/ the most rounded, /i/ the widest
    assert VISEME_SHAPES[:, 0].argmax() == V["aa"]
    assert VISEME_SHAPES[:, 2].argmax() == V["ou"]
    assert VISEME_SHAPES[:, 1].argmax() == V["ih"]
    assert COARSE_OF_VISEME.shape == (N_VISEMES,)


@pytest.mark.parametrize("phone", CMU_PHONES)
def test_every_cmu_phone_is_known_with_and_without_stress(phone):
    for variant in (phone, phone + "1", phone.lower(), phone.lower() + "0"):
        assert is_known(variant, "arpabet"), variant


@pytest.mark.parametrize(
    "phone, alphabet, expected",
    [
        ("m", "arpabet", ("PP",)), ("B", "arpabet", ("PP",)), ("P1", "arpabet", ("PP",)),
        ("pau", "arpabet", ("sil",)), ("", "arpabet", ("sil",)), ("+NSN+", "arpabet", ("sil",)),
        ("ay", "arpabet", ("aa", "ih")), ("OW0", "arpabet", ("oh", "ou")), ("f", "arpabet", ("FF",)),
        ("m", "ipa", ("PP",)), ("ˈaɪ", "ipa", ("aa", "ih")), ("iː", "ipa", ("ih",)), ("t͡ʃ", "ipa", ("CH",)),
        ("tʃ", "ipa", ("CH",)), ("ɡ", "ipa", ("kk",)), ("uː", "ipa", ("ou",)), ("ɚ", "ipa", ("RR",)),
        ("ʈʂʰ", "ipa", ("CH",)), ("n̩", "ipa", ("nn",)), ("", "ipa", ("sil",)),
        ("aI", "sampa", ("aa", "ih")), ("{", "sampa", ("aa",)), ("tS", "sampa", ("CH",)), ("_", "sampa", ("sil",)),
        ("r=", "sampa", ("RR",)), ("@U", "sampa", ("E", "ou")), ("3:", "sampa", ("E",)), ("p_h", "sampa", ("PP",)),
        ("l=", "sampa", ("nn",)), ("u:", "sampa", ("ou",)), ("c", "ipa", ("kk",)), ("ɟʰ", "ipa", ("kk",)),
        ("'aI", "espeak", ("aa", "ih")), ("3:", "espeak", ("E",)), ("0", "espeak", ("aa",)), ("AH0", "arpabet", ("E",)), ("AH1", "arpabet", ("aa",)), ("_:", "espeak", ("sil",)),
    ],
)
def test_table_entries(phone, alphabet, expected):
    assert phone_visemes_named(phone, alphabet) == expected


def test_unknown_phone_is_guessed_counted_and_never_raises():
    before = UNKNOWN_PHONES[("ipa", "Ж")]
    assert phone_visemes("Ж", "ipa") == (V["sil"],)          # no letter class: silence
    assert UNKNOWN_PHONES[("ipa", "Ж")] == before + 1
    assert phone_visemes("XQ9", "arpabet") == (V["kk"],)      # by first letter
    assert phone_visemes("b€", "weird-alphabet") == (V["PP"],)  # IPA rules, then first letter
    assert not is_known("Ж", "ipa") and is_known("m", "ipa")


ENGLISH_SAMPLE = "Maybe the quick brown fox jumps over the lazy dog, she thought, measuring each azure wave."
SAMPLES = {
    "cmn": "我们明天早上八点在北京见面。你好吗？",
    "hi": "मेरा नाम राम है और मैं भारत में रहता हूँ।",
    "es": "El perro de San Roque no tiene rabo.",
}


def _sample_phones(engine: str, voice: str | None) -> list[PhoneSpan]:
    mod = pytest.importorskip(f"tts.{engine}")
    if not mod.available() or (voice is not None and voice.split("+")[0] not in mod.voices()):
        pytest.skip(f"{engine} {voice or ''} is not installed here")
    text = SAMPLES.get(voice or "", ENGLISH_SAMPLE)
    return (mod.synthesize_aligned(text, voice) if voice else mod.synthesize_aligned(text)).phones


@pytest.mark.parametrize(
    "engine, voice",
    [("espeak", None), ("espeak", "cmn"), ("espeak", "hi"), ("espeak", "es"), ("flite", None), ("piper_voice", None),
     ("festival", None), ("mbrola", "us1"), ("mbrola", "en1")],
)
def test_tables_cover_every_phone_a_corpus_engine_emits(engine, voice):
    phones = _sample_phones(engine, voice)
    assert len(phones) > 20
    unknown = sorted({(p.alphabet, p.phone) for p in phones if not is_known(p.phone, p.alphabet)})
    assert unknown == []


def test_tables_cover_every_phone_of_the_real_speech_aligner():
    rs = pytest.importorskip("models.training.real_speech")
    recs = {r.id: r for r in rs.discover()}
    rec = recs.get("alsa/Front_Center")
    if rec is None:
        pytest.skip("alsa-utils sounds not installed")
    phones = rs.Aligner().align(rs.read_audio(rec), rec.text)
    assert [p.phone for p in phones if p.phone][:5] == ["F", "R", "AH", "N", "T"]
    assert all(is_known(p.phone, p.alphabet) for p in phones)


# --------------------------------------------------------------------------- targets
def test_short_bilabial_closes_exactly_in_its_middle():
    ph = spans([("pau", 0.3), ("aa", 0.15), ("m", 0.03), ("aa", 0.15), ("pau", 0.3)])
    t_mid = 0.3 + 0.15 + 0.015
    times = np.array([t_mid - 0.006, t_mid, t_mid + 0.006, 0.3 + 0.075, 0.3 + 0.15 + 0.03 + 0.075])
    vis, shape = frame_targets(ph, times)
    assert (shape[:3, 0] == 0.0).all()
    assert (vis[:3] == V["PP"]).all()
    assert shape[3, 0] == pytest.approx(VISEME_SHAPES[V["aa"], 0], abs=1e-6)
    assert shape[4, 0] > 0.6


def test_long_bilabial_is_closed_for_most_of_its_length():
    ph = spans([("pau", 0.3), ("ae", 0.12), ("b", 0.12), ("iy", 0.12), ("pau", 0.3)])
    times = np.arange(0.42, 0.54, 0.001)
    _, shape = frame_targets(ph, times)
    closed = shape[:, 0] == 0.0
    assert closed.mean() > 0.6
    assert closed[len(times) // 2]


def test_long_silence_relaxes_to_closed_but_a_short_pause_does_not():
    long_gap = spans([("aa", 0.2), ("pau", LONG_SILENCE_S + 0.1), ("aa", 0.2)])
    short_gap = spans([("aa", 0.2), ("pau", 0.08), ("aa", 0.2)])
    _, long_shape = frame_targets(long_gap, np.array([0.2 + (LONG_SILENCE_S + 0.1) / 2]))
    _, short_shape = frame_targets(short_gap, np.array([0.24]))
    assert long_shape[0, 0] == 0.0
    assert short_shape[0, 0] > 0.3


def test_before_and_after_the_utterance_is_closed_silence():
    ph = spans([("aa", 0.2)], start=0.5)
    vis, shape = frame_targets(ph, np.array([0.0, 0.4, 0.6, 0.9]))
    assert list(vis) == [V["sil"], V["sil"], V["aa"], V["sil"]]
    assert shape[0, 0] == 0.0 and shape[3, 0] == 0.0 and shape[2, 0] > 0.6


def test_coarticulation_blends_smoothly_across_a_vowel_boundary():
    ph = spans([("pau", 0.3), ("aa", 0.2), ("iy", 0.2), ("pau", 0.3)])
    times = np.arange(0.3, 0.7, 0.001)
    _, shape = frame_targets(ph, times)
    steps = np.abs(np.diff(shape, axis=0)).max(axis=0)
    # a hard switch would jump 0.42 in openness within one millisecond
    assert steps[0] < 0.05 and steps[1] < 0.05
    mid = np.argmin(np.abs(times - 0.5))
    aa, ih = VISEME_SHAPES[V["aa"]], VISEME_SHAPES[V["ih"]]
    assert shape[mid, 0] == pytest.approx((aa[0] + ih[0]) / 2, abs=0.02)


def test_h_takes_the_shape_of_the_following_vowel():
    segs = viseme_segments(spans([("pau", 0.2), ("hh", 0.08), ("uw", 0.2), ("pau", 0.2)]))
    assert [VISEMES[s.viseme] for s in segs] == ["sil", "ou", "ou", "sil"]


def test_diphthong_span_is_split_between_its_parts():
    segs = viseme_segments(spans([("ay", 0.2)]))
    assert [VISEMES[s.viseme] for s in segs] == ["aa", "ih"]
    assert segs[0].end == pytest.approx(0.12)


def test_empty_and_gappy_input():
    vis, shape = frame_targets([], np.arange(5) * 0.1)
    assert (vis == V["sil"]).all() and (shape == 0).all()
    gappy = [PhoneSpan(0.1, 0.2, "aa", "arpabet"), PhoneSpan(0.5, 0.6, "m", "arpabet")]
    vis, _ = frame_targets(gappy, np.array([0.15, 0.35, 0.55]))
    assert [VISEMES[i] for i in vis] == ["aa", "sil", "PP"]


phone_seq = st.lists(
    st.tuples(st.sampled_from(CMU_PHONES + ["pau", "", "zz", "ʃ"]), st.floats(0.005, 0.4)), min_size=1, max_size=25
)


@settings(max_examples=60, deadline=None)
@given(phone_seq)
def test_targets_are_always_in_range_and_pbm_cores_closed(seq):
    ph = spans(seq)
    times = np.arange(-0.05, ph[-1].end + 0.05, 0.0025)
    vis, shape = frame_targets(ph, times)
    assert vis.shape == times.shape and shape.shape == (len(times), 3)
    assert np.isfinite(shape).all()
    assert (shape[:, 0] >= 0).all() and (shape[:, 0] <= 1).all()
    assert (np.abs(shape[:, 1]) <= 1 + 1e-6).all() and (shape[:, 2] >= 0).all() and (shape[:, 2] <= 1 + 1e-6).all()
    assert ((vis >= 0) & (vis < N_VISEMES)).all()
    for p in ph:
        if phone_visemes(p.phone, "arpabet") == (V["PP"],):
            mid = (p.start + p.end) / 2
            _, s = frame_targets(ph, np.array([mid]))
            assert s[0, 0] == 0.0
