"""A channel on air for a long time: RTMP to a real ingest that dies twice, speech all along.

    python -m bench.channel_soak [--minutes 30] [--outage-s 5] [--no-record]

The server runs as ``run_live.py``; a real nginx-rtmp ingest takes the channel's RTMP
output, and the channel says a sentence every 15 s.  The ingest is killed at a third and
at two thirds of the run and restarted after ``--outage-s``.  Figures:

* A/V offset at a player (mouth opening in the pictures against the sound's energy), over
  10 s at the start and at the end (target: within ±40 ms all along);
* each outage: reported on the channel's SSE (``output`` → reconnecting), and the time
  from the ingest's return to the output being live again (target ≤ 5 s);
* resident memory of the server's process tree (server, engine worker, RTMP sender),
  growth per 10 minutes, least squares, from minute 3 and from minute 10 (target ≤ 5 MB / 10 min
  after warm-up).  The server warms up for about 10 minutes of speech (TTS and ONNX arenas,
  allocator arenas that keep freed space) and is flat after it, outages included; the
  server's RSS every 5 minutes shows which.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from bench.channel_fanout import process_tree
from bench.live_common import ServerProcess, load_average
from bench.report import record
from models.avatar.avatar import load_avatar
from testing.live_measure import MouthMeter, best_lag, envelope
from testing.rtmp_server import RtmpServer, play

SENTENCES = ["Welcome back to the stream, everyone.", "Today we are looking at the new phones.",
             "Thank you for the follow, and for all your questions.", "Let me check that for you right now."]


def _role(pid: int, root: int) -> str:
    if pid == root:
        return "server"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    if "live.broadcast.sender" in cmd:
        return "RTMP sender"
    if "forkserver" in cmd:
        return "engine worker" if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1] != str(root) else "forkserver"
    return "other"


def tree_rss_mb(root: int) -> dict[str, float]:
    """Resident memory of the server's process tree, by role (server, engine worker, RTMP sender ...)."""
    out: dict[str, float] = {}
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    role = _role(pid, root)
                    out[role] = out.get(role, 0.0) + int(line.split()[1]) / 1024.0
        except OSError:
            pass
    return out


async def sync_at_player(url: str, meter: MouthMeter, speak) -> tuple[float, float]:
    task = asyncio.create_task(speak())
    played = await asyncio.to_thread(play, url, 10.0, meter.score)
    await task
    t_a, rms = envelope(played.audio, played.audio_rate, 0.01)
    return best_lag(played.times + 0.02, np.array(played.values), played.audio_start + t_a, rms, max_lag=0.25)


async def run(minutes: float, outage_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp, RtmpServer() as ingest:
        data = Path(tmp) / "data"
        server = await ServerProcess.start(data)
        meter = MouthMeter(load_avatar("default", data / "avatars"))
        events: list[dict] = []
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(server.url + "/channels", json={"name": "soak"}) as resp:
                    cid = (await resp.json())["channel_id"]
                target = ingest.url("soak-key")
                async with http.post(server.url + f"/channels/{cid}/outputs", json={"url": target}) as resp:
                    oid = (await resp.json())["output_id"]

                async def listen() -> None:
                    async with http.get(server.url + f"/channels/{cid}/events",
                                        timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
                        async for raw in resp.content:
                            line = raw.decode().strip()
                            if line.startswith("data:"):
                                event = json.loads(line[5:])
                                if event["type"] == "output":
                                    events.append({**event, "at": time.monotonic()})

                async def say(k: int = 0) -> None:
                    async with http.post(server.url + f"/channels/{cid}/say", json={"text": SENTENCES[k % len(SENTENCES)]}):
                        pass

                async def chatter() -> None:
                    k = 0
                    while True:
                        await asyncio.sleep(15.0)
                        await say(k)
                        k += 1

                listener, talker = asyncio.create_task(listen()), asyncio.create_task(chatter())
                t0 = time.monotonic()
                rss: list[tuple[float, float]] = []

                async def sample_rss() -> None:
                    while True:
                        rss.append((time.monotonic() - t0, tree_rss_mb(server.proc.pid)))
                        await asyncio.sleep(10.0)

                sampler = asyncio.create_task(sample_rss())
                await asyncio.sleep(20.0)
                start_sync = await sync_at_player(target, meter, lambda: say(1))
                outages = []
                for fraction in (1 / 3, 2 / 3):
                    await asyncio.sleep(max(0.0, t0 + fraction * minutes * 60 - time.monotonic()))
                    seen = len(events)
                    await asyncio.to_thread(ingest.kill)
                    await asyncio.sleep(outage_s)
                    reported = any(e["state"] == "reconnecting" for e in events[seen:])
                    await asyncio.to_thread(ingest.start)
                    back = time.monotonic()
                    live_at = None
                    while time.monotonic() - back < 60 and live_at is None:
                        live_at = next((e["at"] for e in events[seen:] if e["state"] == "live" and e["at"] >= back), None)
                        await asyncio.sleep(0.1)
                    outages.append({"reported": reported, "resume_s": None if live_at is None else live_at - back})
                await asyncio.sleep(max(0.0, t0 + minutes * 60 - 15 - time.monotonic()))
                end_sync = await sync_at_player(target, meter, lambda: say(2))
                async with http.get(server.url + f"/channels/{cid}/outputs/{oid}") as resp:
                    output = await resp.json()
                for task in (listener, talker, sampler):
                    task.cancel()
            warm = [(t, m) for t, m in rss if t >= 180.0]

            def slope(values: list[float], since: float = 180.0) -> float:
                points = [(t, v) for (t, _), v in zip(warm, values) if t >= since]
                if len(points) <= 3:
                    return float("nan")
                return float(np.polyfit([t for t, _ in points], [v for _, v in points], 1)[0]) * 600.0

            roles = sorted({role for _, m in warm for role in m})
            by_role = {role: slope([m.get(role, 0.0) for _, m in warm]) for role in roles}
            # Steps or a slope?  The server's own RSS every 5 minutes (the outages at 1/3 and 2/3).
            marks = list(range(0, int(minutes) + 1, 5))
            server_at = [(m, min(rss, key=lambda s: abs(s[0] - 60.0 * m))[1].get("server", 0.0)) for m in marks]
            return {"start": start_sync, "end": end_sync, "outages": outages, "output": output, "server_at": server_at,
                    "rss_first": sum(rss[0][1].values()), "rss_last": sum(rss[-1][1].values()),
                    "slope": slope([sum(m.values()) for _, m in warm]),
                    "slope_10": slope([sum(m.values()) for _, m in warm], since=600.0),
                    "by_role": by_role, "load": load_average()}
        finally:
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--outage-s", type=float, default=5.0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    r = asyncio.run(run(args.minutes, args.outage_s))
    (lag0, r0), (lag1, r1) = r["start"], r["end"]
    out = r["output"]
    outage_rows = []
    for i, o in enumerate(r["outages"]):
        resume = "never" if o["resume_s"] is None else f"{o['resume_s']:.1f} s"
        reported = "yes" if o["reported"] else "NO"
        outage_rows.append(f"| outage {i + 1}: reported on SSE / ingest back → output live | {reported} / {resume} | yes / ≤ 5 s |")
    lines = [
        f"{args.minutes:.0f} min, one channel → RTMP (nginx-rtmp on 127.0.0.1), a sentence every 15 s; the ingest "
        f"killed twice for {args.outage_s:.0f} s.",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| A/V offset at a player, start / end | {lag0 * 1000:+.0f} ms (r={r0:.2f}) / {lag1 * 1000:+.0f} ms (r={r1:.2f}) | ±40 ms |",
        *outage_rows,
        f"| memory of the server's process tree, first / last sample | {r['rss_first']:.0f} / {r['rss_last']:.0f} MB | |",
        f"| memory growth from minute 3 (warm-up included) | {r['slope']:+.1f} MB per 10 min | |",
        f"| memory growth from minute 10 (after warm-up) | {r['slope_10']:+.1f} MB per 10 min | ≤ 5 |",
        f"| … of which | {', '.join(f'{k} {v:+.1f}' for k, v in r['by_role'].items())} | |",
        f"| the server process over the run (minute: MB; outages at {args.minutes / 3:.0f} and "
        f"{2 * args.minutes / 3:.0f} min) | {', '.join(f'{m}: {mb:.0f}' for m, mb in r['server_at'])} | |",
        f"| output at the end | {out['state']}, {out['bitrate_kbps']} kbps, {out['frames_sent']} frames sent, "
        f"{out['frames_dropped']} dropped, {out['reconnects']} reconnects | |",
        "",
        f"Load average at the end {r['load']:.1f}.",
    ]
    print("\n".join(lines))
    if not args.no_record:
        record("bench/channel_soak.py", lines)


if __name__ == "__main__":
    main()
