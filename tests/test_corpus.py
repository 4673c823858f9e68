"""The synthetic corpus: planned, balanced, reproducible, resumable, loadable."""

import json

import numpy as np
import pytest

from models.training import corpus
from models.training import corpus_text as ct


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    manifest = corpus.build(root, minutes=1.5, seed=3, engines=["espeak"], workers=1, progress=False)
    return root, manifest


def test_budgets_split_evenly_between_engines():
    cfgs = corpus.plan()
    b = corpus.budgets(cfgs, 50.0)
    per_engine = {}
    for c in cfgs:
        per_engine[c.engine] = per_engine.get(c.engine, 0.0) + b[c.key]
    assert set(per_engine) == {"piper", "espeak", "flite", "festival", "mbrola"}
    assert all(v == pytest.approx(600.0) for v in per_engine.values())
    # espeak: half English variants, half other languages, Mandarin weighted double
    esp = {c.voice: b[c.key] for c in cfgs if c.engine == "espeak"}
    assert esp["cmn"] == pytest.approx(2 * esp["es"])
    assert len({c.key for c in cfgs}) == len(cfgs)


def test_shard_texts_are_a_pure_function_and_val_texts_are_held_out():
    cfg = next(c for c in corpus.plan() if c.voice == "en-us")
    a = corpus.shard_texts(corpus.ShardJob(cfg, 4, 0, "/x"))
    b = corpus.shard_texts(corpus.ShardJob(cfg, 4, 0, "/y"))
    assert a == b and len(a) == corpus.TRAIN_SHARD_UTTERANCES
    assert corpus.shard_texts(corpus.ShardJob(cfg, 5, 0, "/x")) != a
    train_sentences = {t for k in range(1, 40) for t, _ in corpus.shard_texts(corpus.ShardJob(cfg, k, 0, "/x"))}
    val = [t for t, _ in corpus.shard_texts(corpus.ShardJob(cfg, 0, 0, "/x"))]
    held_out = {s for i, s in enumerate(ct.ENGLISH) if ct.validation_index(i)}
    assert not (set(ct.ENGLISH) - held_out) & set(val)  # no training sentence in val
    assert not held_out & train_sentences                 # and no val sentence in training
    rates = [p["rate"] for _, p in a]
    assert len(set(rates)) > 3 and all(140 <= r <= 215 for r in rates)


def test_build_writes_balanced_manifest_and_loadable_shards(small_corpus):
    root, m = small_corpus
    on_disk = json.loads((root / corpus.MANIFEST).read_text())
    assert on_disk["shards"] == m["shards"] and m["format"] == corpus.FORMAT_VERSION
    assert set(m["totals"]["per_engine"]) == {"espeak"}
    langs = set(m["totals"]["per_language"])
    assert {"en", "cmn", "es", "de", "ru"} <= langs
    # every voice configuration has a held-out validation shard
    configs = {r["config"] for r in m["shards"]}
    val_configs = {r["config"] for r in m["shards"] if r["split"] == "val"}
    assert configs == val_configs and len(configs) >= 14
    assert m["totals"]["minutes"] == pytest.approx(sum(r["seconds"] for r in m["shards"]) / 60, abs=0.01)
    inv = m["totals"]["phone_inventory"]
    assert set(inv) == {"ipa"} and inv["ipa"][""] > 0 and {"m", "a", "n", "tɕ"} <= set(inv["ipa"])
    utts = list(corpus.iter_utterances(root, split="val"))
    assert sum(inv["ipa"].values()) == sum(len(u.phones) for u in utts)
    assert len(utts) == m["totals"]["utterances"]
    for u in utts:
        assert u.audio.dtype == np.float32 and u.phones[-1].end == pytest.approx(u.duration, abs=1e-6)
        assert u.phones[0].alphabet == "ipa" and u.meta["split"] == "val" and "rate" in u.meta
    assert list(corpus.iter_utterances(root, split="train", engines=["piper"])) == []


def test_shard_roundtrip_is_exact(small_corpus):
    root, m = small_corpus
    rec = m["shards"][0]
    utts = corpus.load_shard(root / rec["path"])
    path = root / "copy.npz"
    corpus.save_shard(path, utts, "val")
    again = corpus.load_shard(path)
    for a, b in zip(utts, again):
        assert np.array_equal(a.audio, b.audio) and a.phones == b.phones and a.text == b.text and a.meta == b.meta


def test_rebuild_resumes_and_refuses_another_seed(small_corpus):
    root, m = small_corpus
    again = corpus.build(root, minutes=1.5, seed=3, engines=["espeak"], workers=1, progress=False)
    assert [r["path"] for r in again["shards"]] == [r["path"] for r in m["shards"]]
    with pytest.raises(corpus.CorpusError, match="seed"):
        corpus.build(root, minutes=1.5, seed=4, engines=["espeak"], workers=1, progress=False)
    assert corpus.main(["build", "--out", str(root), "--seed", "4", "--engines", "espeak"]) == 2
    with pytest.raises(corpus.CorpusError, match="unknown engine"):
        corpus.build(root, minutes=1.5, seed=3, engines=["nope"], progress=False)


def test_missing_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(corpus.CorpusError, match="no corpus"):
        list(corpus.iter_utterances(tmp_path))
