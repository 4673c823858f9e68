"""Settings of the batch studio and where it keeps its files.

Everything lives under ``<data_dir>/studio`` except the avatar cache, which is
shared with the live server (``<data_dir>/avatars``) so a video prepared for a
batch is instantly available as a live avatar and vice versa.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


def usable_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class StudioConfig:
    # One single-threaded render process per core: the renderer, the model and
    # x264 are each pinned to one thread, so N processes use N cores and never
    # oversubscribe the machine.
    workers: int = 0                       # 0 = one per usable core
    max_upload_bytes: int = 1024 * 1024 * 1024
    max_audio_seconds: float = 30 * 60.0
    fps: float = 25.0
    # Retention: 0 disables a limit.  Oldest results go first.
    retention_max_results: int = 0
    retention_max_bytes: int = 0
    retention_max_age_days: float = 0.0
    # Worker processes run below the web server's priority so the page stays
    # responsive while a batch saturates every core.
    worker_nice: int = 10
    log_max_bytes: int = 2 * 1024 * 1024
    log_backups: int = 3
    progress_interval_s: float = 0.4       # how often workers record progress / SSE polls
    checkpoint: Path | None = None         # mouth model weights; None = checkpoints/mouth_net.pt
    avatar_root: Path | None = None        # avatar cache; None = <data_dir>/avatars (shared with live)
    piper_voice_files: tuple[Path, ...] = ()  # the operator's own piper voices, as in ServerConfig
    remote_voices: tuple = ()              # the live server's remote TTS engines (tts.registry.RemoteEngine)
    render_backend: Callable[[], Any] | None = None  # studio.render_backend.BackendFactory; None = local pool

    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else usable_cores()

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError("workers must be >= 0 (0 = one per core)")
        if self.max_upload_bytes <= 0:
            raise ValueError("max_upload_bytes must be positive")
        if not 1.0 <= self.fps <= 60.0:
            raise ValueError("fps must be between 1 and 60")


@dataclass(frozen=True)
class StudioPaths:
    """The studio's folders inside one data directory."""

    data_dir: Path
    name: str = "studio"     # the CLI runs in a private folder so it never touches the server's queue
    avatar_root: Path | None = None

    @property
    def root(self) -> Path:
        return self.data_dir / self.name

    @property
    def db(self) -> Path:
        return self.root / "studio.sqlite3"

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def thumbs(self) -> Path:
        return self.root / "thumbs"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def log(self) -> Path:
        return self.root / "logs" / "jobs.log"

    @property
    def avatars(self) -> Path:
        return self.avatar_root if self.avatar_root is not None else self.data_dir / "avatars"

    def create(self) -> "StudioPaths":
        for folder in (self.uploads, self.results, self.thumbs, self.features, self.log.parent,
                       self.avatars):
            folder.mkdir(parents=True, exist_ok=True)
        return self
