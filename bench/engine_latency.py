"""Engine-added latency: a mic sample pushed → the first frame that shows it is ready.

    python -m bench.engine_latency [--seconds 30] [--no-record]

Real speech is fed in 20 ms chunks on a simulated real-time clock (chunk k
arrives when its last sample would have been spoken).  Every frame is pulled as
soon as its audio (with the model's look-ahead) is in; the measured compute time
of that pull is added.  Latency is counted from the arrival of the frame's first
audio sample, the worst case for that frame.  Target: ≤ the look-ahead + one frame period.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bench.report import record
from bench.speech import long_speech
from live.engine.session import EngineConfig, LipSyncSession
from models.audio.pcm import SAMPLE_RATE
from models.avatar.avatar import default_avatar
from models.mouth.feature_window import LOOKAHEAD_S
from models.mouth.mouth_model import MouthPredictor

CHUNK = 320  # 20 ms, the WebRTC audio packet size


def run(seconds: float, fps: float = 25.0) -> list[str]:
    torch.set_num_threads(1)
    audio = long_speech(seconds)
    avatar = default_avatar(Path("data/avatars"))
    session = LipSyncSession(avatar, MouthPredictor.load(), EngineConfig(fps=fps))
    timeline = session.timeline
    arrival = lambda sample: (np.ceil(sample / CHUNK) * CHUNK) / SAMPLE_RATE  # noqa: E731
    latencies, compute = [], []
    busy_until = 0.0
    for k in range(len(audio) // CHUNK):
        now = (k + 1) * CHUNK / SAMPLE_RATE
        session.push_audio(audio[k * CHUNK : (k + 1) * CHUNK], SAMPLE_RATE)
        while session.ready():
            t0 = time.perf_counter()
            frame = session.next_frame(pad_silence=False)
            dt = time.perf_counter() - t0
            compute.append(dt)
            # A frame can't start before the previous one finished (one worker per session).
            done = max(now, busy_until) + dt
            busy_until = done
            latencies.append(done - arrival(timeline.frame_start_sample(frame.index) + 1))
    lat = np.array(latencies) * 1000
    comp = np.array(compute) * 1000
    bound = (LOOKAHEAD_S + 1 / fps) * 1000
    return [
        f"Real speech, {seconds:.0f} s in 20 ms chunks, {fps:g} fps, default avatar "
        f"{avatar.info.width}x{avatar.info.height}, torch 1 thread.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| look-ahead (model window past the shown moment) | {LOOKAHEAD_S * 1000:.0f} ms |",
        f"| added latency p50 | {np.percentile(lat, 50):.1f} ms |",
        f"| added latency p95 | {np.percentile(lat, 95):.1f} ms |",
        f"| added latency max | {lat.max():.1f} ms |",
        f"| target (look-ahead + one frame) | ≤ {bound:.0f} ms |",
        f"| per-frame compute (features + model + render) p50 / p95 | {np.percentile(comp, 50):.1f} / {np.percentile(comp, 95):.1f} ms |",
        f"| verdict | {'meets' if np.percentile(lat, 95) <= bound else 'MISSES'} the target at p95 |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    lines = run(args.seconds)
    print("\n".join(lines))
    if not args.no_record:
        record("bench/engine_latency.py", lines)


if __name__ == "__main__":
    main()
