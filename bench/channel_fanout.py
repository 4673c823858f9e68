"""Channels: what more viewers and an RTMP output cost, and the mic → WHEP viewer latency.

    python -m bench.channel_fanout [--seconds 20] [--no-record]

The server runs as ``run_live.py``; a real nginx-rtmp ingest takes the RTMP output.
Phase 1: one WHEP viewer, the operator, whose microphone sends real speech (looped).
Phase 2: the same, plus one RTMP output and three more WHEP viewers.  The server's CPU
is measured over its whole process tree (server, engine worker, RTMP sender) in each
phase; the viewers are in this process and not counted.

Targets (issue 9): phase 2 costs ≤ 1.3× phase 1 (each frame is rendered once and
encoded once per codec); mic → WHEP viewer latency p95 ≤ 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.live_common import ServerProcess, cpu_seconds, load_average
from bench.report import record
from bench.speech import long_speech
from testing.rtmp_server import RtmpServer
from testing.webrtc_client import LipstreamClient


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (the forkserver's workers, the RTMP senders)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        children = [p for p, pp in parents.items() if pp in frontier]
        tree += children
        frontier = children
    return tree


def tree_cpu(root: int) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in process_tree(root)}


async def measure(root: int, seconds: float) -> float:
    """Cores used by the server's process tree over ``seconds`` (processes alive throughout)."""
    before, t0 = tree_cpu(root), time.monotonic()
    await asyncio.sleep(seconds)
    after, t1 = tree_cpu(root), time.monotonic()
    used = sum(after[p] - before[p] for p in after if p in before and after[p] == after[p] and before[p] == before[p])
    return used / (t1 - t0)


async def run(seconds: float) -> dict:
    speech = long_speech(60.0)
    with tempfile.TemporaryDirectory() as tmp, RtmpServer() as ingest:
        server = await ServerProcess.start(Path(tmp) / "data")
        viewers: list[LipstreamClient] = []
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(server.url + "/channels", json={"name": "bench"}) as resp:
                    info = await resp.json()
                cid, key = info["channel_id"], info["view_key"]
                operator = LipstreamClient(server.url, frame_fn=lambda f: 0.0)
                viewers.append(operator)
                await operator.connect(whep=f"/channels/{cid}/whep", mic=speech, mic_loop=True)
                await asyncio.sleep(5.0)
                one = await measure(server.proc.pid, seconds)

                async with http.post(server.url + f"/channels/{cid}/outputs", json={"url": ingest.url("bench")}) as resp:
                    output = await resp.json()
                for _ in range(3):
                    v = LipstreamClient(server.url, frame_fn=lambda f: 0.0)
                    viewers.append(v)
                    await v.connect(whep=f"/channels/{cid}/whep?key={key}")
                await asyncio.sleep(5.0)
                five = await measure(server.proc.pid, seconds)
                async with http.get(server.url + f"/channels/{cid}") as resp:
                    info = await resp.json()
                async with http.get(server.url + f"/channels/{cid}/outputs/{output['output_id']}") as resp:
                    out = await resp.json()
            return {"one": one, "five": five, "info": info, "output": out, "load": load_average(),
                    "received": [len(v.video) for v in viewers]}
        finally:
            for v in viewers:
                await v.close()
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    r = asyncio.run(run(args.seconds))
    ratio = r["five"] / r["one"]
    lat = r["info"]["latency_ms"]
    lines = [
        f"One channel, operator viewer with a looping speech mic; {args.seconds:.0f} s per phase; "
        f"CPU of the server's whole process tree (server, engine worker, RTMP sender), viewers not counted.",
        "",
        "| | cores | ratio | target |",
        "|---|---|---|---|",
        f"| 1 WHEP viewer | {r['one']:.3f} | 1.00 | |",
        f"| + 1 RTMP output + 3 WHEP viewers | {r['five']:.3f} | {ratio:.2f} | ≤ 1.3 |",
        "",
        f"Mic → frame leaving for the WHEP viewers (server side): p50 {lat['p50']} ms, p95 {lat['p95']} ms "
        f"(target p95 ≤ 150 ms). Channel fps {r['info']['fps']}, viewers {r['info']['viewers']}; RTMP output "
        f"{r['output']['state']} at {r['output']['bitrate_kbps']} kbps, {r['output']['frames_sent']} frames sent, "
        f"{r['output']['frames_dropped']} dropped. Frames received per viewer: {r['received']}. "
        f"Load average {r['load']:.1f} on {os.cpu_count()} cores.",
    ]
    print("\n".join(lines))
    if not args.no_record:
        record("bench/channel_fanout.py", lines)


if __name__ == "__main__":
    main()
