"""The speech engines: real synthesis, phone spans that agree with the audio."""

import threading
import time

import numpy as np
import pytest

from tts import espeak, festival, flite, mbrola, piper_voice
from tts.alignment import SpeechError
from tts.voices import list_engines

SR = 16_000
TEXT = "Maybe baby, mum. Hello world!"

# (module, voice, text, the symbol of /b/ in its alphabet or None)
CASES = [
    (piper_voice, "joe", TEXT, "b"),
    (espeak, "en-us", TEXT, "b"),
    (espeak, "en-gb-x-rp+f3", TEXT, "b"),
    (espeak, "cmn", "妈妈买了八个苹果。你好，世界。", "p"),  # Mandarin b is unaspirated /p/
    (flite, "slt", TEXT, "b"),
    (flite, "awb", TEXT, "b"),
    (festival, "slt", TEXT, "b"),
    (mbrola, "us1", TEXT, "b"),
    (mbrola, "en1", TEXT, "b"),
]


def _ids(case):
    return f"{case[0].ENGINE}-{case[1]}"


def rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-12)


@pytest.fixture(scope="module")
def utterances():
    cache = {}

    def get(case):
        mod, voice, text, _ = case
        if not mod.available() or (hasattr(mod, "voices") and mod is not espeak and voice not in mod.voices()):
            pytest.skip(f"{mod.ENGINE} voice {voice} is not installed (scripts/install_tts_extras.sh)")
        key = _ids(case)
        if key not in cache:
            cache[key] = mod.synthesize_aligned(text, voice)
        return cache[key]

    return get


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_audio_and_spans_are_well_formed(case, utterances):
    utt = utterances(case)
    assert utt.audio.dtype == np.float32 and utt.audio.ndim == 1
    assert np.abs(utt.audio).max() <= 1.0 and rms_db(utt.audio) > -40
    assert 0.5 < utt.duration < 10
    # The engine's own last phone end agrees with its waveform length.
    assert abs(utt.meta["engine_end_s"] - utt.duration) <= 0.020
    spans = utt.phones
    assert spans[0].start == 0.0 and spans[-1].end == pytest.approx(utt.duration, abs=1e-9)
    for a, b in zip(spans, spans[1:]):
        assert a.end == pytest.approx(b.start, abs=1e-9)
        assert a.end > a.start
        assert not (a.phone == "" and b.phone == ""), "adjacent pauses must be merged"
    assert len({s.alphabet for s in spans}) == 1
    assert sum(1 for s in spans if s.phone) >= 8


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_speech_energy_lies_in_phones_not_pauses(case, utterances):
    utt = utterances(case)
    a = utt.audio
    guard = 0.015  # ignore the edges: coarticulation and 10 ms engine rounding
    pause = [a[int((s.start + guard) * SR) : int((s.end - guard) * SR)] for s in utt.phones if not s.phone and s.end - s.start > 0.08]
    speech = [a[int(s.start * SR) : int(s.end * SR)] for s in utt.phones if s.phone]
    assert pause, "expected at least one pause (sentence break) in the text"
    assert rms_db(np.concatenate(speech)) - rms_db(np.concatenate(pause)) > 20


CLOSURE_TEXT = {"en": "Bob bought a big blue boat. Peter picked a pepper.", "cmn": "爸爸不必八百。"}


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_lip_closures_are_quieter_than_vowels(case, utterances):
    """/b/ /p/ spans hold the lip closure: quieter than the utterance's speech.

    A timing offset of more than ~30 ms would put vowel energy inside these spans
    (piper's own blank-to-previous grouping fails this: its phones are ~40 ms late)."""
    mod, voice, _, sym = case
    utterances(case)  # skips when the voice is not installed
    utt = mod.synthesize_aligned(CLOSURE_TEXT["cmn" if voice == "cmn" else "en"], voice)
    a = utt.audio
    stops = [a[int(s.start * SR) : int(s.end * SR)] for s in utt.phones if s.phone.lower() in ("b", "p")]
    speech = np.concatenate([a[int(s.start * SR) : int(s.end * SR)] for s in utt.phones if s.phone])
    assert len(stops) >= 2
    assert rms_db(np.concatenate(stops)) < rms_db(speech) - 3


def test_mbrola_timings_need_no_real_correction():
    if "us2" not in mbrola.voices():
        pytest.skip("MBROLA us2 not installed")
    utt = mbrola.synthesize_aligned("The quick brown fox jumps over the lazy dog.", "us2", time_ratio=1.2)
    assert abs(utt.meta["timing_scale"] - 1.0) < 0.01


def test_piper_plain_synthesize_is_quick_speech():
    piper_voice.load_voice()  # load once (the server does this at start-up)
    t0 = time.perf_counter()
    audio = piper_voice.synthesize("Hello world")
    elapsed = time.perf_counter() - t0
    assert audio.dtype == np.float32 and 0.5 < len(audio) / SR < 2.0
    assert rms_db(audio) > -30
    assert elapsed < 5.0  # a hang guard; the real figure is in bench/tts_speed.py


def test_piper_sentences_stream_and_scales_change_tempo():
    parts = list(piper_voice.synthesize_sentences("First one. And the second sentence."))
    assert len(parts) == 2 and all(len(p) > SR // 4 for p in parts)
    slow = piper_voice.synthesize_aligned("Counting one two three four five.", length_scale=1.5, noise_w_scale=0.0)
    fast = piper_voice.synthesize_aligned("Counting one two three four five.", length_scale=0.75, noise_w_scale=0.0)
    assert slow.duration > 1.5 * fast.duration


def test_piper_seeded_voice_is_reproducible():
    a = piper_voice.synthesize_aligned("Reproducible noise.", piper_voice.seeded_voice(seed=7))
    b = piper_voice.synthesize_aligned("Reproducible noise.", piper_voice.seeded_voice(seed=7))
    assert np.array_equal(a.audio, b.audio)
    assert [(p.phone, p.start) for p in a.phones] == [(p.phone, p.start) for p in b.phones]


def test_piper_blanks_join_the_following_symbol():
    table = {0: "_", 1: "^", 2: "$", 10: "m", 11: "a"}
    syms, counts = piper_voice.blanks_to_next([1, 0, 10, 0, 11, 0, 2], [5, 3, 7, 2, 9, 4, 1], table)
    assert syms == ["^", "m", "a", "$"]
    assert counts == [5, 10, 11, 5]


def test_piper_fold_symbols_merges_marks_and_keeps_total():
    # "^ m ˈ e ɪ b i ː SPACE b , SPACE $" with sample counts
    syms = ["^", "m", "ˈ", "e", "ɪ", "b", "i", "ː", " ", "b", ",", " ", "$"]
    counts = [100, 50, 40, 60, 30, 20, 30, 10, 20, 40, 80, 30, 10]
    spans = piper_voice.fold_symbols(syms, counts)
    assert [p for p, _, _ in spans] == ["", "m", "e", "ɪ", "b", "iː", "b", ""]
    assert spans[0][1] == 0 and spans[-1][2] == sum(counts)
    assert all(a[2] == b[1] for a, b in zip(spans, spans[1:]))
    starts = {p: (s, e) for p, s, e in spans}
    assert starts["e"] == (150, 250)          # stress time given to the vowel after it
    assert starts["iː"] == (300, 350)         # length mark + half the word space
    assert spans[-1] == ("", 400, 520)        # comma, space and end merged into one pause


def test_espeak_mandarin_and_other_languages():
    utt = espeak.synthesize_aligned("你好，世界。", "cmn")
    assert utt.language == "cmn" and utt.phones[0].alphabet == "ipa"
    phones = [p.phone for p in utt.phones if p.phone]
    assert phones[:2] == ["n", "i"]
    assert "" in [p.phone for p in utt.phones[1:-1]]  # the comma is a pause
    for voice, text in [("es", "Hola, ¿cómo estás?"), ("de", "Guten Morgen."), ("ru", "Привет."), ("yue", "你好")]:
        u = espeak.synthesize_aligned(text, voice)
        assert u.duration > 0.3 and sum(1 for p in u.phones if p.phone) >= 3


def test_espeak_params_change_the_audio():
    slow = espeak.synthesize_aligned(TEXT, "en-us", rate=120)
    fast = espeak.synthesize_aligned(TEXT, "en-us", rate=300)
    assert slow.duration > 1.8 * fast.duration
    assert [p.phone for p in slow.phones if p.phone] == [p.phone for p in fast.phones if p.phone]


def test_espeak_is_safe_from_threads():
    texts = [("en-us", "The first thread speaks."), ("cmn", "我们今天去北京。"), ("de+m2", "Der dritte Faden.")]
    serial = {v: espeak.synthesize_aligned(t, v) for v, t in texts}
    results: dict[str, list] = {v: [] for v, _ in texts}

    def worker(voice: str, text: str) -> None:
        for _ in range(5):
            results[voice].append(espeak.synthesize_aligned(text, voice))

    threads = [threading.Thread(target=worker, args=vt) for vt in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for voice, outs in results.items():
        assert len(outs) == 5
        ref = serial[voice]
        for o in outs:
            # Same voice, same phones; espeak's waveform generator carries a little
            # phase state between calls, so lengths may differ by a few samples.
            assert o.source == ref.source
            assert [p.phone for p in o.phones] == [p.phone for p in ref.phones]
            assert abs(len(o.audio) - len(ref.audio)) < 0.01 * len(ref.audio)


@pytest.mark.parametrize(
    "call",
    [
        lambda: espeak.synthesize_aligned("   "),
        lambda: espeak.synthesize_aligned("hello", "no-such-voice"),
        lambda: espeak.synthesize_aligned("hello", rate=5000),
        lambda: espeak.synthesize_aligned("?!..."),
        lambda: piper_voice.synthesize_aligned(""),
        lambda: piper_voice.synthesize_aligned("hi", "/nonexistent/voice.onnx"),
        lambda: piper_voice.synthesize_aligned("hi", "some-voice-name"),
        lambda: piper_voice.synthesize_aligned("hi", length_scale=0),
        lambda: flite.synthesize_aligned("hi", "kal16"),
        lambda: festival.synthesize_aligned("hi", "nobody"),
        lambda: mbrola.synthesize_aligned("hi", "xx9"),
        lambda: espeak.synthesize_aligned("x" * 6000),
    ],
)
def test_bad_input_is_a_clear_error(call):
    with pytest.raises(SpeechError) as info:
        call()
    assert str(info.value)


def test_festival_quotes_in_text_are_safe():
    if not festival.available():
        pytest.skip("festival not installed")
    utt = festival.synthesize_aligned('He said "stop" \\ and (left).')
    assert utt.duration > 0.5 and any(p.phone == "s" for p in utt.phones)


def test_registry_lists_installed_engines():
    infos = {i.name: i for i in list_engines()}
    assert set(infos) == {"piper", "espeak", "flite", "festival", "mbrola"}
    assert infos["piper"].available and infos["piper"].voices == ("joe",) and infos["piper"].live
    assert infos["espeak"].available and "cmn" in infos["espeak"].voices and "en-us" in infos["espeak"].voices


def test_spans_end_exactly_at_the_audio_end_despite_rounding():
    # espeak at 22.05 kHz resampled to 16 kHz: the last phone may end < 1 µs short of the audio.
    from tts.alignment import RawPhone, normalise_spans

    duration = 36607 / 16000
    spans = normalise_spans([RawPhone("m", 0.0, 0.08), RawPhone("a", 0.08, 50449 / 22050)], duration)
    assert spans[-1] == ("a", 0.08, duration)
