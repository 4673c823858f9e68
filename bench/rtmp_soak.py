"""An RTMP output over a long run with ingest outages: sync, recovery and memory.

    python -m bench.rtmp_soak [--minutes 30] [--size 512x512] [--outage-s 5] [--no-record]

A real nginx-rtmp ingest on 127.0.0.1 receives one ``RtmpOutput`` fed at real
time with the channel's own H.264 (CBR, 2 s GOP) and a white flash + beep once a
second.  The ingest is killed twice (at a third and two thirds of the run) and
restarted after ``--outage-s``.  Figures, all from what a player pulls back:
A/V offset (flash vs beep) and frame interval over 10 s at the start and at the
end, the time from each restart to the output being live again and to a player's
first picture, and the resident memory of the sender process and of this process
(growth per 10 min after a warm-up, least squares).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bench.report import record
from live.broadcast.rtmp_output import RtmpOutput
from testing.broadcast_feed import FlashBeepSource, av_offsets, beep_times, feed_realtime, flash_times
from testing.rtmp_server import PulledStream, RtmpServer, pull

FPS = 25.0
PULL_S = 10.0
RSS_EVERY_S = 10.0


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def growth_per_10min(samples: list[tuple[float, float]], after_s: float) -> float | None:
    pts = np.array([(t, v) for t, v in samples if t >= after_s])
    if len(pts) < 3 or pts[-1, 0] - pts[0, 0] < 30:
        return None
    return float(np.polyfit(pts[:, 0], pts[:, 1], 1)[0] * 600)


def sync_figures(got: PulledStream, period_s: float) -> tuple[list[float], float]:
    flashes = flash_times(got.video_times, got.video_luma)
    beeps = beep_times(got.audio, got.audio_rate, got.audio_start or 0.0)
    return av_offsets(flashes, beeps, period_s).offsets_ms, got.frame_interval_s() * 1000


class StatusTimes:
    """Monotonic times of the output's state changes."""

    def __init__(self) -> None:
        self.events: list[tuple[float, dict]] = []
        self.changed = asyncio.Event()

    def __call__(self, event: dict) -> None:
        self.events.append((time.monotonic(), event))
        self.changed.set()

    async def wait_state(self, state: str, after: float, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, e in self.events:
                if t >= after and e["state"] == state:
                    return t
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                pass
        return None


async def run(args) -> list[str]:
    width, height = (int(v) for v in args.size.lower().split("x"))
    total_s = args.minutes * 60
    warmup_s = min(60.0, total_s / 6)
    server = RtmpServer()
    server.start()
    source = FlashBeepSource(width, height, FPS, keyframe_s=2.0)
    status = StatusTimes()
    url = server.url("soak")
    out = RtmpOutput(url, width, height, FPS, status, source.request_keyframe)
    stop = asyncio.Event()
    t0 = time.monotonic()
    out.start()
    feed = asyncio.create_task(feed_realtime(source, [out.put], stop))
    rss: dict[str, list[tuple[float, float]]] = {"sender": [], "bench": []}
    sender_cpu: list[tuple[float, float]] = []

    async def sample_memory() -> None:
        while not stop.is_set():
            now = time.monotonic() - t0
            pid = out.sender_pid
            for name, p in (("sender", pid), ("bench", os.getpid())):
                value = rss_mb(p) if p else None
                if value is not None:
                    rss[name].append((now, value))
            c = cpu_seconds(pid) if pid else None
            if c is not None:
                sender_cpu.append((now, c))
            try:
                await asyncio.wait_for(stop.wait(), RSS_EVERY_S)
            except asyncio.TimeoutError:
                pass

    sampler = asyncio.create_task(sample_memory())
    outages: list[tuple[float, float | None, float | None]] = []
    # The player decodes in a process of its own, so this process's memory is the feed's and the output's.
    players = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    loop = asyncio.get_running_loop()
    try:
        assert await status.wait_state("live", t0, 60), "the output never went live"
        await asyncio.sleep(3)
        start_pull = await loop.run_in_executor(players, pull, url, PULL_S)
        for k in (1, 2):
            await asyncio.sleep(max(0.0, t0 + k * total_s / 3 - time.monotonic()))
            server.kill()
            await asyncio.sleep(args.outage_s)
            server.start()
            back = time.monotonic()
            live_at = await status.wait_state("live", back, 60)
            first = await loop.run_in_executor(players, pull, url, 1.0)
            outages.append((args.outage_s, live_at - back if live_at else None,
                            first.first_picture_at - back if first.first_picture_at else None))
        await asyncio.sleep(max(0.0, t0 + total_s - PULL_S - time.monotonic()))
        end_pull = await loop.run_in_executor(players, pull, url, PULL_S)
        info = out.info()
    finally:
        stop.set()
        await asyncio.gather(feed, sampler, return_exceptions=True)
        await out.stop()
        server.close()
        players.shutdown()

    period = source.flash_every / FPS
    start_off, start_iv = sync_figures(start_pull, period)
    end_off, end_iv = sync_figures(end_pull, period)
    cpu = (sender_cpu[-1][1] - sender_cpu[0][1]) / (sender_cpu[-1][0] - sender_cpu[0][0]) \
        if len(sender_cpu) > 1 and sender_cpu[-1][0] > sender_cpu[0][0] else float("nan")

    def offsets(o: list[float]) -> str:
        return f"{np.mean(o):+.1f} / {max(map(abs, o)):.1f} ms ({len(o)} flashes)" if o else "no flash/beep pairs"

    def growth(name: str) -> str:
        g = growth_per_10min(rss[name], warmup_s)
        first_last = f"{rss[name][0][1]:.0f} → {rss[name][-1][1]:.0f} MB" if rss[name] else "–"
        return f"{first_last}; {g:+.2f} MB per 10 min" if g is not None else f"{first_last}; run too short"

    lines = [
        f"{args.minutes:g} min, {width}x{height} at {FPS:g} fps, H.264 CBR (channel encoder, 2 s GOP) + AAC 48 kHz, "
        f"one output to nginx-rtmp on 127.0.0.1, ingest killed twice for {args.outage_s:g} s. "
        f"Load average at the end {os.getloadavg()[0]:.1f} (shared machine).",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| A/V offset at the player, first {PULL_S:.0f} s (beep − flash): mean / max abs | {offsets(start_off)} "
        "| \\|offset\\| ≤ 40 ms |",
        f"| A/V offset at the player, last {PULL_S:.0f} s | {offsets(end_off)} | no drift |",
        f"| frame interval at the player, start / end (median) | {start_iv:.1f} / {end_iv:.1f} ms | 40 ms |",
    ]
    for i, (down, live, picture) in enumerate(outages, 1):
        fmt = lambda v: f"{v:.1f} s" if v is not None else "never"   # noqa: E731
        lines.append(f"| outage {i} ({down:g} s down): restart → output live / → a new player's first picture "
                     f"| {fmt(live)} / {fmt(picture)} | a few seconds |")
    lines += [
        f"| sender process RSS (after {warmup_s:.0f} s warm-up: growth by least squares) | {growth('sender')} | ≈ 0 |",
        f"| this process RSS (the feed's encoder and the output) | {growth('bench')} | ≈ 0 |",
        f"| sender process CPU | {100 * cpu:.1f} % of one core | – |",
        f"| frames sent / dropped, reconnects | {info['frames_sent']} / {info['frames_dropped']}, "
        f"{info['reconnects']} | – |",
        f"| bitrate measured by the output (muxed payload) | {info['bitrate_kbps']} kbps | – |",
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--size", default="512x512")
    ap.add_argument("--outage-s", type=float, default=5.0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    lines = asyncio.run(run(args))
    print("\n".join(lines))
    if not args.no_record:
        record("bench/rtmp_soak.py", lines)


if __name__ == "__main__":
    main()
