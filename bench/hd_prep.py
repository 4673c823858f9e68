"""Preparation of a 60 s 1080×1920 portrait video, and the cache it costs per minute.

    python -m bench.hd_prep [--seconds 60] [--no-record]

The source is the generated portrait talking head (testing.hd_media, face 440 px,
H.264).  Target: ≤ 60 s for 60 s of video.  The cache holds the frames as I420 JPEG q92
(a minute of raw 1080×1920 I420 frames would be 4.7 GB: over the raw store's 1 GiB
budget, so no raw copy is written) plus the face arrays.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.hd_live import hd_source
from bench.report import record
from models.avatar.avatar import load_avatar, prepare_avatar

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "bench_hd")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    src = hd_source(args.cache, (1080, 1920), 440.0, args.seconds)
    prep = args.cache / "prep"
    if prep.exists():
        import shutil
        shutil.rmtree(prep)
    t0, c0 = time.perf_counter(), time.process_time()
    info = prepare_avatar(src, prep)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    directory = prep / info.avatar_id
    size = sum(p.stat().st_size for p in directory.iterdir())
    frames = sum(p.stat().st_size for p in directory.iterdir() if p.name.startswith("frames"))
    avatar = load_avatar(info.avatar_id, prep)
    picks = range(0, len(avatar), max(1, len(avatar) // 60))
    t = time.process_time()
    for i in picks:
        avatar.frame_i420(i)
    read_ms = (time.process_time() - t) / len(picks) * 1000
    per_min = 60.0 / info.duration
    lines = [
        f"- source: {args.seconds:g} s 1080×1920 H.264 portrait talking head (face 440 px), {info.n_frames} frames at 25 fps",
        f"- prepare_avatar: **{wall:.1f} s** wall ({cpu:.1f} s CPU of this process) = {info.n_frames / wall:.0f} frames/s; "
        f"target ≤ 60 s: {'met' if wall <= 60 * args.seconds / 60 else 'MISSED'}",
        f"- output size {info.width}×{info.height} (native: no downscale)",
        f"- cache: {size / 2**20:.0f} MB = **{size / 2**20 * per_min:.0f} MB per minute** of video "
        f"({frames / info.n_frames / 1024:.0f} kB/frame I420 JPEG q92; no raw copy at this size)",
        f"- a random frame from the store as the encoder takes it (I420 JPEG decode, one core): {read_ms:.1f} ms",
    ]
    print("\n".join(lines))
    if not args.no_record:
        record("bench/hd_prep.py", lines)


if __name__ == "__main__":
    main()
