"""The real-speech evaluation set: human recordings, force-aligned to ARPAbet."""

import json

import numpy as np
import pytest

from models.training import real_speech as rs

pytestmark = pytest.mark.skipif(not rs.discover(), reason="install pocketsphinx-testdata / alsa-utils")


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("eval")


@pytest.fixture(scope="module")
def eval_set(eval_dir):
    return rs.load_eval_set(eval_dir)


def by_id(utts, rid):
    match = [u for u in utts if u.meta["id"] == rid]
    if not match:
        pytest.skip(f"{rid} is not on this machine")
    return match[0]


def test_front_center_phones_in_order(eval_set):
    utt = by_id(eval_set, "alsa/Front_Center")
    phones = [p.phone for p in utt.phones if p.phone]
    assert phones == ["F", "R", "AH", "N", "T", "S", "EH", "N", "T", "ER"]
    assert {p.alphabet for p in utt.phones} == {"arpabet"}
    assert utt.source.startswith("human/") and utt.text == "front center"


def test_alignment_follows_the_waveform(eval_set):
    """Between 'front' and 'center' there is a pause; the aligner must find it."""
    utt = by_id(eval_set, "alsa/Front_Center")
    a = utt.audio.astype(np.float64)
    rms = lambda s, e: np.sqrt(np.mean(a[int(s * 16000) : int(e * 16000)] ** 2))
    gap = [p for p in utt.phones[1:-1] if p.phone == ""]
    assert len(gap) == 1 and gap[0].end - gap[0].start > 0.15
    vowels = [p for p in utt.phones if p.phone in ("AH", "EH")]
    assert all(rms(v.start, v.end) > 30 * rms(gap[0].start + 0.02, gap[0].end - 0.02) for v in vowels)


def test_every_utterance_is_covered_and_real(eval_set):
    assert len(eval_set) >= 10
    assert {u.meta["corpus"].split("/")[0] for u in eval_set} >= {"pocketsphinx-testdata", "alsa-utils"}
    for u in eval_set:
        assert u.audio.dtype == np.float32 and u.duration > 0.5
        assert u.phones[0].start == 0.0 and u.phones[-1].end == pytest.approx(u.duration, abs=1e-6)
        for a, b in zip(u.phones, u.phones[1:]):
            assert a.end == pytest.approx(b.start, abs=1e-9) and a.end > a.start
        # phones are ARPAbet, uppercase, no stress digits
        assert all(p.phone.isalpha() and p.phone.isupper() for p in u.phones if p.phone)
        n_words = len(u.text.split())
        assert sum(1 for p in u.phones if p.phone) >= 2 * n_words - 1


def test_cached_set_is_reused(eval_dir, eval_set):
    first = eval_set
    index = json.loads((eval_dir / "real_speech.json").read_text())
    assert index["utterances"] == len(first) and index["minutes"] > 0.5
    stamp = (eval_dir / rs.CACHE_FILE).stat().st_mtime_ns
    again = rs.load_eval_set(eval_dir)
    assert (eval_dir / rs.CACHE_FILE).stat().st_mtime_ns == stamp
    assert [u.meta["id"] for u in again] == [u.meta["id"] for u in first]
    assert np.array_equal(again[0].audio, first[0].audio)


def test_words_outside_the_dictionary_are_a_clear_error():
    aligner = rs.Aligner()
    with pytest.raises(rs.RealSpeechError, match="xyzzyqq"):
        aligner.align(np.zeros(16000, np.float32), "hello xyzzyqq")


def test_cli_list_and_show(capsys, tmp_path, eval_dir, eval_set):
    assert rs.main(["--list", "--cache", str(eval_dir)]) == 0
    out = capsys.readouterr().out
    assert "alsa/Front_Center" in out and "min of real speech" in out
    assert rs.main(["--show", "alsa/Front_Center", "--cache", str(eval_dir), "--plot", str(tmp_path / "fc.png")]) == 0
    assert (tmp_path / "fc.png").stat().st_size > 10_000
    assert rs.main(["--show", "nope", "--cache", str(eval_dir)]) == 2
