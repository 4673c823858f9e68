"""Offline render speed at native size: 60 s at 1080×1920 and at 512², encoding included.

    python -m bench.hd_offline [--seconds 60] [--no-record]

Both renders run in one process, one after the other, on 2 cores (render thread +
libx264 threads), so their figures compare on a noisy machine.  The 1080×1920 avatar
is the generated portrait talking head of ``bench.hd_live`` (face 440 px, a 12 s clip: its
frames come from the raw I420 store).  1080p files use the writer's full-HD preset
(ultrafast with CABAC and deblocking), 512² keeps superfast.
Targets: ≥ 2× real time at 1080×1920, ≥ 6× at 512².  Sync figures are measured on the
decoded HD file (bench.sync_report): lag 0 ± 1 frame, lips together ≥ 95 % in silences.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.hd_live import hd_avatar
from bench.report import record
from bench.speech import long_speech
from bench.sync_report import sync_figures
from live.engine.offline_render import analyze_audio, render_video
from models.avatar.avatar import default_avatar
from models.mouth.mouth_model import MouthPredictor

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "bench_hd")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    audio = long_speech(args.seconds)
    predictor = MouthPredictor.load()
    avatars = [("1080×1920 portrait, face 440 px", hd_avatar(args.cache, (1080, 1920), 440.0, 12.0), 2.0),
               ("512×512 default photo", default_avatar(ROOT / "data" / "avatars"), 6.0)]
    lines = [
        f"{args.seconds:.0f} s of real speech, H.264 crf 20 (superfast at 512², ultrafast+CABAC+deblock at 1080p) + AAC, "
        "2 cores (render thread + x264 threads); "
        "features + model included. Both sizes in one run.",
        "",
        "| avatar | render ms/frame | encode ms/frame (wall, main thread) | wall | × real time | target | sync lag | lips together in silences |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for label, avatar, target in avatars:
            out = Path(tmp) / "out.mp4"
            t0 = time.perf_counter()
            track = analyze_audio(audio, predictor)
            stats = render_video(avatar, track, audio, out)
            wall = time.perf_counter() - t0
            figures = sync_figures(out, audio)
            speed = args.seconds / wall
            n = stats.frames
            lines.append(
                f"| {label} | {1000 * stats.render_seconds / n:.2f} | {1000 * stats.encode_seconds / n:.2f} | "
                f"{wall:.1f} s | **{speed:.1f}×** | ≥ {target:g}×: {'met' if speed >= target else 'MISSED'} | "
                f"{figures.lag_frames:+d} frames | {100 * figures.closed_in_silence:.1f}% |")
            print(lines[-1], flush=True)
    print("\n".join(lines))
    if not args.no_record:
        record("bench/hd_offline.py", lines)


if __name__ == "__main__":
    main()
