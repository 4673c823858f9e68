"""Nothing of a render or an upload outlives the request or job that made it.

A render that ends any other way than with its result recorded (cancelled at the very
last progress write, a thumbnail or a commit that fails) leaves no ``*.part-*`` file and
no thumbnail; an upload refused because its batch has started is deleted; a server
restart does not use up a resumed item's crash budget.  The studio runs in this process
with its real queue, worker processes and media; only the refused upload goes through a
server process, as a browser's would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from studio.config import StudioConfig
from studio.jobs import ItemStatus
from studio.service import Studio
from testing.studio_helpers import (
    ServerProcess,
    StudioMedia,
    check_mp4,
    checkpoint_for_tests,
    make_media,
    new_batch,
    upload,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("studio_leaks")


@pytest.fixture(scope="module")
def media(workdir) -> StudioMedia:
    return make_media(workdir / "media")


@pytest.fixture(scope="module")
def long_audio(workdir) -> Path:
    """About 8 s of speech: a render lasts long enough to act while it runs."""
    from testing.media import speech_sample, trim_silence, write_wav

    speech = np.concatenate([trim_silence(speech_sample(n)) for n in ("Front_Center", "Front_Left", "Rear_Right")])
    return write_wav(workdir / "media" / "long speech.wav", speech)


def _studio(workdir: Path, data: Path, **overrides) -> Studio:
    # One render process; the avatar cache is shared by the module's tests (prepared once).
    config = StudioConfig(workers=1, checkpoint=checkpoint_for_tests(workdir),
                          avatar_root=workdir / "avatars", **overrides)
    return Studio(data, config)


async def _until(what: str, check, timeout: float = 180.0):
    """Poll ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _settled(studio: Studio, item_id: str):
    item = studio.db.get_item(item_id)
    return item if item.status.terminal else None


def _partials(studio: Studio) -> list[str]:
    return sorted(str(p.relative_to(studio.paths.root)) for p in studio.paths.root.rglob("*.part-*"))


async def _one_item_batch(studio: Studio, audio: Path, video: Path):
    batch = studio.create_batch("leaks")
    [item] = studio.add_local_files(batch.id, audio, [video])
    return batch, item


# -- every exit of a render cleans up -------------------------------------------------------------

async def test_cancel_at_the_finishing_write_leaves_no_partial_file(workdir, media, long_audio, tmp_path):
    # Progress is recorded (and the cancel flag read) only at the forced writes: the first
    # ("preparing") and the last ("finishing", after the whole file is encoded).
    studio = _studio(workdir, tmp_path, progress_interval_s=1e6)
    try:
        await studio.start()
        batch, item = await _one_item_batch(studio, long_audio, media.face)
        studio.start_batch(batch.id)
        await _until("the item to start preparing", lambda: studio.db.get_item(item.id).stage == "preparing")
        studio.cancel_batch(batch.id)
        final = await _until("the item to settle", lambda: _settled(studio, item.id))
        assert final.status is ItemStatus.CANCELLED, final
        assert final.progress == pytest.approx(0.99), "the cancel was not seen at the finishing write"
        assert _partials(studio) == []
        assert not (studio.paths.results / batch.id / final.out_name).exists()
        assert not list(studio.paths.thumbs.iterdir())
        assert studio.db.count_results() == 0
    finally:
        await studio.stop()


async def test_a_failing_thumbnail_leaves_no_partial_file(workdir, media, tmp_path):
    studio = _studio(workdir, tmp_path)
    try:
        await studio.start()
        batch, item = await _one_item_batch(studio, media.audio, media.face)
        # Something that is not ours already holds the thumbnail's name: writing it fails.
        (studio.paths.thumbs / f"{item.id}.jpg").mkdir()
        studio.start_batch(batch.id)
        final = await _until("the item to settle", lambda: _settled(studio, item.id))
        assert final.status is ItemStatus.FAILED, final
        assert _partials(studio) == []
        assert "could not be saved" in final.error and str(studio.paths.root) not in final.error
        assert not (studio.paths.results / batch.id / final.out_name).exists()
        assert (studio.paths.thumbs / f"{item.id}.jpg").is_dir()   # what was there is left alone
    finally:
        await studio.stop()


async def test_a_failing_commit_leaves_no_partial_file_and_no_thumbnail(workdir, media, tmp_path):
    studio = _studio(workdir, tmp_path)
    try:
        await studio.start()
        batch, item = await _one_item_batch(studio, media.audio, media.face)
        # The result's final name is taken by a folder: the rename into place fails.
        blocker = studio.paths.results / batch.id / item.out_name
        blocker.mkdir(parents=True)
        (blocker / "keep").write_bytes(b"x")
        studio.start_batch(batch.id)
        final = await _until("the item to settle", lambda: _settled(studio, item.id))
        assert final.status is ItemStatus.FAILED, final
        assert _partials(studio) == []
        assert "could not be saved" in final.error and str(studio.paths.root) not in final.error
        assert not (studio.paths.thumbs / f"{item.id}.jpg").exists()
        assert (blocker / "keep").read_bytes() == b"x"
        assert studio.db.count_results() == 0
    finally:
        await studio.stop()


# -- a restart is not a crash -----------------------------------------------------------------------

def _render_pids(studio: Studio) -> list[int]:
    executor = studio.pool._executor
    return [p.pid for p in getattr(executor, "_processes", {}).values() if p.is_alive()]


async def test_a_restart_does_not_use_up_the_crash_budget(workdir, media, long_audio, tmp_path):
    def rendering(studio: Studio, item_id: str, attempts: int) -> bool:
        i = studio.db.get_item(item_id)
        return i.status is ItemStatus.RUNNING and i.attempts == attempts and i.stage == "rendering"

    first = _studio(workdir, tmp_path, progress_interval_s=0.1)
    try:
        await first.start()
        batch, item = await _one_item_batch(first, long_audio, media.face)
        first.start_batch(batch.id)
        await _until("the first render", lambda: rendering(first, item.id, 1))
    finally:
        await first.stop()   # the server goes down mid-render: the item is resumed next time

    second = _studio(workdir, tmp_path, progress_interval_s=0.1)
    try:
        assert second.db.get_item(item.id).status is ItemStatus.RUNNING   # as the dead server left it
        await second.start()
        await _until("the resumed render", lambda: rendering(second, item.id, 2))
        # Now the render process really dies (the OOM killer, a segfault in a codec).
        pids = _render_pids(second)
        assert pids
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        final = await _until("the item to settle", lambda: _settled(second, item.id), timeout=240)
        assert final.status is ItemStatus.DONE, final
        assert (final.attempts, final.crashes) == (3, 1)
        check_mp4(second.paths.results / batch.id / final.out_name, _seconds(long_audio))
        log = "\n".join(second.log.tail(50))
        assert " item_resumed " in log and " item_requeued " in log
    finally:
        await second.stop()


def _seconds(wav: Path) -> float:
    from models.audio.pcm import read_wav

    audio, rate = read_wav(wav)
    return len(audio) / rate


# -- refused uploads ------------------------------------------------------------------------------

def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_uploads_refused_because_the_batch_started_are_deleted(workdir, media, tmp_path):
    async def refused(base: str, uploads: Path) -> None:
        async with aiohttp.ClientSession() as s:
            bid = await new_batch(s, base, "started")
            assert (await upload(s, f"{base}/studio/batches/{bid}/audio", media.audio)).status == 201
            assert (await upload(s, f"{base}/studio/batches/{bid}/videos", media.face)).status == 201
            async with s.post(f"{base}/studio/batches/{bid}/start") as r:
                assert r.status == 200, await r.text()
            before = _files(uploads)
            for path, target in ((media.face_b, "videos"), (media.face, "videos"), (media.audio, "audio")):
                r = await upload(s, f"{base}/studio/batches/{bid}/{target}", path)
                assert r.status == 409, await r.text()
                assert "error" in await r.json()
            # Whatever else happens to the batch's own files, no refused one was kept.
            assert not _files(uploads) - before
            async with s.post(f"{base}/studio/batches/{bid}/cancel") as r:
                assert r.status in (200, 409)

    with ServerProcess(tmp_path / "data", checkpoint_for_tests(workdir)) as server:
        asyncio.run(refused(server.url, tmp_path / "data" / "studio" / "uploads"))
