"""A live channel hosted by a Ray actor against a local one: the channel's own mic → frame latency.

    .venv/bin/python -m bench.ray_live [--seconds 20] [--trials 2] [--no-record]

One run: a local Ray cluster (two raylets, 1 CPU each, started here) and two
servers started as a user starts them -- ``run_live.py serve`` (channels in the
server's process) and ``run_live.py serve --ray ADDRESS --ray-channel-cpus 1``
(each channel in a Ray actor; the server only relays its calls).  Each trial
makes one channel on each server, in turn; an operator WHEP peer in this process
sends real speech as the channel's microphone.  The figure is the channel's own
latency: a microphone packet arriving on the channel's host → the frame carrying
it leaving, p50/p95 over the trial (its ``latency_session_ms``).  On the actor the
WebRTC peer, the clock and the frame pump run on the actor's event loop, so this
shows what that costs against the server's own loop.

Target (issue 12): the actor-hosted p95 within 20 ms of the local one.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import aiohttp
import numpy as np

from bench.live_common import ServerProcess, load_average
from bench.report import record
from bench.speech import long_speech
from testing.webrtc_client import LipstreamClient

TARGET_MS = 20.0
STORE = 100 * 1024 * 1024


async def one_channel(url: str, speech: np.ndarray, seconds: float) -> dict:
    """A channel driven by an operator's microphone for ``seconds``; its last stats."""
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/channels", json={"name": "bench"}) as resp:
            info = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"POST /channels: {resp.status} {info}")
        cid = info["channel_id"]
        client = LipstreamClient(url, http=http, frame_fn=lambda f: 0.0)
        stats: list[dict] = []

        async def follow() -> None:
            async for ev in client.events():
                if ev["type"] == "stats":
                    stats.append(ev)

        try:
            await client.connect(whep=f"/channels/{cid}/whep", mic=speech)   # loopback: the operator
            client.channel_id = cid
            task = asyncio.ensure_future(follow())
            await asyncio.sleep(seconds + 1.5)
            task.cancel()
        finally:
            await client.close()
            async with http.delete(f"{url}/channels/{cid}") as resp:
                await resp.read()
    if not stats or not stats[-1]["latency_session_ms"]["n"]:
        raise RuntimeError("the channel reported no microphone latency")
    return {**stats[-1]["latency_session_ms"], "fps": stats[-1]["fps"], "node": info.get("node_id")}


async def run(seconds: float, trials: int, work: Path) -> dict:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": STORE,
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=1, object_store_memory=STORE)
    cluster.wait_for_nodes()
    servers: list[ServerProcess] = []
    try:
        (work / "local").mkdir()
        (work / "ray").mkdir()
        local = await ServerProcess.start(work / "local" / "data")
        servers.append(local)
        remote = await ServerProcess.start(work / "ray" / "data", extra_args=(
            "--ray", cluster.address, "--ray-channel-cpus", "1"))
        servers.append(remote)
        speech = long_speech(seconds)
        out: dict[str, list[dict]] = {"local": [], "ray": []}
        for _ in range(trials):   # interleaved: the machine's load drifts alike for both
            out["local"].append(await one_channel(local.url, speech, seconds))
            out["ray"].append(await one_channel(remote.url, speech, seconds))
        out["load"] = load_average()
        return out
    finally:
        for s in servers:
            s.stop()
        cluster.shutdown()


def summarize(result: dict, seconds: float, trials: int) -> list[str]:
    def med(kind: str, key: str) -> float:
        return float(np.median([r[key] for r in result[kind]]))

    gap = med("ray", "p95") - med("local", "p95")
    lines = [
        f"One channel at a time, driven by an operator's microphone (real speech, {seconds:.0f} s per "
        f"trial, {trials} trials each, interleaved); the channel's own latency (mic packet arrival on its "
        "host → its frame leaving), medians over the trials. Local: `run_live.py serve`; Ray: `run_live.py "
        "serve --ray ADDRESS` with a local cluster of two raylets on this machine, the channel in an actor. "
        "The WHEP viewer runs on the same cores.",
        "",
        "| channel host | mic → frame p50 | p95 | p95 of each trial | mic packets | fps |",
        "|---|---|---|---|---|---|",
    ]
    for kind, label in (("local", "the server's process"), ("ray", "a Ray actor")):
        each = ", ".join(f"{r['p95']:.0f}" for r in result[kind])
        lines.append(f"| {label} | {med(kind, 'p50'):.0f} ms | {med(kind, 'p95'):.0f} ms | {each} ms | "
                     f"{med(kind, 'n'):.0f} | {med(kind, 'fps'):.1f} |")
    verdict = "met" if gap <= TARGET_MS else "NOT met"
    lines += ["", f"Actor-hosted p95 − local p95: **{gap:+.0f} ms** (target ≤ {TARGET_MS:.0f} ms: {verdict}). "
              f"Load average at the end of the run: {result['load']:.1f}. A trial's p95 spans its whole "
              "channel, its start included; a single slow trial shows in the per-trial column, not in the "
              "median."]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ray-live-") as tmp:
        result = asyncio.run(run(args.seconds, args.trials, Path(tmp)))
    for kind in ("local", "ray"):
        for r in result[kind]:
            print(f"{kind:5s} p50 {r['p50']} ms  p95 {r['p95']} ms  n={r['n']}  fps {r['fps']}  node {r['node']}")
    lines = summarize(result, args.seconds, args.trials)
    print("\n".join(lines))
    if not args.no_record:
        record("bench/ray_live.py", lines)


if __name__ == "__main__":
    main()
