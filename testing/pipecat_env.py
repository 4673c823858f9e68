"""The pipecat environment, and running the pipecat driver in it (tests and bench).

pipecat needs protobuf >= 5 and lipstream's face tracking (mediapipe) < 5, so the
pipecat integration (``integrations/pipecat``) runs in a venv of its own, built from
PyPI on first use and cached under ``~/.cache/lipstream/`` by the hash of its
dependencies (``LIPSTREAM_PIPECAT_VENV`` names another place).  The integration's
source is put on ``PYTHONPATH`` rather than installed, so edits need no rebuild.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION = ROOT / "integrations" / "pipecat"
DRIVER = INTEGRATION / "scripts" / "drive_pipeline.py"


class PipecatEnvUnavailable(RuntimeError):
    """The environment cannot be built here (PyPI unreachable)."""


def requirements() -> list[str]:
    project = tomllib.loads((INTEGRATION / "pyproject.toml").read_text())["project"]
    return sorted(project["dependencies"])


def venv_dir() -> Path:
    override = os.environ.get("LIPSTREAM_PIPECAT_VENV")
    if override:
        return Path(override)
    key = hashlib.sha256(("\n".join(requirements()) + sys.version).encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "lipstream" / f"pipecat-venv-{key}"


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def ensure_env() -> Path:
    """The venv's python, building the venv first if needed (minutes, once)."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    done = venv / ".lipstream-complete"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # two test runs must not build it at once
        if done.exists():
            return python
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        proc = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                               *requirements()], capture_output=True, text=True)
        if proc.returncode != 0:
            if not _pypi_reachable():
                raise PipecatEnvUnavailable("PyPI is unreachable: cannot build the pipecat environment")
            raise RuntimeError(f"pip install failed:\n{proc.stderr[-3000:]}")
        done.write_text("\n".join(requirements()))
    return python


@dataclass
class DriverRun:
    result: dict            # drive_pipeline.py's result.json
    lumas: np.ndarray       # luma of every image pushed downstream (N x H x W)
    log: str


async def run_driver(python: Path, server_url: str, wav: Path, out_dir: Path, *args: str,
                     token: str | None = None, timeout: float = 180.0, check: bool = True) -> DriverRun:
    """Run the driver against ``server_url`` without blocking this event loop (it may serve it).

    ``check=False``: a failed run returns its log (and an empty result) instead of raising."""
    cmd = [str(python), str(DRIVER), "--server", server_url, "--wav", str(wav), "--out", str(out_dir), *args]
    if token:
        cmd += ["--token", token]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, cwd=str(INTEGRATION))
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    log = out.decode(errors="replace")
    if proc.returncode != 0:
        if not check:
            return DriverRun({}, np.zeros((0, 1, 1), np.uint8), log)
        raise RuntimeError(f"the pipecat driver failed ({proc.returncode}):\n{log[-4000:]}")
    result = json.loads((out_dir / "result.json").read_text())
    return DriverRun(result, np.load(out_dir / "images.npy"), log)
