"""Batches and items: their states, the allowed transitions, and progress.

A batch is one audio (uploaded or synthesized) plus an ordered list of avatar
videos; each video is an item that becomes one result.  The lifecycle::

    batch:  draft -> queued -> running -> finished | cancelled
                       \\-> cancelled        \\-> failed (the audio itself is unusable)
    item:   pending -> queued -> running -> done | failed | cancelled
                         ^          |
                         \\---------/  (server restarted mid-render: resumed)

Only the states are defined here; ``studio.db`` stores them and
``studio.worker_pool`` drives them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from enum import Enum

from live.http.errors import ApiError


class StudioError(ApiError):
    """A request the studio cannot honour; ``status`` is the HTTP status to answer with
    (the one JSON error layer, live/http/errors.py, answers it)."""


class NotFound(StudioError):
    status = 404


class Conflict(StudioError):
    status = 409


class UnsupportedMedia(StudioError):
    status = 415


class BatchStatus(str, Enum):
    DRAFT = "draft"
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (BatchStatus.FINISHED, BatchStatus.FAILED, BatchStatus.CANCELLED)

    @property
    def active(self) -> bool:
        return self in (BatchStatus.QUEUED, BatchStatus.RUNNING)


class ItemStatus(str, Enum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (ItemStatus.DONE, ItemStatus.FAILED, ItemStatus.CANCELLED)


_BATCH_MOVES: dict[BatchStatus, frozenset[BatchStatus]] = {
    BatchStatus.DRAFT: frozenset({BatchStatus.QUEUED, BatchStatus.CANCELLED}),
    BatchStatus.QUEUED: frozenset({BatchStatus.RUNNING, BatchStatus.CANCELLED, BatchStatus.FAILED}),
    BatchStatus.RUNNING: frozenset({BatchStatus.FINISHED, BatchStatus.FAILED, BatchStatus.CANCELLED}),
    BatchStatus.FINISHED: frozenset(),
    BatchStatus.FAILED: frozenset(),
    BatchStatus.CANCELLED: frozenset(),
}

_ITEM_MOVES: dict[ItemStatus, frozenset[ItemStatus]] = {
    ItemStatus.PENDING: frozenset({ItemStatus.QUEUED, ItemStatus.CANCELLED}),
    ItemStatus.QUEUED: frozenset({ItemStatus.RUNNING, ItemStatus.FAILED, ItemStatus.CANCELLED}),
    # running -> queued is the resume path after a crash or a lost worker process
    ItemStatus.RUNNING: frozenset({ItemStatus.DONE, ItemStatus.FAILED, ItemStatus.CANCELLED,
                                   ItemStatus.QUEUED}),
    ItemStatus.DONE: frozenset(),
    ItemStatus.FAILED: frozenset(),
    ItemStatus.CANCELLED: frozenset(),
}


class InvalidTransition(Conflict):
    pass


def check_batch_move(old: BatchStatus, new: BatchStatus) -> None:
    if new not in _BATCH_MOVES[old]:
        raise InvalidTransition(f"batch is {old.value}; it cannot become {new.value}")


def check_item_move(old: ItemStatus, new: ItemStatus) -> None:
    if new not in _ITEM_MOVES[old]:
        raise InvalidTransition(f"item is {old.value}; it cannot become {new.value}")


@dataclass(frozen=True)
class Upload:
    id: str
    kind: str                 # "audio" | "video" (a photo counts as a video avatar source)
    filename: str             # the name the user gave, for display only
    path: str                 # relative to the studio root when owned, else absolute
    size: int
    content_type: str
    duration: float | None
    owned: bool               # False for CLI inputs: never delete the user's own file
    created_at: float


@dataclass(frozen=True)
class Batch:
    id: str
    name: str
    status: BatchStatus
    fps: float
    audio_upload: str | None
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Item:
    id: str
    batch_id: str
    position: int
    video_upload: str
    out_name: str             # file name of its result inside the batch's folder
    status: ItemStatus
    stage: str = ""
    progress: float = 0.0
    error: str | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    result_id: str | None = None
    crashes: int = 0          # render processes that died on it (a server restart is not one)


@dataclass(frozen=True)
class Result:
    id: str
    item_id: str
    batch_id: str
    filename: str
    path: str
    thumb_path: str | None
    duration: float
    size: int
    width: int
    height: int
    audio_name: str
    video_name: str
    created_at: float
    render_seconds: float


@dataclass(frozen=True)
class ItemView:
    """An item as the page shows it: with its source name."""

    item: Item
    video_name: str

    def to_json(self) -> dict:
        d = _jsonable(asdict(self.item))
        d["video_name"] = self.video_name
        return d


@dataclass(frozen=True)
class BatchProgress:
    """One snapshot of a batch for the progress stream."""

    batch: Batch
    audio_name: str | None
    audio_duration: float | None
    items: list[ItemView]
    now: float = field(default_factory=time.time)

    @property
    def fraction(self) -> float:
        if not self.items:
            return 1.0 if self.batch.status.terminal else 0.0
        return sum(_item_fraction(v.item) for v in self.items) / len(self.items)

    @property
    def current(self) -> list[ItemView]:
        return [v for v in self.items if v.item.status is ItemStatus.RUNNING]

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in ItemStatus}
        for v in self.items:
            out[v.item.status.value] += 1
        return out

    def eta_seconds(self) -> float | None:
        """Time left, from the pace so far: elapsed / fraction done x fraction left."""
        b = self.batch
        if b.status is not BatchStatus.RUNNING or b.started_at is None:
            return None
        frac = self.fraction
        elapsed = max(0.0, self.now - b.started_at)
        if frac <= 0.02 or elapsed < 1.0:
            return None
        return max(0.0, elapsed * (1.0 - frac) / frac)

    def to_json(self) -> dict:
        eta = self.eta_seconds()
        return {
            "batch": _jsonable(asdict(self.batch)),
            "audio_name": self.audio_name,
            "audio_duration": self.audio_duration,
            "items": [v.to_json() for v in self.items],
            "counts": self.counts(),
            "progress": round(self.fraction, 4),
            "current": [v.item.id for v in self.current],
            "current_names": [v.video_name for v in self.current],
            "eta_s": None if eta is None else round(eta, 1),
        }


def _item_fraction(item: Item) -> float:
    if item.status.terminal:
        return 1.0
    if item.status is ItemStatus.RUNNING:
        return min(max(item.progress, 0.0), 1.0)
    return 0.0


def _jsonable(d: dict) -> dict:
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in d.items()}


def result_json(r: Result) -> dict:
    d = _jsonable(asdict(r))
    d.pop("path", None)
    d.pop("thumb_path", None)
    d["url"] = f"/studio/results/{r.id}/video"
    d["download_url"] = f"/studio/files/{r.batch_id}/{r.filename}"
    d["thumb_url"] = f"/studio/results/{r.id}/thumb.jpg" if r.thumb_path else None
    return d


def upload_json(u: Upload) -> dict:
    return {"id": u.id, "kind": u.kind, "filename": u.filename, "size": u.size,
            "content_type": u.content_type, "duration": u.duration}
