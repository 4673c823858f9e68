"""Live per-frame CPU at native HD: render + convert + encode, 1080×1920 and 720×1280.

    python -m bench.hd_live [--seconds 12] [--frames 300] [--repeats 3] [--no-record]

A generated portrait talking head (face 440 px wide at 1080×1920, 293 px at 720×1280)
is prepared like an upload, then a live session renders real speech over it.  Per
frame, one core (process CPU time, OpenCV and torch on one thread, as in a worker),
the worker's path: ``compose`` returns the stored I420 source frame plus the mouth
region; ``Picture.i420()`` writes only that region, converted, into a copy; the
encoder (VP8 or H.264, worker settings) takes it.

Each size runs twice: from the raw I420 store (memory-mapped; avatars up to about
13 s at 1080×1920 fit its 1 GiB budget) and from JPEG only (longer avatars: every
frame shown is decoded).  The default 512² photo avatar runs in the same process as a
reference, so the HD figures can be read as ratios on a noisy machine.
Every configuration runs ``--repeats`` times, the repeats of all configurations interleaved (a busy
minute of the shared machine then lands on one repeat of each, not on every repeat of one); a row
shows the median over the repeats of the per-frame means, and the p95 over all their frames.
Targets: ≤ 30 ms at 1080×1920, ≤ 15 ms at 720×1280.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.report import record
from bench.speech import long_speech
from live.engine.session import EngineConfig, LipSyncSession
from live.rtc.video_encoder import VideoEncoder
from models.avatar.avatar import Avatar, default_avatar, load_avatar, prepare_avatar
from models.avatar.frame_store import RAW_FILE, RAW_SHAPE_FILE
from models.mouth.mouth_model import MouthPredictor
from testing.hd_media import talking_head_video

ROOT = Path(__file__).resolve().parent.parent
SIZES = (((1080, 1920), 440.0, 30.0), ((720, 1280), 293.0, 15.0))
CODECS = ("vp8", "h264")


def hd_source(cache: Path, size: tuple[int, int], face_px: float, seconds: float) -> Path:
    """The generated portrait talking head of this size and length (made once, kept in ``cache``)."""
    w, h = size
    src = cache / f"talking_{w}x{h}_{seconds:g}s.mp4"
    if not src.exists():
        print(f"generating {src.name} ...", flush=True)
        talking_head_video(src, cache, width=w, height=h, face_px=face_px, seconds=seconds)
    return src


def hd_avatar(cache: Path, size: tuple[int, int], face_px: float, seconds: float) -> Avatar:
    info = prepare_avatar(hd_source(cache, size, face_px, seconds), cache)
    assert (info.width, info.height) == size, (info.width, info.height)
    return load_avatar(info.avatar_id, cache)


def jpeg_only(avatar: Avatar, cache: Path) -> Avatar:
    """The same avatar without its raw frames (as a longer one would be stored)."""
    root = cache / "jpeg_only"
    target = root / avatar.info.avatar_id
    if not target.exists():
        tmp = root / f".{avatar.info.avatar_id}.{os.getpid()}"
        shutil.copytree(avatar.directory, tmp, ignore=shutil.ignore_patterns(RAW_FILE, RAW_SHAPE_FILE))
        os.replace(tmp, target)
    out = load_avatar(avatar.info.avatar_id, root, raw_frames=False)
    assert not out._frames.is_raw
    return out


def measure(avatar: Avatar, predictor: MouthPredictor, audio: np.ndarray, frames: int) -> dict[str, np.ndarray]:
    """Per codec, the (frames, 3) render / convert / encode CPU ms of each frame; "edited": the share
    of frames whose mouth was edited."""
    w, h = avatar.info.width, avatar.info.height
    out = {}
    edited = 0
    for codec in CODECS:
        session = LipSyncSession(avatar, predictor, EngineConfig(fps=25.0))
        session.push_audio(audio)
        session.end_of_stream()
        enc = VideoEncoder(codec, w, h, 25.0)
        rows = []
        for k in range(frames):
            t0 = time.process_time()
            frame = session.next_frame(pad_silence=True)          # features + model + region render
            t1 = time.process_time()
            i420 = frame.picture.i420()
            t2 = time.process_time()
            enc.encode(i420, k * 3600)
            t3 = time.process_time()
            rows.append([t1 - t0, t2 - t1, t3 - t2])
            edited += frame.picture.edit is not None
        out[codec] = np.array(rows) * 1000.0
    out["edited"] = np.array(edited / (frames * len(CODECS)))
    return out


def summary(repeats: list[dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
    """Per codec: the median over repeats of each part's per-frame mean, and the p95 of all frames' totals."""
    out = {}
    for codec in CODECS:
        runs = [r[codec] for r in repeats]
        parts = np.median([a.mean(axis=0) for a in runs], axis=0)
        out[codec] = {"render": parts[0], "convert": parts[1], "encode": parts[2],
                      "total": float(np.median([a.sum(axis=1).mean() for a in runs])),
                      "p95": float(np.percentile(np.concatenate([a.sum(axis=1) for a in runs]), 95))}
    out["edited"] = {"share": float(np.mean([r["edited"] for r in repeats]))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=12.0, help="length of the generated avatar videos")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3, help="runs of every configuration, interleaved; rows show medians")
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "bench_hd")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    predictor = MouthPredictor.load()
    audio = long_speech(args.frames / 25.0 + 1.0)
    load0 = os.getloadavg()[0]
    lines = [
        f"Live session frames on one core (process CPU ms per frame, cv2 and torch on one thread), "
        f"{args.frames} frames of real speech; avatars: generated {args.seconds:g} s portrait talking heads; "
        f"median of {max(1, args.repeats)} interleaved repeats (p95: over all their frames). "
        "Render = features + model + the mouth region (its BGR pixels read from the stored I420 frame); "
        "convert = the stored I420 frame copied with the region converted in; encode = worker settings.",
        "",
        "| size | face px | frames from | codec | render | convert | encode | total mean | total p95 | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    # Every configuration: (label, avatar), the 512² reference first.
    configs: list[tuple[tuple[int, int] | None, float, str, Avatar]] = [(None, 0.0, "raw I420", default_avatar(args.cache))]
    for size, face_px, _ in SIZES:
        raw = hd_avatar(args.cache, size, face_px, args.seconds)
        face = float(np.median(np.linalg.norm(raw.landmarks[:, 454] - raw.landmarks[:, 234], axis=1)))
        configs += [(size, face, "raw I420", raw), (size, face, "JPEG", jpeg_only(raw, args.cache))]
    runs: list[list[dict[str, np.ndarray]]] = [[] for _ in configs]
    for k in range(max(1, args.repeats)):
        for c, (_, _, _, avatar) in enumerate(configs):
            runs[c].append(measure(avatar, predictor, audio, args.frames))
        print(f"repeat {k + 1}/{args.repeats} done", flush=True)
    results = [summary(r) for r in runs]
    ref = results[0]
    for codec in CODECS:
        v = ref[codec]
        lines.append(f"| 512×512 photo (reference) | | raw I420 | {codec} | {v['render']:.2f} | {v['convert']:.2f} | "
                     f"{v['encode']:.2f} | **{v['total']:.2f}** | {v['p95']:.2f} | |")
    targets = {size: target for size, _, target in SIZES}
    for (size, face, label, _), r in zip(configs[1:], results[1:]):
        target = targets[size]
        for codec in CODECS:
            v = r[codec]
            verdict = f"≤ {target:g} ms: {'met' if v['total'] <= target else 'MISSED'}"
            lines.append(f"| {size[0]}×{size[1]} | {face:.0f} | {label} | {codec} | {v['render']:.2f} | "
                         f"{v['convert']:.2f} | {v['encode']:.2f} | **{v['total']:.2f}** | {v['p95']:.2f} | "
                         f"{verdict} ({v['total'] / ref[codec]['total']:.1f}× the 512² row) |")
        if label == "JPEG":
            lines.append(f"| {size[0]}×{size[1]} | | | mouth edited in {100 * r['edited']['share']:.0f}% of frames | | | | | | |")
    lines += ["", f"Load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (2 shared cores)."]
    print("\n".join(lines))
    if not args.no_record:
        record("bench/hd_live.py", lines)


if __name__ == "__main__":
    main()
