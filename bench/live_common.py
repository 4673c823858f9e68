"""Shared pieces of the live-server benchmarks.

The server runs as its own process (``run_live.py``, exactly as a user starts
it) and the viewers are aiortc peers in the benchmark process, so the figures
include everything a real deployment has: WebRTC, codecs, worker processes.
Viewers on the same two cores do cost CPU (VP8/Opus decoding); each benchmark
says so next to its figures.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    url: str
    data_dir: Path

    @classmethod
    async def start(cls, data_dir: Path, max_sessions: int = 4, timeout: float = 180.0,
                    extra_args: tuple[str, ...] = (), launcher: tuple[str, ...] = ()) -> "ServerProcess":
        """``launcher``: a module (and its options) that runs ``run_live.py``'s main after ``--``
        (e.g. ``bench.lossy_link``); by default the script itself."""
        port = free_port()
        args = ["--host", "127.0.0.1", "--port", str(port),
                "--data-dir", str(data_dir), "--max-sessions", str(max_sessions), *extra_args]
        program = ["-m", *launcher, "--"] if launcher else [str(ROOT / "run_live.py")]
        cmd = [sys.executable, *program, *args]
        log = open(data_dir.parent / f"server-{port}.log", "w")
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        server = cls(proc, f"http://127.0.0.1:{port}", data_dir)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}; see {log.name}")
                try:
                    async with http.get(server.url + "/health") as resp:
                        health = await resp.json()
                        if health.get("default_avatar") == "ready":
                            return server
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    server.stop()
                    raise TimeoutError("server did not become ready")
                await asyncio.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def load_average() -> float:
    return os.getloadavg()[0]


def first_loud(times: np.ndarray, rms: np.ndarray, after: float, threshold: float = 0.01) -> float | None:
    idx = np.flatnonzero((times > after) & (rms > threshold))
    return float(times[idx[0]]) if len(idx) else None


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")
