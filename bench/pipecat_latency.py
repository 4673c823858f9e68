"""Pipecat: what ``LipstreamVideoService`` adds over watching the channel directly.

    python -m bench.pipecat_latency [--turns 5] [--no-record]

The server runs as ``run_live.py``.  A real pipecat pipeline (in its own venv,
testing/pipecat_env.py) feeds real speech as ``TTSAudioRawFrame``s at real time;
in the same process a plain WHEP client watches the same channel.  Measured, per
video frame: reaching the end of the pipeline (decoded, paired with its sound,
converted to an ``OutputImageRawFrame`` and pushed) minus reaching the plain
viewer (decoded) -- matched by the frame's sender time.  Also: the lag of the lips
behind the sound as pushed, and the first TTS chunk → the first open-mouth image
out of the pipeline.

Target (issue 11): added latency ≤ 40 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import numpy as np

from bench.live_common import ServerProcess, load_average, pct
from bench.report import record
from models.avatar.avatar import load_avatar
from testing.live_measure import MouthMeter
from testing.media import speech_sample, write_wav
from testing.pipecat_env import ensure_env, run_driver
from testing.pipecat_measure import OPEN_MARGIN, added_latency_ms, av_lag, timeline

TTS_RATE = 24_000


def _speech_wav(path: Path) -> Path:
    s = np.concatenate([speech_sample("Front_Center"), np.zeros(1600, np.float32), speech_sample("Rear_Right")])
    n = int(len(s) * TTS_RATE / 16_000)
    return write_wav(path, np.interp(np.arange(n) * 16_000 / TTS_RATE, np.arange(len(s)), s), TTS_RATE)


async def run(turns: int) -> dict:
    python = ensure_env()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        server = await ServerProcess.start(tmp_path / "data")
        try:
            drive = await run_driver(python, server.url, _speech_wav(tmp_path / "tts.wav"), tmp_path / "run",
                                     "--turns", str(turns), "--viewer", timeout=60.0 + 8.0 * turns)
            meter = MouthMeter(load_avatar("default", tmp_path / "data" / "avatars"))
        finally:
            server.stop()
        tl = timeline(drive, meter)
        r = drive.result
        lags, first_open = [], []
        idle = float(np.median(tl.score[tl.t_img < r["turns"][0]["start"]]))
        for turn in r["turns"]:
            lags.append(av_lag(tl, turn["start"] - 0.5, turn["end"] + 1.0)[0] * 1000.0)
            opened = tl.t_img[(tl.t_img > turn["start"]) & (tl.score > idle + OPEN_MARGIN)]
            if len(opened):
                first_open.append((opened[0] - turn["start"]) * 1000.0)
        return {"added": added_latency_ms(drive, tl), "lag": lags, "first_open": first_open, "load": load_average()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=5)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    r = asyncio.run(run(args.turns))
    added = r["added"]
    lines = [
        "One channel; a pipecat pipeline (`LipstreamVideoService` → collector) and a plain WHEP viewer in one "
        "process; real speech fed as 24 kHz `TTSAudioRawFrame`s at real time.",
        "",
        "| | n | p50 ms | p95 ms | max ms | target |",
        "|---|---|---|---|---|---|",
        f"| added latency: frame out of the pipeline − same frame at the plain viewer | {len(added)} "
        f"| {pct(added, 50):.1f} | {pct(added, 95):.1f} | {np.max(added):.1f} | ≤ 40 |",
        f"| lips behind the sound as pushed (per turn) | {len(r['lag'])} | {pct(r['lag'], 50):+.0f} "
        f"| {pct(np.abs(r['lag']), 95):.0f} (abs) | {np.max(np.abs(r['lag'])):.0f} (abs) | |",
        f"| first TTS chunk in → first open-mouth image out (per turn) | {len(r['first_open'])} "
        f"| {pct(r['first_open'], 50):.0f} | {pct(r['first_open'], 95):.0f} | {np.max(r['first_open']):.0f} | |",
        "",
        f"Load average {r['load']:.1f}.",
    ]
    print("\n".join(lines))
    if not args.no_record:
        record("bench/pipecat_latency.py", lines)


if __name__ == "__main__":
    main()
