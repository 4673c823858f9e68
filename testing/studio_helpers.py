"""Shared pieces of the studio tests: a real server in its own process, real media.

    python -m testing.studio_helpers --data-dir D --port P [--max-upload BYTES] [--checkpoint CKPT]

starts the real application (``live.server.app.create_app``) with the studio mounted, as
a user's server would run, so tests can kill it with SIGKILL mid-batch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = REPO / "checkpoints" / "mouth_net.pt"


# -- model weights ------------------------------------------------------------------------

def checkpoint_for_tests(folder: Path) -> Path:
    """The shipped mouth model; if this checkout has none yet, the same architecture
    with fixed random weights (these tests check the studio's plumbing, not lip quality)."""
    if os.environ.get("LIPSTREAM_TEST_CHECKPOINT"):
        return Path(os.environ["LIPSTREAM_TEST_CHECKPOINT"])
    if DEFAULT_CHECKPOINT.exists():
        return DEFAULT_CHECKPOINT
    import torch

    from models.mouth.mouth_model import MouthNet, save_checkpoint

    path = folder / "mouth_net_untrained.pt"
    if not path.exists():
        torch.manual_seed(0)
        save_checkpoint(MouthNet(), path)
    return path


# -- media ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class StudioMedia:
    audio: Path              # real speech, wav
    audio_seconds: float
    face: Path               # a real face, 2 s
    face_b: Path             # the same face at another size (a second avatar)
    no_face: Path            # moving noise: a valid video without a face
    not_media: Path          # a text file named like a video
    corrupt: Path            # an mp4 with its header destroyed


def make_media(folder: Path, face_seconds: float = 2.0) -> StudioMedia:
    from testing.media import corrupt_file, face_video, make_video, speech_sample, trim_silence, write_wav

    folder.mkdir(parents=True, exist_ok=True)
    speech = trim_silence(speech_sample("Front_Center"))
    audio = np.concatenate([np.zeros(1600, np.float32), speech, np.zeros(1600, np.float32)])
    wav = write_wav(folder / "speech.wav", audio)
    face = face_video(folder / "presenter.mp4", seconds=face_seconds, size=(256, 256))
    face_b = face_video(folder / "presenter_wide.mp4", seconds=face_seconds, size=(320, 240))
    rng = np.random.default_rng(1)
    noise = [(rng.random((192, 192, 3)) * 255).astype(np.uint8) for _ in range(int(face_seconds * 25))]
    no_face = make_video(folder / "empty_room.mp4", noise)
    not_media = folder / "notes.mp4"
    not_media.write_text("These are my meeting notes, not a video.\n" * 50)
    corrupt = corrupt_file(face, folder / "broken.mp4", mode="header")
    return StudioMedia(wav, len(audio) / 16_000, face, face_b, no_face, not_media, corrupt)


# -- a real server process ------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m testing.studio_helpers`` in a subprocess, on a free loopback port."""

    def __init__(self, data_dir: Path, checkpoint: Path, max_upload: int = 20_000_000,
                 log_path: Path | None = None, avatar_root: Path | None = None) -> None:
        self.data_dir = data_dir
        self.avatar_root = avatar_root   # a prepared avatar cache (live sessions start at once)
        self.checkpoint = checkpoint
        self.max_upload = max_upload
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or data_dir.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> "ServerProcess":
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "testing.studio_helpers", "--data-dir", str(self.data_dir),
               "--port", str(self.port), "--max-upload", str(self.max_upload),
               "--checkpoint", str(self.checkpoint)]
        if self.avatar_root is not None:
            cmd += ["--avatar-root", str(self.avatar_root)]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early ({self.proc.returncode}):\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"server did not start in {timeout} s:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def worker_pids(self) -> list[int]:
        """Every process descended from the server (forkserver, render processes, ...)."""
        if self.proc is None:
            return []
        found, todo = [], [self.proc.pid]
        while todo:
            out = subprocess.run(["pgrep", "-P", str(todo.pop())], capture_output=True, text=True).stdout
            children = [int(p) for p in out.split()]
            found += children
            todo += children
        return found

    def kill(self) -> None:
        """SIGKILL, like a crash or the OOM killer: no clean-up code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _serve(argv: list[str]) -> None:
    from aiohttp import web

    from studio.config import StudioConfig
    from studio.routes import STUDIO_CONFIG

    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-upload", type=int, default=20_000_000)
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--avatar-root", type=Path, default=None)
    args = ap.parse_args(argv)
    from live.server.app import create_app
    from live.server.config import ServerConfig

    app = create_app(ServerConfig(host="127.0.0.1", port=args.port, data_dir=args.data_dir,
                                  preload_default_avatar=False, mouth_checkpoint=args.checkpoint,
                                  avatar_root=args.avatar_root))
    app[STUDIO_CONFIG] = StudioConfig(max_upload_bytes=args.max_upload, checkpoint=args.checkpoint,
                                      progress_interval_s=0.25)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, shutdown_timeout=5)


# -- client side ----------------------------------------------------------------------------

async def upload(session: aiohttp.ClientSession, url: str, *paths: Path,
                 content_type: str = "application/octet-stream") -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    for p in paths:
        form.add_field("file", p.read_bytes(), filename=p.name, content_type=content_type)
    return await session.post(url, data=form)


async def new_batch(session: aiohttp.ClientSession, base: str, name: str = "test") -> str:
    async with session.post(f"{base}/studio/batches", json={"name": name}) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["batch"]["id"]


async def follow_events(session: aiohttp.ClientSession, url: str, timeout: float = 240.0) -> list[dict]:
    """Every progress snapshot of an SSE stream until its ``end`` event."""
    snapshots: list[dict] = []
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/event-stream")
        event, data = None, []
        async for raw in r.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "":
                if event == "progress":
                    snapshots.append(json.loads("\n".join(data)))
                if event == "end":
                    return snapshots
                event, data = None, []
    return snapshots


async def wait_for(session: aiohttp.ClientSession, url: str, predicate, timeout: float = 120.0,
                   every: float = 0.3) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        async with session.get(url) as r:
            last = await r.json()
        if predicate(last):
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"timed out waiting on {url}; last answer: {last}")


def check_mp4(path: Path, audio_seconds: float, fps: float = 25.0) -> None:
    """The file decodes, with video and audio lasting the audio's duration."""
    from testing.media import decode_media

    media = decode_media(path)
    assert media.frames, f"{path.name}: no video frames"
    assert media.audio_rate > 0 and len(media.audio) > 0, f"{path.name}: no audio"
    video_s = len(media.frames) / fps
    audio_s = len(media.audio) / media.audio_rate
    assert abs(video_s - audio_seconds) <= 2 / fps + 1e-6, (path.name, video_s, audio_seconds)
    assert abs(audio_s - audio_seconds) <= 0.1, (path.name, audio_s, audio_seconds)


def check_zip(data: bytes, expected: set[str], folder: Path, audio_seconds: float) -> None:
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        assert set(z.namelist()) == expected, z.namelist()
        for name in z.namelist():
            out = folder / name.replace("/", "_")
            out.write_bytes(z.read(name))
            check_mp4(out, audio_seconds)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _serve(sys.argv[1:])
