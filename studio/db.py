"""The studio's SQLite store: the persistent job queue and the results history.

WAL mode lets the render processes record progress while the web server reads
and writes without blocking it; every state change is one short transaction, so
a process killed at any instant leaves a consistent database behind.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from studio.jobs import (
    Batch,
    BatchStatus,
    Item,
    ItemStatus,
    NotFound,
    Result,
    Upload,
    check_batch_move,
    check_item_move,
)

SCHEMA_VERSION = 2   # 2: items.crashes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('audio', 'video')),
    filename TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    duration REAL,
    owned INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    fps REAL NOT NULL,
    audio_upload TEXT REFERENCES uploads(id),
    created_at REAL NOT NULL,
    queued_at REAL,
    started_at REAL,
    finished_at REAL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    video_upload TEXT NOT NULL REFERENCES uploads(id),
    out_name TEXT NOT NULL,
    status TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_by_batch ON items(batch_id, position);
CREATE TABLE IF NOT EXISTS results (
    id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    path TEXT NOT NULL,
    thumb_path TEXT,
    duration REAL NOT NULL,
    size INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    audio_name TEXT NOT NULL,
    video_name TEXT NOT NULL,
    created_at REAL NOT NULL,
    render_seconds REAL NOT NULL DEFAULT 0,
    UNIQUE (batch_id, filename)
);
CREATE INDEX IF NOT EXISTS results_by_date ON results(created_at);
"""


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def connect(path: Path) -> sqlite3.Connection:
    """A connection configured for concurrent use by the server and the workers."""
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives a process crash (only a power cut can
    # lose the last transactions), and commits don't wait for fsync.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class StudioDB:
    """Typed accessors over one connection; one instance per process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = connect(self.path)
        self.conn.executescript(_SCHEMA)
        _migrate(self.conn)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic write transaction (IMMEDIATE: take the write lock up front)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- uploads ---------------------------------------------------------------

    def add_upload(self, kind: str, filename: str, path: str, size: int, content_type: str,
                   duration: float | None, owned: bool = True, upload_id: str | None = None) -> Upload:
        u = Upload(upload_id or new_id(), kind, filename, path, size, content_type, duration,
                   owned, time.time())
        self.conn.execute(
            "INSERT INTO uploads VALUES (?,?,?,?,?,?,?,?,?)",
            (u.id, u.kind, u.filename, u.path, u.size, u.content_type, u.duration, int(u.owned),
             u.created_at))
        return u

    def get_upload(self, upload_id: str) -> Upload:
        row = self.conn.execute("SELECT * FROM uploads WHERE id=?", (upload_id,)).fetchone()
        if row is None:
            raise NotFound(f"no upload {upload_id!r}")
        return _upload(row)

    def delete_upload(self, upload_id: str) -> None:
        self.conn.execute("DELETE FROM uploads WHERE id=?", (upload_id,))

    def upload_in_use(self, upload_id: str) -> bool:
        row = self.conn.execute(
            "SELECT (SELECT COUNT(*) FROM items WHERE video_upload=?)"
            " + (SELECT COUNT(*) FROM batches WHERE audio_upload=?)", (upload_id, upload_id)).fetchone()
        return row[0] > 0

    # -- batches ---------------------------------------------------------------

    def create_batch(self, name: str, fps: float) -> Batch:
        b = Batch(new_id(), name, BatchStatus.DRAFT, fps, None, time.time())
        self.conn.execute(
            "INSERT INTO batches (id, name, status, fps, created_at) VALUES (?,?,?,?,?)",
            (b.id, b.name, b.status.value, b.fps, b.created_at))
        return b

    def get_batch(self, batch_id: str) -> Batch:
        row = self.conn.execute("SELECT * FROM batches WHERE id=?", (batch_id,)).fetchone()
        if row is None:
            raise NotFound(f"no batch {batch_id!r}")
        return _batch(row)

    def list_batches(self, limit: int = 50, offset: int = 0) -> list[Batch]:
        rows = self.conn.execute(
            "SELECT * FROM batches ORDER BY created_at DESC LIMIT ? OFFSET ?", (limit, offset))
        return [_batch(r) for r in rows]

    def count_batches(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0]

    def active_batches(self) -> list[Batch]:
        """Queued and running batches in the order they were started (the queue order)."""
        rows = self.conn.execute(
            "SELECT * FROM batches WHERE status IN ('queued','running') ORDER BY queued_at, created_at")
        return [_batch(r) for r in rows]

    def set_batch_audio(self, batch_id: str, upload_id: str) -> None:
        self.conn.execute("UPDATE batches SET audio_upload=? WHERE id=?", (upload_id, batch_id))

    def move_batch(self, batch_id: str, new: BatchStatus, error: str | None = None) -> Batch:
        with self.tx():
            old = self.get_batch(batch_id)
            check_batch_move(old.status, new)
            now = time.time()
            sets = {"status": new.value}
            if new is BatchStatus.QUEUED:
                sets["queued_at"] = now
            if new is BatchStatus.RUNNING:
                sets["started_at"] = now
            if new.terminal:
                sets["finished_at"] = now
            if error is not None:
                sets["error"] = error
            _update(self.conn, "batches", batch_id, sets)
        return self.get_batch(batch_id)

    def start_batch(self, batch_id: str) -> Batch:
        """Queue a draft and all its items in one transaction (a crash can't split them)."""
        with self.tx():
            old = self.get_batch(batch_id)
            check_batch_move(old.status, BatchStatus.QUEUED)
            self.conn.execute("UPDATE items SET status='queued' WHERE batch_id=? AND status='pending'",
                              (batch_id,))
            _update(self.conn, "batches", batch_id, {"status": BatchStatus.QUEUED.value,
                                                     "queued_at": time.time()})
        return self.get_batch(batch_id)

    def cancel_batch(self, batch_id: str) -> Batch:
        """Cancel a batch in one transaction: waiting items are cancelled, running ones
        are flagged (their processes see it at the next progress report)."""
        with self.tx():
            old = self.get_batch(batch_id)
            check_batch_move(old.status, BatchStatus.CANCELLED)
            now = time.time()
            self.conn.execute("UPDATE items SET cancel_requested=1 WHERE batch_id=?", (batch_id,))
            self.conn.execute(
                "UPDATE items SET status='cancelled', stage='cancelled', finished_at=?"
                " WHERE batch_id=? AND status IN ('pending', 'queued')", (now, batch_id))
            _update(self.conn, "batches", batch_id, {"status": BatchStatus.CANCELLED.value,
                                                     "finished_at": now})
        return self.get_batch(batch_id)

    def delete_batch(self, batch_id: str) -> None:
        self.conn.execute("DELETE FROM batches WHERE id=?", (batch_id,))

    # -- items -----------------------------------------------------------------

    def add_item(self, batch_id: str, upload_id: str, out_name: str) -> Item:
        """Append a video to a batch; ``out_name`` (unique in the batch) names its result."""
        with self.tx():
            pos = self.conn.execute(
                "SELECT COALESCE(MAX(position), -1) + 1 FROM items WHERE batch_id=?",
                (batch_id,)).fetchone()[0]
            item_id = new_id()
            self.conn.execute(
                "INSERT INTO items (id, batch_id, position, video_upload, out_name, status)"
                " VALUES (?,?,?,?,?,?)",
                (item_id, batch_id, pos, upload_id, out_name, ItemStatus.PENDING.value))
        return self.get_item(item_id)

    def get_item(self, item_id: str) -> Item:
        row = self.conn.execute(_ITEM_SELECT + " WHERE i.id=?", (item_id,)).fetchone()
        if row is None:
            raise NotFound(f"no item {item_id!r}")
        return _item(row)

    def items_of(self, batch_id: str) -> list[Item]:
        rows = self.conn.execute(_ITEM_SELECT + " WHERE i.batch_id=? ORDER BY i.position", (batch_id,))
        return [_item(r) for r in rows]

    def items_with_names(self, batch_id: str) -> list[tuple[Item, str]]:
        """A batch's items with their videos' display names, in one query."""
        rows = self.conn.execute(
            "SELECT i.*, r.id AS result_id, u.filename AS video_name FROM items i"
            " LEFT JOIN results r ON r.item_id = i.id JOIN uploads u ON u.id = i.video_upload"
            " WHERE i.batch_id=? ORDER BY i.position", (batch_id,))
        return [(_item(r), r["video_name"]) for r in rows]

    def items_in(self, status: ItemStatus) -> list[Item]:
        rows = self.conn.execute(_ITEM_SELECT + " WHERE i.status=? ORDER BY i.position", (status.value,))
        return [_item(r) for r in rows]

    def set_out_names(self, names: dict[str, str]) -> None:
        """Name the results of items (item id -> file name) in one transaction."""
        with self.tx():
            self.conn.executemany("UPDATE items SET out_name=? WHERE id=?",
                                  [(name, item_id) for item_id, name in names.items()])

    def delete_item(self, item_id: str) -> None:
        self.conn.execute("DELETE FROM items WHERE id=?", (item_id,))

    def move_item(self, item_id: str, new: ItemStatus, *, error: str | None = None,
                  stage: str | None = None, crashed: bool = False) -> Item:
        """Change an item's state; ``crashed``: its render process died (counts against
        the item's crash budget; a server restart does not)."""
        with self.tx():
            old = self.get_item(item_id)
            check_item_move(old.status, new)
            now = time.time()
            sets: dict = {"status": new.value}
            if crashed:
                sets["crashes"] = old.crashes + 1
            if new is ItemStatus.RUNNING:
                sets.update(started_at=now, attempts=old.attempts + 1, progress=0.0, stage="starting")
            if new is ItemStatus.QUEUED:
                sets.update(progress=0.0, stage="")
            if new.terminal:
                sets["finished_at"] = now
            if new is ItemStatus.DONE:
                sets.update(progress=1.0, stage="done")
            if error is not None:
                sets["error"] = error
            if stage is not None:
                sets["stage"] = stage
            _update(self.conn, "items", item_id, sets)
        return self.get_item(item_id)

    def record_progress(self, item_id: str, stage: str, progress: float) -> bool:
        """Store a running item's progress; returns True if the item should stop."""
        row = self.conn.execute(
            "UPDATE items SET stage=?, progress=? WHERE id=? AND status='running'"
            " RETURNING cancel_requested", (stage, float(progress), item_id)).fetchone()
        return row is None or bool(row[0])


    # -- results ---------------------------------------------------------------

    def add_result(self, r: Result) -> None:
        self.conn.execute(
            "INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (r.id, r.item_id, r.batch_id, r.filename, r.path, r.thumb_path, r.duration, r.size,
             r.width, r.height, r.audio_name, r.video_name, r.created_at, r.render_seconds))

    def complete_item(self, item_id: str, result: Result) -> Item:
        """Record the result and mark its item done in one transaction."""
        with self.tx():
            old = self.get_item(item_id)
            check_item_move(old.status, ItemStatus.DONE)
            self.add_result(result)
            _update(self.conn, "items", item_id, {
                "status": ItemStatus.DONE.value, "progress": 1.0, "stage": "done",
                "finished_at": time.time()})
        return self.get_item(item_id)

    def get_result(self, result_id: str) -> Result:
        row = self.conn.execute("SELECT * FROM results WHERE id=?", (result_id,)).fetchone()
        if row is None:
            raise NotFound(f"no result {result_id!r}")
        return _result(row)

    def result_by_name(self, batch_id: str, filename: str) -> Result:
        row = self.conn.execute("SELECT * FROM results WHERE batch_id=? AND filename=?",
                                (batch_id, filename)).fetchone()
        if row is None:
            raise NotFound(f"no result named {filename!r} in batch {batch_id!r}")
        return _result(row)

    def list_results(self, limit: int, offset: int, batch_id: str | None = None) -> list[Result]:
        if batch_id is None:
            rows = self.conn.execute(
                "SELECT * FROM results ORDER BY created_at DESC, id LIMIT ? OFFSET ?", (limit, offset))
        else:
            rows = self.conn.execute(
                "SELECT * FROM results WHERE batch_id=? ORDER BY created_at, id LIMIT ? OFFSET ?",
                (batch_id, limit, offset))
        return [_result(r) for r in rows]

    def results_oldest_first(self) -> list[Result]:
        return [_result(r) for r in self.conn.execute("SELECT * FROM results ORDER BY created_at, id")]

    def count_results(self, batch_id: str | None = None) -> int:
        if batch_id is None:
            return self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM results WHERE batch_id=?",
                                 (batch_id,)).fetchone()[0]

    def delete_result(self, result_id: str) -> None:
        self.conn.execute("DELETE FROM results WHERE id=?", (result_id,))


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database written by an older version up to SCHEMA_VERSION."""
    columns = {r["name"] for r in conn.execute("PRAGMA table_info(items)")}
    if "crashes" not in columns:
        conn.execute("ALTER TABLE items ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


_ITEM_SELECT = ("SELECT i.*, r.id AS result_id FROM items i"
                " LEFT JOIN results r ON r.item_id = i.id")


def _update(conn: sqlite3.Connection, table: str, row_id: str, sets: dict) -> None:
    cols = ", ".join(f"{k}=?" for k in sets)
    conn.execute(f"UPDATE {table} SET {cols} WHERE id=?", (*sets.values(), row_id))


def _upload(r: sqlite3.Row) -> Upload:
    return Upload(r["id"], r["kind"], r["filename"], r["path"], r["size"], r["content_type"],
                  r["duration"], bool(r["owned"]), r["created_at"])


def _batch(r: sqlite3.Row) -> Batch:
    return Batch(r["id"], r["name"], BatchStatus(r["status"]), r["fps"], r["audio_upload"],
                 r["created_at"], r["started_at"], r["finished_at"], r["error"])


def _item(r: sqlite3.Row) -> Item:
    return Item(r["id"], r["batch_id"], r["position"], r["video_upload"], r["out_name"],
                ItemStatus(r["status"]),
                r["stage"], r["progress"], r["error"], r["attempts"], r["started_at"],
                r["finished_at"], r["result_id"], r["crashes"])


def _result(r: sqlite3.Row) -> Result:
    return Result(r["id"], r["item_id"], r["batch_id"], r["filename"], r["path"], r["thumb_path"],
                  r["duration"], r["size"], r["width"], r["height"], r["audio_name"],
                  r["video_name"], r["created_at"], r["render_seconds"])
