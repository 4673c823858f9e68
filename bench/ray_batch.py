"""The studio on Ray against the local process pool, and how it scales.

    .venv/bin/python -m bench.ray_batch [--videos 8] [--seconds 30] [--size 512] [--nodes 1,2,3] [--no-record]

Runs ``run_live.py batch`` on the same inputs (``--videos`` distinct presenters,
one ``--seconds`` speech) with the local pool (one render process per core), then
with ``--ray`` on a local cluster of 1, 2 and 3 raylets of 1 CPU each
(``ray.cluster_utils.Cluster``; cold: every run starts its workers).  Per run: wall
time, the items' CPU seconds (preparation + render, from the job log), and the
caller's own CPU per item (fetching results, thumbnails, the database).  A null
task's round trip on the cluster gives the scheduling overhead.

Target (issue 12): Ray's wall time within 15 % of the local pool's, on the same
machine with the same number of CPUs.  The projection for 10 and 100 nodes is a
model with its assumptions printed next to it.  Figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.report import record
from bench.studio_batch import make_inputs
from testing.studio_helpers import checkpoint_for_tests

ROOT = Path(__file__).resolve().parent.parent
STORE = 150 * 1024 * 1024


@dataclass(frozen=True)
class Run:
    label: str
    cpus: int
    wall_s: float
    item_cpu_s: list[float]      # per item: preparation + render CPU seconds
    caller_cpu_s: float          # the run_live.py process (and its local children, for the pool)
    nodes: int                   # distinct nodes that rendered
    done: int


def run_batch(label: str, cpus: int, audio: Path, videos: list[Path], work: Path, ckpt: Path,
              ray_address: str | None = None) -> Run:
    out = work / label
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "run_live.py", "batch", "--audio", str(audio), *map(str, videos), "--out", str(out),
           "--data-dir", str(work / f"data-{label}"), "--checkpoint", str(ckpt), "--json", str(out / "summary.json")]
    cmd += ["--ray", ray_address] if ray_address else ["--workers", str(cpus)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{label}: batch failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    item_cpu = [_field(line, "cpu_s") + _field(line, "prep_cpu_s")
                for line in (out / "lipstream-batch.log").read_text().splitlines() if " item_done " in line]
    caller = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    nodes = len({i["node_id"] for i in summary["items"] if i["node_id"]})
    return Run(label, cpus, wall, item_cpu, caller, nodes, sum(i["status"] == "done" for i in summary["items"]))


def _field(line: str, key: str) -> float:
    for word in line.split():
        if word.startswith(key + "="):
            return float(word.split("=", 1)[1])
    return 0.0


def null_task_ms(address: str, n: int = 200) -> float:
    """Median submit-to-result time of an empty 1-CPU task: Ray's scheduling overhead."""
    probe = (
        "import ray, time, statistics, json\n"
        f"ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False)\n"
        "f = ray.remote(num_cpus=1)(lambda: None)\n"
        "ray.get(f.remote())\n"
        "t = []\n"
        f"for _ in range({n}):\n"
        "    t0 = time.perf_counter(); ray.get(f.remote()); t.append(time.perf_counter() - t0)\n"
        "print(json.dumps(statistics.median(t) * 1000))\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    return float(out.stdout.strip().splitlines()[-1])


def with_cluster(n_nodes: int, fn):
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": STORE,
                                                      "include_dashboard": False})
    try:
        for _ in range(n_nodes - 1):
            c.add_node(num_cpus=1, object_store_memory=STORE)
        c.wait_for_nodes()
        return fn(c.address)
    finally:
        c.shutdown()


def summarize(args, local: Run, rays: list[tuple[Run, float]], audio_s: float) -> list[str]:
    n = args.videos
    lines = [f"{n} x {audio_s:.0f} s of speech onto {n} distinct {args.size}x{args.size} presenters, "
             f"`run_live.py batch` from a cold start (render processes / Ray workers start inside the span).", "",
             "| run | CPUs | nodes used | wall s | vs local | x real time | item CPU s (median) | caller CPU s / item |",
             "|---|---|---|---|---|---|---|---|"]

    def row(r: Run, extra: str = "") -> str:
        return (f"| {r.label}{extra} | {r.cpus} | {r.nodes or '-'} | {r.wall_s:.1f} | "
                f"{(r.wall_s / local.wall_s - 1) * 100:+.0f} % | {n * audio_s / r.wall_s:.1f} | "
                f"{statistics.median(r.item_cpu_s):.2f} | {r.caller_cpu_s / n:.2f} |")

    lines.append(row(local))
    for r, _ms in rays:
        lines.append(row(r))
    same = [r for r, _ in rays if r.cpus == local.cpus]
    if same:
        over = same[0].wall_s / local.wall_s - 1
        lines += ["", f"Ray against the local pool with the same {local.cpus} CPUs: {over * 100:+.1f} % wall time "
                      f"(target <= +15 %: {'met' if over <= 0.15 else 'NOT met'})."]
    lines += ["", "Scheduling overhead (median submit-to-result of an empty 1-CPU task): " +
              ", ".join(f"{r.cpus} raylet(s) {ms:.1f} ms" for r, ms in rays) + "."]
    item_cpu = statistics.median([c for r, _ in rays for c in r.item_cpu_s])
    caller = max(r.caller_cpu_s for r, _ in rays) / n
    per_core = audio_s / item_cpu
    lines += ["", "Projection (a model, not a measurement):", "",
              f"- per item: {item_cpu:.2f} CPU s for {audio_s:.0f} s of video ({per_core:.1f} render-seconds per "
              f"CPU-second), one core per item; the caller spends at most {caller:.2f} CPU s per item (its whole "
              "run over the items: result fetch, thumbnail, database, and Ray's start-up, so an upper bound), "
              "on one core;",
              "- assumed: 8-core nodes, all cores rendering; items much more numerous than cores; inputs and results "
              "cross a 1 Gbit/s link to the caller; the analysis (once per batch) is negligible."]
    for nodes in (10, 100):
        cores = nodes * 8
        cluster_rate = cores / item_cpu                      # items per second the cluster renders
        caller_rate = 1 / caller if caller > 0 else float("inf")
        rate = min(cluster_rate, caller_rate)
        bound = "the cluster" if cluster_rate <= caller_rate else "the caller (one process committing results)"
        lines.append(f"- {nodes} nodes ({cores} cores): {rate * 3600:,.0f} items of {audio_s:.0f} s per hour "
                     f"({rate * audio_s:,.0f}x real time), bounded by {bound}.")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--nodes", default="1,2,3", help="raylet counts to run")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    audio, videos = make_inputs(args.videos, args.seconds, args.size)
    work = Path(tempfile.mkdtemp(prefix="ray-bench-", dir=ROOT / "data" / "bench"))
    os.environ.setdefault("LIPSTREAM_RAY_SCRATCH", str(work / "scratch"))
    ckpt = checkpoint_for_tests(work)
    try:
        counts = [int(x) for x in args.nodes.split(",")]
        local = run_batch("local pool", 2, audio, videos, work, ckpt)
        print(local, file=sys.stderr)
        rays = []
        for k in counts:
            def go(address: str, k: int = k) -> tuple[Run, float]:
                return run_batch(f"ray {k} raylet(s)", k, audio, videos, work, ckpt, address), null_task_ms(address)
            rays.append(with_cluster(k, go))
            print(rays[-1], file=sys.stderr)
        lines = summarize(args, local, rays, args.seconds)
        if args.seconds < 30 or args.videos < 8:
            lines.insert(0, f"_Reduced run: {args.videos} x {args.seconds:g} s (the full one is 8 x 30 s)._\n")
        print("\n".join(lines))
        if not args.no_record:
            record("bench/ray_batch.py", lines)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
