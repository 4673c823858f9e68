"""The synthetic, phone-aligned training corpus for the audio-to-mouth model.

    python -m models.training.corpus build --out data/corpus --minutes 60 --seed 0
    python -m models.training.corpus build --out data/corpus --minutes 60 --engines piper,espeak
    python -m models.training.corpus info --out data/corpus

Every available speech engine speaks texts from ``models.training.corpus_text`` with
several voices and parameter settings (``plan``).  The minutes are split
evenly between the engines (no engine dominates), then between each engine's
voice configurations by weight.

Work is cut into *shards*: shard ``k`` of voice configuration ``c`` holds a
dozen utterances whose texts and parameters depend only on ``(seed, c, k)``,
so a shard is the same whichever process makes it and whenever -- builds can
be interrupted, resumed, or extended with more engines or minutes, and only
missing shards are made.  Shard 0 of every configuration is its held-out
validation split (texts reserved for validation, see ``corpus_text``).

Layout::

    data/corpus/manifest.json                      # rewritten after every shard
    data/corpus/shards/<engine>/<config>-<k>.npz   # see ``save_shard``

Shards are made by a process pool (both cores by default) at nice +10.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models.mouth.phonemes import AlignedUtterance, PhoneSpan

MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: piper blanks join the next phone; espeak stop closures moved
TRAIN_SHARD_UTTERANCES = 12
VAL_SHARD_UTTERANCES = 4
EST_SECONDS_PER_UTTERANCE = 2.6  # first guess, replaced by each config's measured average


class CorpusError(RuntimeError):
    """A corpus directory that cannot be built or read as asked."""


# ---------------------------------------------------------------------------
# the plan: engines x voices x parameters


@dataclass(frozen=True)
class VoiceConfig:
    engine: str
    voice: str
    language: str
    params: tuple[tuple[str, float], ...] = ()        # fixed for every utterance
    jitter: tuple[tuple[str, float, float], ...] = ()  # uniform per-utterance ranges
    weight: float = 1.0                                 # share within its engine

    @property
    def key(self) -> str:
        tag = "-".join(f"{_SHORT.get(k, k)}{v:g}" for k, v in self.params)
        name = f"{self.engine}-{self.voice}" + (f"-{tag}" if tag else "")
        return name.replace("+", "_").replace("/", "_")

    def draw_params(self, rng: random.Random) -> dict:
        p: dict = dict(self.params)
        for name, lo, hi in self.jitter:
            v = rng.uniform(lo, hi)
            p[name] = int(round(v)) if name in ("rate", "pitch") else round(v, 3)
        return p


_SHORT = {"length_scale": "ls", "noise_scale": "ns", "noise_w_scale": "nw"}
_ESPEAK_JITTER = (("rate", 140, 215), ("pitch", 35, 65))


def plan() -> list[VoiceConfig]:
    """Every voice configuration the corpus is built from (available or not)."""
    cfgs: list[VoiceConfig] = []
    for ls, ns, nw in ((1.0, 0.667, 0.8), (0.85, 0.5, 0.6), (1.2, 0.8, 0.9), (1.05, 0.9, 1.0)):
        cfgs.append(VoiceConfig("piper", "joe", "en", (("length_scale", ls), ("noise_scale", ns), ("noise_w_scale", nw))))
    english = ("en-us", "en-us+f3", "en-us+m3", "en-gb-x-rp+f2", "en-029+m1", "en-us-nyc+f4")
    for v in english:
        cfgs.append(VoiceConfig("espeak", v, "en", jitter=_ESPEAK_JITTER, weight=0.5 / len(english)))
    foreign = {"cmn": 2.0, "yue": 1.0, "es": 1.0, "de": 1.0, "fr": 1.0, "it": 1.0, "pt-br": 1.0, "hi": 1.0, "ru": 1.0}
    total = sum(foreign.values())
    for lang, w in foreign.items():
        cfgs.append(VoiceConfig("espeak", lang, lang, jitter=_ESPEAK_JITTER, weight=0.5 * w / total))
    for v in ("slt", "rms", "awb"):
        cfgs.append(VoiceConfig("flite", v, "en", jitter=(("duration_stretch", 0.85, 1.2),)))
    cfgs.append(VoiceConfig("festival", "slt", "en", jitter=(("speed", 0.85, 1.2), ("half_tones", -2.0, 2.0))))
    for v in ("us1", "us2", "us3", "en1"):
        cfgs.append(VoiceConfig("mbrola", v, "en", jitter=(("rate", 150, 210), ("freq_ratio", 0.9, 1.12))))
    return cfgs


def available_configs(engines: Iterable[str] | None = None) -> list[VoiceConfig]:
    """The plan restricted to installed engines/voices (and to ``engines`` if given)."""
    from tts.voices import engine_info

    infos = {}
    out = []
    for cfg in plan():
        if engines is not None and cfg.engine not in engines:
            continue
        if cfg.engine not in infos:
            infos[cfg.engine] = engine_info(cfg.engine)
        info = infos[cfg.engine]
        if not info.available:
            continue
        if cfg.engine == "espeak":
            if cfg.voice.split("+")[0] not in info.voices:
                continue
        elif cfg.voice not in info.voices:
            continue
        out.append(cfg)
    return out


def budgets(configs: list[VoiceConfig], minutes: float) -> dict[str, float]:
    """Seconds of audio per config: equal per engine, then by weight within it."""
    by_engine: dict[str, list[VoiceConfig]] = defaultdict(list)
    for c in configs:
        by_engine[c.engine].append(c)
    if not by_engine:
        return {}
    per_engine = minutes * 60.0 / len(by_engine)
    out = {}
    for cs in by_engine.values():
        wsum = sum(c.weight for c in cs)
        for c in cs:
            out[c.key] = per_engine * c.weight / wsum
    return out


# ---------------------------------------------------------------------------
# one shard


@dataclass(frozen=True)
class ShardJob:
    config: VoiceConfig
    index: int
    seed: int
    out_dir: str

    @property
    def split(self) -> str:
        return "val" if self.index == 0 else "train"

    @property
    def rel_path(self) -> str:
        return f"shards/{self.config.engine}/{self.config.key}-{self.index:04d}.npz"


@dataclass
class ShardRecord:
    path: str
    engine: str
    voice: str
    config: str
    language: str
    split: str
    index: int
    n_utterances: int
    seconds: float
    synth_seconds: float  # wall-clock compute spent making it
    failures: int = 0
    errors: list[str] = field(default_factory=list)
    alphabet: str = ""
    phone_counts: dict[str, int] = field(default_factory=dict)  # symbol -> spans ("" = pause)


def shard_texts(job: ShardJob) -> list[tuple[str, dict]]:
    """The (text, params) of a shard: a pure function of (seed, config, index)."""
    from models.training import corpus_text

    rng = random.Random(f"{job.seed}/{job.config.key}/{job.index}")
    n = VAL_SHARD_UTTERANCES if job.split == "val" else TRAIN_SHARD_UTTERANCES
    out = []
    for _ in range(n):
        if job.config.language == "en":
            text = corpus_text.english_text(rng, job.split)
        else:
            text = corpus_text.foreign_text(job.config.language, rng, job.split)
        out.append((text, job.config.draw_params(rng)))
    return out


def make_shard(job: ShardJob) -> ShardRecord:
    """Synthesise and save one shard (runs in a worker process)."""
    from tts.alignment import EngineUnavailable, SpeechError
    from tts.voices import engine as engine_module

    t0 = time.perf_counter()
    cfg = job.config
    mod = engine_module(cfg.engine)
    voice: object = cfg.voice
    if cfg.engine == "piper":
        # One seeded session per shard makes VITS's sampling noise reproducible.
        voice = mod.seeded_voice(cfg.voice, seed=hash_seed(job), threads=1)
    utts: list[AlignedUtterance] = []
    errors: list[str] = []
    for text, params in shard_texts(job):
        try:
            utt = mod.synthesize_aligned(text, voice, **params)
        except (SpeechError, EngineUnavailable) as e:
            errors.append(f"{text[:40]!r}: {e}")
            continue
        utt.meta.update(params)
        utts.append(utt)
    path = Path(job.out_dir) / job.rel_path
    if utts:
        save_shard(path, utts, job.split)
    return ShardRecord(
        path=job.rel_path,
        engine=cfg.engine,
        voice=cfg.voice,
        config=cfg.key,
        language=cfg.language,
        split=job.split,
        index=job.index,
        n_utterances=len(utts),
        seconds=round(sum(u.duration for u in utts), 3),
        synth_seconds=round(time.perf_counter() - t0, 3),
        failures=len(errors),
        errors=errors[:3],
        alphabet=utts[0].phones[0].alphabet if utts else "",
        phone_counts=phone_counts(utts),
    )


def phone_counts(utts: list[AlignedUtterance]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for u in utts:
        for p in u.phones:
            counts[p.phone] += 1
    return dict(sorted(counts.items()))


def hash_seed(job: ShardJob) -> int:
    return random.Random(f"piper-noise/{job.seed}/{job.config.key}/{job.index}").getrandbits(31)


def save_shard(path: Path, utts: list[AlignedUtterance], split: str) -> None:
    """Write utterances as one .npz (flat arrays + offsets), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    audio_offsets = np.cumsum([0] + [len(u.audio) for u in utts]).astype(np.int64)
    phone_offsets = np.cumsum([0] + [len(u.phones) for u in utts]).astype(np.int64)
    phones = [p for u in utts for p in u.phones]
    arrays = {
        "audio": np.concatenate([u.audio.astype(np.float32) for u in utts]),
        "audio_offsets": audio_offsets,
        "phone_start": np.array([p.start for p in phones], dtype=np.float64),
        "phone_end": np.array([p.end for p in phones], dtype=np.float64),
        "phone_symbol": np.array([p.phone for p in phones], dtype=np.str_),
        "phone_offsets": phone_offsets,
        "alphabet": np.array([u.phones[0].alphabet for u in utts], dtype=np.str_),
        "text": np.array([u.text for u in utts], dtype=np.str_),
        "source": np.array([u.source for u in utts], dtype=np.str_),
        "language": np.array([u.language for u in utts], dtype=np.str_),
        "meta": np.array([json.dumps(u.meta, sort_keys=True) for u in utts], dtype=np.str_),
        "split": np.array(split),
    }
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_shard(path: Path | str) -> list[AlignedUtterance]:
    """A shard file back as AlignedUtterances (``meta['split']`` says which split)."""
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CorpusError(f"cannot read corpus shard {path}: {e}") from e
    with z:
        ao, po = z["audio_offsets"], z["phone_offsets"]
        split = str(z["split"])
        out = []
        for i in range(len(ao) - 1):
            alphabet = str(z["alphabet"][i])
            phones = [
                PhoneSpan(float(s), float(e), str(p), alphabet)
                for s, e, p in zip(
                    z["phone_start"][po[i] : po[i + 1]], z["phone_end"][po[i] : po[i + 1]], z["phone_symbol"][po[i] : po[i + 1]]
                )
            ]
            meta = json.loads(str(z["meta"][i]))
            meta["split"] = split
            out.append(
                AlignedUtterance(
                    audio=z["audio"][ao[i] : ao[i + 1]].copy(),
                    phones=phones,
                    text=str(z["text"][i]),
                    source=str(z["source"][i]),
                    language=str(z["language"][i]),
                    meta=meta,
                )
            )
    return out


# ---------------------------------------------------------------------------
# the manifest


def load_manifest(root: Path | str) -> dict:
    path = Path(root) / MANIFEST
    if not path.exists():
        raise CorpusError(f"no corpus at {root} ({MANIFEST} missing); build one with `python -m models.training.corpus build`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CorpusError(f"{path} is unreadable: {e}") from e


def iter_utterances(
    root: Path | str, split: str | None = "train", engines: Iterable[str] | None = None
) -> Iterator[AlignedUtterance]:
    """Utterances of the corpus at ``root`` (shard by shard, manifest order)."""
    manifest = load_manifest(root)
    wanted = set(engines) if engines is not None else None
    for rec in manifest["shards"]:
        if split is not None and rec["split"] != split:
            continue
        if wanted is not None and rec["engine"] not in wanted:
            continue
        if rec["n_utterances"] == 0:
            continue
        yield from load_shard(Path(root) / rec["path"])


def summarise(records: list[dict]) -> dict:
    def table(key: str) -> dict:
        t: dict = defaultdict(lambda: {"minutes": 0.0, "utterances": 0, "synth_seconds": 0.0})
        for r in records:
            k = r[key]
            t[k]["minutes"] += r["seconds"] / 60
            t[k]["utterances"] += r["n_utterances"]
            t[k]["synth_seconds"] += r["synth_seconds"]
        for v in t.values():
            v["minutes"] = round(v["minutes"], 3)
            v["synth_seconds"] = round(v["synth_seconds"], 2)
            v["realtime_factor"] = round(v["synth_seconds"] / max(v["minutes"] * 60, 1e-9), 4)
        return dict(sorted(t.items()))

    voices = [dict(r, source=f"{r['engine']}/{r['voice']}") for r in records]
    inventory: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in records:
        for sym, n in r.get("phone_counts", {}).items():
            inventory[r.get("alphabet") or "?"][sym] += n
    return {
        "minutes": round(sum(r["seconds"] for r in records) / 60, 3),
        "utterances": sum(r["n_utterances"] for r in records),
        "per_engine": table("engine"),
        "per_voice": {k: v for k, v in _table(voices, "source").items()},
        "per_config": table("config"),
        "per_language": table("language"),
        "per_split": table("split"),
        # Every phone symbol in the corpus per alphabet, with its count: what a
        # phone-to-mouth mapping must cover.
        "phone_inventory": {a: dict(sorted(c.items(), key=lambda kv: -kv[1])) for a, c in sorted(inventory.items())},
    }


def _table(records: list[dict], key: str) -> dict:
    t: dict = defaultdict(lambda: {"minutes": 0.0, "utterances": 0})
    for r in records:
        t[r[key]]["minutes"] += r["seconds"] / 60
        t[r[key]]["utterances"] += r["n_utterances"]
    return {k: {"minutes": round(v["minutes"], 3), "utterances": v["utterances"]} for k, v in sorted(t.items())}


def write_manifest(root: Path, *, seed: int, minutes: float, records: list[ShardRecord | dict],
                   planned: dict[str, float], complete: bool, started: float) -> dict:
    recs = [asdict(r) if isinstance(r, ShardRecord) else r for r in records]
    recs.sort(key=lambda r: (r["engine"], r["config"], r["index"]))
    manifest = {
        "format": FORMAT_VERSION,
        "seed": seed,
        "sample_rate": 16_000,
        "target_minutes": minutes,
        "complete": complete,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_wall_seconds": round(time.time() - started, 1),
        "planned_seconds_per_config": {k: round(v, 1) for k, v in sorted(planned.items())},
        "alphabets": {"piper": "ipa", "espeak": "ipa", "flite": "arpabet", "festival": "arpabet", "mbrola": "sampa"},
        "pause_symbol": "",
        "totals": summarise(recs),
        "shards": recs,
    }
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, root / MANIFEST)
    return manifest


# ---------------------------------------------------------------------------
# the build


def _init_worker() -> None:
    # Leave the CPU to the interactive work on this shared machine.
    try:
        os.nice(10)
    except OSError:
        pass
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@dataclass
class Progress:
    """How far each voice configuration is towards its share of audio."""

    planned: dict[str, float]
    done_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    done_n: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    next_index: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    inflight_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, rec: dict) -> None:
        key = rec["config"]
        self.done_s[key] += rec["seconds"]
        self.done_n[key] += rec["n_utterances"]
        self.next_index[key] = max(self.next_index[key], rec["index"] + 1)

    def estimate(self, key: str, index: int) -> float:
        """Expected seconds of shard ``index`` (measured per-utterance average once known)."""
        n = VAL_SHARD_UTTERANCES if index == 0 else TRAIN_SHARD_UTTERANCES
        per = self.done_s[key] / self.done_n[key] if self.done_n[key] else EST_SECONDS_PER_UTTERANCE
        return n * per

    def barren(self, key: str) -> bool:
        """Tried, finished, and the voice produced nothing: don't loop on it."""
        return self.next_index[key] > 0 and self.done_n[key] == 0 and self.inflight_s[key] <= 1e-6

    def wants_more(self, key: str) -> bool:
        k = self.next_index[key]
        if k == 0:
            return True  # every config gets its validation shard
        if self.barren(key):
            return False
        # Stop when the next shard would overshoot its share more than it fills.
        return self.done_s[key] + self.inflight_s[key] + 0.5 * self.estimate(key, k) < self.planned[key]

    def finished(self, keys: Iterable[str]) -> bool:
        return all(not self.wants_more(k) and self.inflight_s[k] <= 1e-6 for k in keys)


def _existing_records(root: Path, seed: int) -> list[dict]:
    """Shard records of a previous build at ``root`` whose files are still there."""
    if not (root / MANIFEST).exists():
        return []
    old = load_manifest(root)
    if old.get("format") != FORMAT_VERSION:
        raise CorpusError(f"{root} was built by corpus format {old.get('format')} (now {FORMAT_VERSION}): "
                          "its phone labels differ; delete it or use another --out")
    if old.get("seed") != seed:
        raise CorpusError(f"{root} holds a corpus built with seed {old.get('seed')}; use that seed or another --out")
    out = []
    for r in old.get("shards", []):
        if r["n_utterances"] and not (root / r["path"]).exists():
            continue  # deleted by hand: make it again
        if r["n_utterances"] and "phone_counts" not in r:  # made before the inventory was recorded
            utts = load_shard(root / r["path"])
            r = dict(r, alphabet=utts[0].phones[0].alphabet, phone_counts=phone_counts(utts))
        out.append(r)
    return out


def _failed_record(job: ShardJob, error: BaseException) -> ShardRecord:
    cfg = job.config
    return ShardRecord(job.rel_path, cfg.engine, cfg.voice, cfg.key, cfg.language, job.split, job.index,
                       0, 0.0, 0.0, 1, [repr(error)[:300]])


def build(
    out: Path | str,
    minutes: float = 60.0,
    seed: int = 0,
    engines: Iterable[str] | None = None,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Make every missing shard until each configuration has its share of audio.

    Budgets are shared over every *installed* engine, but only ``engines`` (all
    if None) are built by this call -- so a partial build and a later full one
    make the same shards.
    """
    from tqdm import tqdm

    if minutes <= 0:
        raise CorpusError("--minutes must be positive")
    wanted = set(engines) if engines is not None else None
    unknown = (wanted or set()) - {c.engine for c in plan()}
    if unknown:
        raise CorpusError(f"unknown engine(s): {', '.join(sorted(unknown))}")
    all_cfgs = available_configs()
    if not all_cfgs:
        raise CorpusError("no speech engine is available: install piper-tts/espeakng-loader (scripts/setup.sh)")
    cfgs = [c for c in all_cfgs if wanted is None or c.engine in wanted]
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    state = Progress(budgets(all_cfgs, minutes))
    records = {r["path"]: r for r in _existing_records(root, seed)}
    for r in records.values():
        state.add(r)

    def save() -> dict:
        return write_manifest(root, seed=seed, minutes=minutes, records=list(records.values()),
                              planned=state.planned, complete=state.finished(c.key for c in all_cfgs),
                              started=started)

    target = sum(state.planned[c.key] for c in cfgs)
    bar = tqdm(total=int(target), unit="s", desc="corpus (seconds of audio)", disable=not progress)
    bar.update(int(min(target, sum(state.done_s[c.key] for c in cfgs))))
    pending: dict[Future, tuple[ShardJob, float]] = {}  # job and the seconds it was counted for
    turn = 0
    max_pending = 2 * max(1, workers)
    ctx = multiprocessing.get_context("spawn")  # no forked onnxruntime/espeak state
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx, initializer=_init_worker) as pool:
        while True:
            # Round-robin over configs, resuming where the last scan stopped, so
            # every voice and engine makes progress together.
            for _ in range(len(cfgs)):
                if len(pending) >= max_pending:
                    break
                cfg = cfgs[turn % len(cfgs)]
                turn += 1
                if not state.wants_more(cfg.key):
                    continue
                job = ShardJob(cfg, state.next_index[cfg.key], seed, str(root))
                est = state.estimate(cfg.key, job.index)
                state.next_index[cfg.key] += 1
                state.inflight_s[cfg.key] += est
                pending[pool.submit(make_shard, job)] = (job, est)
            if not pending:
                break
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in finished:
                job, est = pending.pop(fut)
                state.inflight_s[job.config.key] -= est
                try:
                    rec = fut.result()
                except Exception as e:  # a crashed engine must not lose the shards already made
                    rec = _failed_record(job, e)
                if rec.errors:
                    tqdm.write(f"warning: {rec.config} shard {rec.index}: {rec.failures} failed, e.g. {rec.errors[0]}")
                records[rec.path] = asdict(rec)
                state.add(records[rec.path])
                bar.update(int(min(rec.seconds, max(0, bar.total - bar.n))))
                save()
    bar.close()
    return save()


def print_info(manifest: dict) -> None:
    t = manifest["totals"]
    print(f"corpus: {t['minutes']:.1f} min, {t['utterances']} utterances, seed {manifest['seed']}, "
          f"complete={manifest['complete']}, updated {manifest['updated']}")
    for name in ("per_engine", "per_split", "per_language", "per_config"):
        print(f"  {name[4:]}:")
        for k, v in t[name].items():
            rtf = f"  synth {v['realtime_factor']:.3f}x real time" if "realtime_factor" in v else ""
            print(f"    {k:28s} {v['minutes']:7.2f} min  {v['utterances']:5d} utt{rtf}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.training.corpus", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="make (or extend) the corpus")
    b.add_argument("--out", default="data/corpus")
    b.add_argument("--minutes", type=float, default=60.0)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--engines", default=None, help="comma-separated subset to build now, e.g. piper,espeak")
    b.add_argument("--workers", type=int, default=2)
    i = sub.add_parser("info", help="summarise a corpus")
    i.add_argument("--out", default="data/corpus")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            engines = [e.strip() for e in args.engines.split(",") if e.strip()] if args.engines else None
            manifest = build(args.out, args.minutes, args.seed, engines, args.workers)
        else:
            manifest = load_manifest(args.out)
        print_info(manifest)
        return 0
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the shards made so far are kept; run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
