"""The studio's parts on their own: states, store, names and paths, sniffing, ZIP, log."""

from __future__ import annotations

import io
import sqlite3
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio import storage
from studio.config import StudioConfig, StudioPaths
from studio.db import StudioDB
from studio.job_log import JobLog
from studio.jobs import (
    Batch,
    BatchProgress,
    BatchStatus,
    InvalidTransition,
    Item,
    ItemStatus,
    ItemView,
    check_batch_move,
    check_item_move,
)
from studio.uploads import sniff
from studio.zip_export import ZipEntry, iter_zip, unique_arcnames

# -- state machine -------------------------------------------------------------------------------

def test_item_lifecycle_moves():
    for old, new in [("pending", "queued"), ("queued", "running"), ("running", "done"),
                     ("running", "failed"), ("running", "queued"), ("queued", "cancelled")]:
        check_item_move(ItemStatus(old), ItemStatus(new))
    for old, new in [("done", "running"), ("failed", "queued"), ("pending", "running"), ("cancelled", "queued")]:
        with pytest.raises(InvalidTransition):
            check_item_move(ItemStatus(old), ItemStatus(new))
    check_batch_move(BatchStatus.DRAFT, BatchStatus.QUEUED)
    with pytest.raises(InvalidTransition, match="finished"):
        check_batch_move(BatchStatus.FINISHED, BatchStatus.RUNNING)


def _item(status: str, progress: float = 0.0, i: int = 0) -> ItemView:
    return ItemView(Item(f"i{i}", "b", i, "u", f"v{i}.mp4", ItemStatus(status), progress=progress), f"v{i}.mp4")


def test_progress_fraction_and_eta():
    batch = Batch("b", "x", BatchStatus.RUNNING, 25.0, "a", created_at=0.0, started_at=100.0)
    snap = BatchProgress(batch, "a.wav", 30.0, [_item("done", i=0), _item("running", 0.5, 1),
                                                _item("queued", i=2), _item("failed", i=3)], now=150.0)
    assert snap.fraction == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert snap.eta_seconds() == pytest.approx(50.0 * (1 - 0.625) / 0.625)
    j = snap.to_json()
    assert j["current_names"] == ["v1.mp4"] and j["counts"]["failed"] == 1
    # no ETA before anything happened
    early = BatchProgress(batch, None, None, [_item("queued")], now=100.5)
    assert early.eta_seconds() is None


# -- the store ------------------------------------------------------------------------------------

def test_db_queue_round_trip_and_constraints(tmp_path):
    db = StudioDB(tmp_path / "s.sqlite3")
    b = db.create_batch("b", 25.0)
    a = db.add_upload("audio", "a.wav", "uploads/x/a.wav", 10, "audio/wav", 1.0)
    db.set_batch_audio(b.id, a.id)
    v = db.add_upload("video", "v.mp4", "uploads/y/v.mp4", 10, "video/mp4", 2.0)
    items = [db.add_item(b.id, v.id, f"v{i}.mp4") for i in range(3)]
    assert [i.position for i in db.items_of(b.id)] == [0, 1, 2]
    with pytest.raises(InvalidTransition):
        db.move_item(items[0].id, ItemStatus.RUNNING)   # pending items must be queued first
    assert db.start_batch(b.id).status is BatchStatus.QUEUED
    assert {i.status for i in db.items_of(b.id)} == {ItemStatus.QUEUED}
    with pytest.raises(InvalidTransition):
        db.start_batch(b.id)
    running = db.move_item(items[0].id, ItemStatus.RUNNING)
    assert running.attempts == 1 and running.started_at is not None
    assert db.record_progress(items[0].id, "rendering", 0.5) is False
    assert db.cancel_batch(b.id).status is BatchStatus.CANCELLED
    assert db.get_item(items[1].id).status is ItemStatus.CANCELLED     # waiting: cancelled at once
    assert db.get_item(items[0].id).status is ItemStatus.RUNNING       # running: asked to stop
    assert db.record_progress(items[0].id, "rendering", 0.6) is True
    assert db.record_progress(items[1].id, "rendering", 0.6) is True   # not running: stop
    assert db.upload_in_use(v.id) and db.upload_in_use(a.id)
    # a second process (a render worker) sees the same rows while the first holds its connection
    other = StudioDB(tmp_path / "s.sqlite3")
    assert other.get_item(items[0].id).progress == pytest.approx(0.6)
    conn = sqlite3.connect(tmp_path / "s.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_database_from_before_crash_counting_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE batches (id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, fps REAL NOT NULL,"
        " audio_upload TEXT, created_at REAL NOT NULL, queued_at REAL, started_at REAL, finished_at REAL,"
        " error TEXT);"
        "CREATE TABLE items (id TEXT PRIMARY KEY, batch_id TEXT NOT NULL, position INTEGER NOT NULL,"
        " video_upload TEXT NOT NULL, out_name TEXT NOT NULL, status TEXT NOT NULL, stage TEXT NOT NULL DEFAULT '',"
        " progress REAL NOT NULL DEFAULT 0, error TEXT, attempts INTEGER NOT NULL DEFAULT 0, started_at REAL,"
        " finished_at REAL, cancel_requested INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO batches (id, name, status, fps, created_at) VALUES ('b', 'old', 'running', 25, 0);"
        "INSERT INTO items (id, batch_id, position, video_upload, out_name, status, attempts)"
        " VALUES ('i', 'b', 0, 'u', 'v.mp4', 'running', 1);")
    conn.close()
    db = StudioDB(path)
    item = db.get_item("i")
    assert (item.attempts, item.crashes) == (1, 0)
    assert db.move_item("i", ItemStatus.QUEUED, crashed=True).crashes == 1


# -- names and paths -----------------------------------------------------------------------------

@pytest.mark.parametrize("raw, safe", [
    ("clip.mp4", "clip.mp4"), ("../../etc/passwd", "passwd"), ("C:\\Users\\me\\talk.MOV", "talk.MOV"),
    ("my video (1).mp4", "my video _1_.mp4"), ("..", "file"), ("", "file"), (".hidden", "hidden"),
    ("naïve 動画.webm", "na_ve _.webm"),
])
def test_safe_name(raw, safe):
    assert storage.safe_name(raw) == safe


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_safe_names_never_leave_their_folder(tmp_path_factory, name):
    root = Path("/srv/data/studio/results")
    p = storage.inside(root, storage.safe_name(name))
    assert p.parent == root


@pytest.mark.parametrize("name", ["../x.mp4", "a/b.mp4", "a\\b.mp4", ".env", "..", "x\x00.mp4", "", "x?.mp4"])
def test_download_names_that_escape_are_rejected(name):
    with pytest.raises(storage.UnsafePath):
        storage.check_download_name(name)


def test_inside_rejects_escapes(tmp_path):
    (tmp_path / "in").mkdir()
    assert storage.inside(tmp_path / "in", "a/b.mp4") == (tmp_path / "in" / "a" / "b.mp4").resolve()
    for bad in ("../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(storage.UnsafePath):
            storage.inside(tmp_path / "in", bad)
    # a symlink pointing out of the folder is an escape too
    (tmp_path / "in" / "link").symlink_to(tmp_path)
    with pytest.raises(storage.UnsafePath):
        storage.inside(tmp_path / "in", "link/secret")


def test_unique_names():
    assert storage.unique_name("a.mp4", set()) == "a.mp4"
    assert storage.unique_name("a.mp4", {"a.mp4", "a-2.mp4"}) == "a-3.mp4"
    assert unique_arcnames(["a.mp4", "a.mp4", "b", "b"]) == ["a.mp4", "a-2.mp4", "b", "b-2"]


def test_results_are_named_after_both_sources_never_after_the_video():
    assert storage.result_name("talk.mp4", "script.wav", set()) == "talk__script.mp4"
    # the same stem for both: still not the source video's name
    assert storage.result_name("talk.mp4", "talk.m4a", set()) == "talk__talk.mp4"
    assert storage.result_name("talk.mov", "a.wav", {"talk__a.mp4", "talk__a-2.mp4"}) == "talk__a-3.mp4"
    # sanitised: no folders, no odd characters, bounded length
    assert storage.result_name("../../etc/x y?.mp4", "C:\\voice\\hi!.wav", set()) == "x y___hi_.mp4"
    long = storage.result_name("v" * 300 + ".mp4", "a" * 300 + ".wav", set())
    assert len(long) <= 120 and long == storage.safe_name(long)


@given(st.text(max_size=60), st.text(max_size=60))
@settings(max_examples=200, deadline=None)
def test_result_names_are_safe_file_names(video, audio):
    name = storage.result_name(video, audio, set())
    assert name.endswith(".mp4") and "__" in name
    assert storage.check_download_name(name) == name


def test_temp_names_are_partial_and_unique(tmp_path):
    final = tmp_path / "out.mp4"
    t1, t2 = storage.temp_path_for(final), storage.temp_path_for(final)
    assert t1 != t2 and storage.is_partial(t1) and t1.suffix == ".mp4" and t1.parent == tmp_path
    t1.write_bytes(b"x" * 10)
    t2.write_bytes(b"y")
    storage.commit(t1, final)
    assert final.read_bytes() == b"x" * 10 and not t1.exists()
    assert storage.remove_partials(tmp_path) == [t2]
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_retention_limits():
    day = 86400.0
    files = [storage.ResultFile(f"r{i}", 100, created_at=i * day) for i in range(10)]
    assert storage.over_retention(files, 0, 0, 0, now=10 * day) == []
    assert storage.over_retention(files, 7, 0, 0, now=10 * day) == ["r0", "r1", "r2"]
    assert storage.over_retention(files, 0, 450, 0, now=10 * day) == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert storage.over_retention(files, 0, 0, 3.5, now=10 * day) == [f"r{i}" for i in range(7)]
    # all limits at once: the strictest wins
    assert len(storage.over_retention(files, 8, 300, 5, now=10 * day)) == 7


def test_retention_is_applied_to_the_history(tmp_path):
    from studio.jobs import Result
    from studio.service import Studio

    studio = Studio(tmp_path, StudioConfig(retention_max_results=2))
    try:
        for i in range(4):
            rel = f"results/b/{i}.mp4"
            (studio.paths.root / "results" / "b").mkdir(parents=True, exist_ok=True)
            (studio.paths.root / rel).write_bytes(b"0" * 10)
            studio.db.add_result(Result(f"r{i}", f"i{i}", "b", f"{i}.mp4", rel, None, 1.0, 10, 2, 2,
                                        "a.wav", f"{i}.mp4", created_at=time.time() + i, render_seconds=1.0))
        assert studio.apply_retention() == 2
        assert [r.id for r in studio.db.results_oldest_first()] == ["r2", "r3"]
        assert sorted(p.name for p in (studio.paths.root / "results" / "b").iterdir()) == ["2.mp4", "3.mp4"]
        assert " result_expired " in "\n".join(studio.log.tail(10))
    finally:
        studio.log.close()
        studio.db.close()


def test_one_studio_per_data_folder(tmp_path):
    from studio.service import DataDirBusy, Studio

    first = Studio(tmp_path)
    with pytest.raises(DataDirBusy, match="in use"):
        Studio(tmp_path)
    first.log.close()
    first.db.close()


# -- sniffing ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def media_files(tmp_path_factory):
    from testing.media import encode_audio, make_video, tone

    folder = tmp_path_factory.mktemp("sniff")
    a = tone(440.0, 0.3)
    files = {suffix: encode_audio(folder / f"a{suffix}", a) for suffix in (".wav", ".mp3", ".m4a", ".ogg", ".flac")}
    frames = [np.full((64, 64, 3), 80, np.uint8)] * 3
    files[".mp4"] = make_video(folder / "v.mp4", frames)
    files[".webm"] = make_video(folder / "v.webm", frames)
    files[".mov"] = make_video(folder / "v.mov", frames)
    for ext in (".png", ".jpg"):
        cv2.imwrite(str(folder / f"i{ext}"), frames[0])
        files[ext] = folder / f"i{ext}"
    return files


@pytest.mark.parametrize("suffix, family", [
    (".wav", "audio"), (".mp3", "audio"), (".m4a", "audio"), (".ogg", "container"), (".flac", "audio"),
    (".mp4", "container"), (".webm", "container"), (".mov", "video"), (".png", "image"), (".jpg", "image"),
])
def test_sniff_recognises_real_media(media_files, suffix, family):
    found = sniff(media_files[suffix].read_bytes()[:512])
    assert found is not None and found.family == family, (suffix, found)


@pytest.mark.parametrize("head", [
    b"These are my meeting notes.\n" * 4, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"0" * 40,
    b"PK\x03\x04" + b"\0" * 40, b"\x7fELF\x02\x01\x01" + b"\0" * 40, b"<html><body>hi</body></html>",
    b"\0" * 64, b"",
])
def test_sniff_rejects_non_media(head):
    assert sniff(head) is None


# -- ZIP -----------------------------------------------------------------------------------------

def test_streamed_zip_holds_every_file_intact(tmp_path):
    rng = np.random.default_rng(0)
    entries = []
    for i, size in enumerate([0, 1, 70_000, 300_001]):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        entries.append(ZipEntry(f"dir/f{i}.bin", p))
    chunks = list(iter_zip(entries, chunk_size=65536))
    assert len(chunks) > 5 and max(len(c) for c in chunks) < 65536 + 4096   # really streamed
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as z:
        assert z.testzip() is None
        assert z.namelist() == [e.arcname for e in entries]
        for e in entries:
            assert z.read(e.arcname) == e.path.read_bytes()


# -- the job log ----------------------------------------------------------------------------------

def test_job_log_lines_rotation_and_tail(tmp_path):
    log = JobLog(tmp_path / "logs" / "jobs.log", max_bytes=2000, backups=2)
    for i in range(100):
        log.event("item_done", batch="b1", item=f"i{i}", video='my "clip" 1.mp4', seconds=1.5, missing=None)
    log.close()
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == ["jobs.log", "jobs.log.1", "jobs.log.2"]   # rotated, bounded
    last = JobLog(tmp_path / "logs" / "jobs.log").tail(30)
    assert len(last) == 30 and last[-1].split()[1] == "item_done" and "item=i99" in last[-1]
    assert "video=\"my 'clip' 1.mp4\"" in last[-1] and "missing" not in last[-1]
    nums = [int(line.split("item=i")[1].split()[0]) for line in last]
    assert nums == list(range(70, 100))   # in order, across the rotation boundary


def test_paths_layout(tmp_path):
    paths = StudioPaths(tmp_path).create()
    assert paths.root == tmp_path / "studio" and paths.avatars == tmp_path / "avatars"
    other = StudioPaths(tmp_path, "cli", avatar_root=tmp_path / "shared")
    assert other.db == tmp_path / "cli" / "studio.sqlite3" and other.avatars == tmp_path / "shared"
    with pytest.raises(ValueError):
        StudioConfig(fps=0)
    assert StudioConfig().worker_count() >= 1


def test_folder_bytes_sums_files_and_survives_folders_vanishing_mid_walk(tmp_path, monkeypatch):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one").write_bytes(b"x" * 10)
    (tmp_path / "a" / "b" / "two").write_bytes(b"y" * 32)
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "three").write_bytes(b"z" * 5)
    assert storage.folder_bytes(tmp_path) == 47
    assert storage.folder_bytes(tmp_path / "missing") == 0
    # A worker publishes an avatar by renaming its work folder: the walk finds the
    # folder listed, then it is gone when the walk goes into it.
    import os
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("gone"):
            import shutil
            shutil.rmtree(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert storage.folder_bytes(tmp_path) == 42


async def test_retention_flags_of_the_server_command_reach_the_studio(tmp_path):
    import dataclasses

    from aiohttp.test_utils import TestClient, TestServer

    import run_live
    from live.server.app import create_app

    args = run_live.build_parser().parse_args(["--keep-results", "20", "--keep-gb", "1.5", "--keep-days", "7"])
    config = dataclasses.replace(run_live.server_config(args), data_dir=tmp_path, port=0,
                                 preload_default_avatar=False)
    async with TestClient(TestServer(create_app(config))) as client:
        resp = await client.get("/studio/usage")
        assert resp.status == 200
        body = await resp.json()
    assert body["retention"] == {"max_results": 20, "max_bytes": 1_500_000_000, "max_age_days": 7.0}
    with pytest.raises(SystemExit):
        run_live.build_parser().parse_args(["--keep-days", "-1"])
