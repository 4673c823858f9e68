"""Train the audio-to-mouth network on the aligned TTS corpus.

    nice -n 10 python -m models.training.train_mouth --corpus data/corpus --out checkpoints/mouth_net.pt \\
        --minutes-budget 40 --seed 0

1. Utterances: ``models.training.corpus`` shards.  Whole voices are held out for validation
   (the network must generalise to voices it never heard — the user's).
2. Each training utterance yields ``--variants`` versions: the clean one and
   ``models.training.augment.augment`` variants (noise, reverb, codecs, speed; a speed
   change scales the phone times with it).
3. Each version → ``log_mel`` → one window per 12.5 ms (at a random sub-hop offset)
   exactly as ``models.mouth.feature_window.window_for`` cuts it at run time, with targets
   from ``models.mouth.visemes.frame_targets``.
4. AdamW with a one-cycle schedule; loss = label-smoothed cross-entropy on visemes
   + Huber on the shape, closure frames weighted up so the lips really meet.
   With a time budget the schedule runs on elapsed time (a shared machine's
   speed varies too much to size a run in steps up front); the steps done are
   recorded in the metadata, and ``--steps N`` replays that many, step-scheduled.
5. The best validation checkpoint is saved with ``checkpoints/mouth_net.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from models.audio.mel_stream import HOP, MAX_ABS_VALUE, N_MELS, log_mel
from models.audio.pcm import SAMPLE_RATE
from models.mouth.feature_window import WINDOW_FRAMES, last_frame_for
from models.mouth.mouth_model import (
    OPEN_MARGIN,
    MouthNet,
    MouthNetConfig,
    clamp_shape,
    feature_hash,
    n_params,
    save_checkpoint,
)
from models.mouth.phonemes import AlignedUtterance, PhoneSpan
from models.mouth.visemes import COARSE_OF_VISEME, PP, SIL, frame_targets, is_known

FRAME_STEP_S = HOP / SAMPLE_RATE          # one window per mel hop (12.5 ms)
CLOSED_TARGET = -0.5 * OPEN_MARGIN       # raw-openness target for "lips together"
CLOSURE_WEIGHT = 5.0                      # /p b m/ closures are rare but must not be missed
PAD = WINDOW_FRAMES                       # silence columns around each utterance
VAL_WINDOWS = 20_000                      # validation passes stay cheap


class TrainError(RuntimeError):
    """The corpus is missing or unusable for training."""


# --------------------------------------------------------------------------- data
@dataclass
class FrameSet:
    """All training windows of a set of utterances, stored once as mel columns.

    ``ends[i]`` is the column of the newest mel frame of window i; the window is
    ``mels[:, ends[i]-23 : ends[i]+1]``.  Utterances are separated by PAD silence
    columns so windows at their edges read silence, as they do live.
    """

    mels: np.ndarray            # (80, n_columns) float16
    ends: np.ndarray            # (n,) int64
    visemes: np.ndarray         # (n,) int64
    shapes: np.ndarray          # (n, 3) float32
    weights: np.ndarray         # (n,) float32
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ends)

    def every(self, k: int) -> FrameSet:
        """Every k-th window (validation needs many utterances, not every hop of each)."""
        sl = slice(None, None, max(1, k))
        return FrameSet(self.mels, self.ends[sl], self.visemes[sl], self.shapes[sl], self.weights[sl], self.sources[sl])

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, mels=self.mels, ends=self.ends, visemes=self.visemes, shapes=self.shapes,
                 weights=self.weights, sources=np.array(self.sources, dtype=np.str_))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> FrameSet:
        with np.load(path) as z:
            return cls(z["mels"], z["ends"], z["visemes"], z["shapes"], z["weights"], [str(x) for x in z["sources"]])

    def windows(self, idx: np.ndarray) -> np.ndarray:
        cols = self.ends[idx][:, None] + np.arange(-WINDOW_FRAMES + 1, 1)[None, :]
        return np.ascontiguousarray(self.mels[:, cols].transpose(1, 0, 2), dtype=np.float32)


@dataclass
class UtteranceFrames:
    mel: np.ndarray             # (80, n_frames)
    times: np.ndarray           # (n,) the moments the windows describe
    last: np.ndarray            # (n,) newest mel frame per window (may be <0 or ≥ n_frames)
    visemes: np.ndarray
    shapes: np.ndarray
    source: str


def scale_phones(phones: list[PhoneSpan], factor: float) -> list[PhoneSpan]:
    return [PhoneSpan(p.start * factor, p.end * factor, p.phone, p.alphabet) for p in phones]


def utterance_frames(
    utt: AlignedUtterance, rng: np.random.Generator, augment: bool, babble: list[np.ndarray] | None = None
) -> UtteranceFrames:
    audio, phones = utt.audio, list(utt.phones)
    if augment:
        from models.training.augment import augment as augment_audio

        audio, time_scale = augment_audio(audio, rng, babble_sources=babble)
        phones = scale_phones(phones, float(time_scale))
    audio = np.asarray(audio, dtype=np.float32)
    duration = len(audio) / SAMPLE_RATE
    offset = rng.uniform(0.0, FRAME_STEP_S)
    times = np.arange(offset, duration, FRAME_STEP_S)
    last = np.array([last_frame_for(t) for t in times], dtype=np.int64)
    visemes, shapes = frame_targets(phones, times)
    return UtteranceFrames(log_mel(audio), times, last, visemes, shapes, utt.source)


FRAMESET_VERSION = 1  # bump when windows or targets are computed differently


def cache_key(manifest: dict, train: list[AlignedUtterance], val: list[AlignedUtterance], variants: int, seed: int) -> str:
    import hashlib

    # the label and augmentation code itself is part of the key: a changed table
    # or op must never be trained on stale windows
    models_dir = Path(__file__).resolve().parents[1]
    label_code = (models_dir / "mouth" / "visemes.py", models_dir / "training" / "augment.py")
    code = [hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else "" for p in label_code]
    blob = json.dumps([
        FRAMESET_VERSION, feature_hash(), manifest.get("updated"), len(train), len(val), variants, seed,
        sorted({u.source for u in val}), code, [u.text for u in train[:50]],
    ])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cached_frameset(cache: Path | None, name: str, build) -> tuple[FrameSet, bool]:
    """Building windows (augmentation above all) takes minutes; reuse an identical build."""
    path = cache / f"{name}.npz" if cache else None
    if path is not None and path.exists():
        try:
            print(f"reusing {path}")
            return FrameSet.load(path), True
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is rebuilt
    fs = build()
    if path is not None:
        fs.save(path)
    return fs, False


def augmentation_available() -> bool:
    try:
        from models.training.augment import augment  # noqa: F401
    except ImportError:
        return False
    return True


def _frames_job(args: tuple[AlignedUtterance, int, int, int, list[np.ndarray]]) -> UtteranceFrames:
    utt, seed, utt_index, variant, babble = args
    rng = np.random.default_rng([seed, utt_index, variant])
    return utterance_frames(utt, rng, augment=variant > 0, babble=babble)


def build_frameset(
    utts: list[AlignedUtterance], variants: int, seed: int, workers: int, desc: str
) -> FrameSet:
    pick = np.random.default_rng([seed, 99])

    def babble_for(i: int, r: int) -> list[np.ndarray]:
        # other speakers of the same set as background talkers
        if r == 0 or len(utts) < 4:
            return []
        return [utts[j].audio for j in pick.choice(len(utts), 3, replace=False) if j != i]

    jobs = [(u, seed, i, r, babble_for(i, r)) for i, u in enumerate(utts) for r in range(variants)]
    parts: list[UtteranceFrames] = []
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for part in tqdm(pool.map(_frames_job, jobs, chunksize=4), total=len(jobs), desc=desc, unit="utt"):
                parts.append(part)
    else:
        parts = [_frames_job(j) for j in tqdm(jobs, desc=desc, unit="utt")]
    return concat_frames(parts)


def concat_frames(parts: list[UtteranceFrames]) -> FrameSet:
    mels, ends, vis, shp, srcs = [], [], [], [], []
    col = 0
    silence = np.full((N_MELS, PAD), -MAX_ABS_VALUE, dtype=np.float16)
    for p in parts:
        n = p.mel.shape[1]
        # look-ahead past the end of the audio reads silence, as it does live
        keep = (p.last >= -PAD + WINDOW_FRAMES - 1) & (p.last < n + PAD)
        mels += [silence, p.mel.astype(np.float16), silence]
        ends.append(col + PAD + p.last[keep])
        vis.append(p.visemes[keep])
        shp.append(p.shapes[keep])
        srcs += [p.source] * int(keep.sum())
        col += n + 2 * PAD
    visemes = np.concatenate(vis) if vis else np.zeros(0, np.int64)
    shapes = np.concatenate(shp) if shp else np.zeros((0, 3), np.float32)
    return FrameSet(
        mels=np.concatenate(mels, axis=1) if mels else np.zeros((N_MELS, 0), np.float16),
        ends=np.concatenate(ends) if ends else np.zeros(0, np.int64),
        visemes=visemes, shapes=shapes, weights=sample_weights(visemes, shapes), sources=srcs,
    )


def sample_weights(visemes: np.ndarray, shapes: np.ndarray, closure_weight: float = CLOSURE_WEIGHT) -> np.ndarray:
    return np.where((visemes == PP) & (shapes[:, 0] == 0.0), closure_weight, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- corpus
def read_corpus(path: Path) -> tuple[list[AlignedUtterance], dict]:
    """All utterances (both splits; ``meta['split']``) and the manifest of a corpus.

    A pickled list of AlignedUtterance is accepted too, for quick experiments.
    """
    path = Path(path)
    if path.suffix == ".pkl" and path.is_file():
        import pickle

        with path.open("rb") as f:
            return pickle.load(f), {"pickle": str(path)}
    from models.training.corpus import CorpusError, iter_utterances, load_manifest

    try:
        manifest = load_manifest(path)
        utts = list(tqdm(iter_utterances(path, split=None), desc="read corpus", unit="utt"))
    except CorpusError as exc:
        raise TrainError(str(exc)) from exc
    if not utts:
        raise TrainError(f"the corpus at {path} has no utterances yet")
    return utts, manifest


def split_by_voice(
    utts: list[AlignedUtterance], seed: int
) -> tuple[list[AlignedUtterance], list[AlignedUtterance], list[str]]:
    """Hold out one English voice of every engine that has several, entirely:
    the network must work for voices it never heard (the user's).  Single-voice
    engines are validated on their corpus validation texts only."""
    by_engine: dict[str, set[str]] = {}
    for u in utts:
        if u.language.startswith("en"):
            by_engine.setdefault(u.source.split("/")[0], set()).add(u.source)
    rng = np.random.default_rng(seed)
    held = sorted(
        sorted(voices)[int(rng.integers(len(voices)))] for _, voices in sorted(by_engine.items()) if len(voices) > 1
    )
    train = [u for u in utts if u.source not in held and not _is_val(u)]
    val = [u for u in utts if u.source in held or _is_val(u)]
    return train, val, held


def _is_val(u: AlignedUtterance) -> bool:
    return u.meta.get("split") == "val" or bool(u.meta.get("heldout"))


# --------------------------------------------------------------------------- loss
def targets_to_raw(shapes: torch.Tensor) -> torch.Tensor:
    """Closed-mouth targets move below 0 so that a confident network renders
    exactly 0 after clamping, instead of hovering a hair above it."""
    raw = shapes.clone()
    raw[:, 0] = torch.where(shapes[:, 0] <= 0.0, torch.full_like(shapes[:, 0], CLOSED_TARGET), shapes[:, 0])
    return raw


def loss_fn(
    logits: torch.Tensor, raw: torch.Tensor, visemes: torch.Tensor, shapes: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    ce = F.cross_entropy(logits, visemes, label_smoothing=0.1, reduction="none")
    err = F.huber_loss(raw, targets_to_raw(shapes), delta=0.1, reduction="none")
    shape_loss = 4.0 * err[:, 0] + err[:, 1] + err[:, 2]
    total = (weights * (ce + 4.0 * shape_loss)).sum() / weights.sum()
    return total, {"ce": float(ce.detach().mean()), "shape": float(shape_loss.detach().mean())}


# --------------------------------------------------------------------------- eval
@torch.inference_mode()
def evaluate(net: MouthNet, data: FrameSet, batch: int = 2048) -> dict[str, float]:
    net.eval()
    preds, shapes, losses = [], [], []
    for lo in range(0, len(data), batch):
        idx = np.arange(lo, min(lo + batch, len(data)))
        x = torch.from_numpy(data.windows(idx))
        logits, raw = net(x)
        v = torch.from_numpy(data.visemes[idx])
        s = torch.from_numpy(data.shapes[idx])
        w = torch.from_numpy(data.weights[idx])
        loss, _ = loss_fn(logits, raw, v, s, w)
        losses.append(float(loss) * len(idx))
        preds.append(logits.argmax(1).numpy())
        shapes.append(clamp_shape(raw).numpy())
    pred = np.concatenate(preds)
    shape = np.concatenate(shapes)
    return frame_metrics(pred, shape, data.visemes, data.shapes) | {"loss": sum(losses) / max(len(data), 1)}


def frame_metrics(pred: np.ndarray, shape: np.ndarray, visemes: np.ndarray, target: np.ndarray) -> dict[str, float]:
    closure = (visemes == PP) & (target[:, 0] == 0.0)
    silence = (visemes == SIL) & (target[:, 0] == 0.0)
    return {
        "viseme_acc": float((pred == visemes).mean()),
        "coarse_acc": float((COARSE_OF_VISEME[pred] == COARSE_OF_VISEME[visemes]).mean()),
        "openness_mae": float(np.abs(shape[:, 0] - target[:, 0]).mean()),
        "width_mae": float(np.abs(shape[:, 1] - target[:, 1]).mean()),
        "closure_frames_closed": float((shape[closure, 0] < 0.1).mean()) if closure.any() else float("nan"),
        "silence_frames_closed": float((shape[silence, 0] < 0.1).mean()) if silence.any() else float("nan"),
        "openness_corr": float(np.corrcoef(shape[:, 0], target[:, 0])[0, 1]) if len(shape) > 1 else float("nan"),
    }


# --------------------------------------------------------------------------- training
@dataclass
class TrainConfig:
    corpus: Path
    out: Path
    minutes_budget: float = 40.0
    seed: int = 0
    variants: int = 3
    batch: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.02
    steps: int | None = None
    workers: int = 2
    threads: int = 2
    max_utterances: int | None = None
    evals: int = 12
    cache: Path | None = Path("data/train_cache")
    closure_weight: float = CLOSURE_WEIGHT
    net: MouthNetConfig = field(default_factory=MouthNetConfig)


def lr_at(progress: float, peak: float) -> float:
    """One-cycle shape: 5 % linear warm-up from peak/25, then cosine down to peak/1000."""
    if progress < 0.05:
        return peak * (0.04 + 0.96 * progress / 0.05)
    x = min(1.0, (progress - 0.05) / 0.95)
    return peak * (0.001 + 0.999 * 0.5 * (1 + math.cos(math.pi * x)))


class Progress:
    """Where in the schedule a run is: by steps (exact replays) or by wall time.

    A shared machine's speed changes by several times within minutes, so a budget
    run measures progress as elapsed training time / budget rather than guessing
    a step count up front; the steps it managed are recorded for replays.
    """

    def __init__(self, steps: int | None, seconds: float) -> None:
        self.steps, self.seconds = steps, max(seconds, 1.0)
        self.t0 = time.perf_counter()

    def at(self, step: int) -> float:
        if self.steps:
            return step / self.steps
        return (time.perf_counter() - self.t0) / self.seconds


def _train_step(net: MouthNet, opt: torch.optim.Optimizer, data: FrameSet, idx: np.ndarray) -> dict[str, float]:
    net.train()
    x = torch.from_numpy(data.windows(idx))
    logits, raw = net(x)
    loss, parts = loss_fn(
        logits, raw, torch.from_numpy(data.visemes[idx]), torch.from_numpy(data.shapes[idx]),
        torch.from_numpy(data.weights[idx]),
    )
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    return {"loss": float(loss.detach()), **parts}


def train(cfg: TrainConfig) -> dict:
    started = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    utts, manifest = read_corpus(cfg.corpus)
    if cfg.max_utterances:
        rng = np.random.default_rng(cfg.seed)
        utts = [utts[i] for i in sorted(rng.permutation(len(utts))[: cfg.max_utterances])]
    train_utts, val_utts, held = split_by_voice(utts, cfg.seed)
    if not train_utts or not val_utts:
        raise TrainError(f"need training and validation utterances; got {len(train_utts)} and {len(val_utts)}")
    print(f"{len(train_utts)} training and {len(val_utts)} validation utterances; held-out voices: {held}")

    variants, val_variants = cfg.variants, min(cfg.variants, 2)
    if variants > 1 and not augmentation_available():
        print("warning: models.training.augment is not available; training on clean audio only", file=sys.stderr)
        variants = val_variants = 1
    key = cache_key(manifest, train_utts, val_utts, variants, cfg.seed)
    train_set, reused = cached_frameset(cfg.cache, f"train-{key}", lambda: build_frameset(
        train_utts, variants, cfg.seed, cfg.workers, "train windows"))
    val_set, _ = cached_frameset(cfg.cache, f"val-{key}", lambda: build_frameset(
        val_utts, val_variants, cfg.seed + 7, cfg.workers, "val windows"))
    val_set = val_set.every(math.ceil(len(val_set) / VAL_WINDOWS))
    for fs in (train_set, val_set):
        fs.weights = sample_weights(fs.visemes, fs.shapes, cfg.closure_weight)
    print(f"{len(train_set):,} training windows, {len(val_set):,} validation windows")

    net = MouthNet(cfg.net)
    budget = cfg.minutes_budget * 60 - (time.time() - started) - 60  # a minute for the last eval and saving
    if not cfg.steps and budget < 60:
        raise TrainError(f"the budget of {cfg.minutes_budget} min is used up by preparing the data")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    progress = Progress(cfg.steps, budget)
    best: dict = {"loss": math.inf}
    best_state = None
    history = []
    step, next_eval = 0, 1.0 / cfg.evals
    bar = tqdm(total=1000, desc="train (‰ of schedule)", unit="‰")
    while True:
        p = progress.at(step)
        if p >= 1.0:
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(p, cfg.lr)
        parts = _train_step(net, opt, train_set, rng.integers(0, len(train_set), cfg.batch))
        step += 1
        bar.update(min(1000, int(1000 * progress.at(step))) - bar.n)
        if step % 50 == 0:
            bar.set_postfix(step=step, loss=f"{parts['loss']:.3f}")
        if progress.at(step) >= next_eval or progress.at(step) >= 1.0:
            next_eval += 1.0 / cfg.evals
            metrics = evaluate(net, val_set)
            history.append({"step": step, **{k: round(v, 4) for k, v in metrics.items()}})
            tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
            if metrics["loss"] < best["loss"]:
                best = {"step": step, **metrics}
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    bar.close()
    steps = step
    net.load_state_dict(best_state)
    net.eval()
    wall = time.time() - started
    meta = {
        "trained_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(["python -m models.training.train_mouth", *sys.argv[1:]]),
        "seed": cfg.seed,
        "steps": steps,
        "batch": cfg.batch,
        "epochs": round(steps * cfg.batch / len(train_set), 2),
        "variants_per_utterance": variants,
        "closure_weight": cfg.closure_weight,
        "net_config": asdict(cfg.net),
        "wall_minutes": round(wall / 60, 1),
        "windows_reused_from_cache": reused,  # then wall time excludes building them
        "machine": f"{os.cpu_count()} cpu, {platform.processor() or platform.machine()}, torch {torch.__version__}",
        "params": n_params(net),
        "feature_hash": feature_hash(),
        "corpus": manifest_summary(manifest, train_utts, val_utts),
        "held_out_voices": held,
        "train_windows": len(train_set),
        "val_windows": len(val_set),
        "best_val": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in best.items()},
        "history": history,
        "unknown_phones": unknown_phones(utts),
    }
    save_checkpoint(net, cfg.out, meta)
    cfg.out.with_suffix(".json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    print(f"saved {cfg.out} ({cfg.out.stat().st_size / 1e6:.2f} MB) after {wall / 60:.1f} min; best val {best}")
    return meta


def unknown_phones(utts: list[AlignedUtterance]) -> dict[str, int]:
    """Symbols the viseme tables had to guess (counted here: workers' counters die with them)."""
    c = Counter((p.alphabet, p.phone) for u in utts for p in u.phones if not is_known(p.phone, p.alphabet))
    return {f"{a}:{p}": n for (a, p), n in c.most_common(30)}


def manifest_summary(manifest: dict, train_utts: list[AlignedUtterance], val_utts: list[AlignedUtterance]) -> dict:
    def minutes(us: list[AlignedUtterance]) -> dict[str, float]:
        out: dict[str, float] = {}
        for u in us:
            out[u.source] = out.get(u.source, 0.0) + u.duration / 60
        return {k: round(v, 2) for k, v in sorted(out.items())}

    return {
        "manifest": {k: manifest.get(k) for k in ("format", "seed", "target_minutes", "complete", "updated")}
        | {"minutes": manifest.get("totals", {}).get("minutes"),
           "minutes_per_engine": {e: v.get("minutes") for e, v in manifest.get("totals", {}).get("per_engine", {}).items()}},
        "train_utterances": len(train_utts),
        "val_utterances": len(val_utts),
        "train_minutes_by_voice": minutes(train_utts),
        "val_minutes_by_voice": minutes(val_utts),
        "languages": sorted({u.language for u in train_utts + val_utts}),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    ap.add_argument("--out", type=Path, default=Path("checkpoints/mouth_net.pt"))
    ap.add_argument("--minutes-budget", type=float, default=40.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", type=int, default=3, help="versions per utterance: 1 clean + N-1 augmented")
    ap.add_argument("--steps", type=int, default=None, help="fixed number of steps (overrides the budget)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-utterances", type=int, default=None)
    ap.add_argument("--cache", type=Path, default=Path("data/train_cache"), help="where built windows are kept")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--closure-weight", type=float, default=CLOSURE_WEIGHT)
    d = MouthNetConfig()
    ap.add_argument("--channels", type=int, default=d.channels)
    ap.add_argument("--channels2", type=int, default=d.channels2)
    ap.add_argument("--hidden", type=int, default=d.hidden)
    a = ap.parse_args(argv)
    cfg = TrainConfig(
        corpus=a.corpus, out=a.out, minutes_budget=a.minutes_budget, seed=a.seed, variants=a.variants,
        steps=a.steps, batch=a.batch, lr=a.lr, workers=a.workers, max_utterances=a.max_utterances,
        cache=None if a.no_cache else a.cache, closure_weight=a.closure_weight,
        net=MouthNetConfig(channels=a.channels, channels2=a.channels2, hidden=a.hidden),
    )
    try:
        train(cfg)
    except TrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
