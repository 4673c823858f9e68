"""The studio's HTTP API through a real server process, with real media and SQLite.

One server serves the whole module: a full batch (with a video that has no face
among good ones), history/ZIP/delete, cancellation, and every bad-input case.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
import zipfile
from pathlib import Path

import aiohttp
import pytest

from testing.studio_helpers import (
    ServerProcess,
    check_mp4,
    check_zip,
    checkpoint_for_tests,
    follow_events,
    make_media,
    new_batch,
    upload,
    wait_for,
)

MAX_UPLOAD = 3_000_000


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("studio_api")


@pytest.fixture(scope="module")
def media(workdir):
    return make_media(workdir / "media")


@pytest.fixture(scope="module")
def server(workdir, media):
    srv = ServerProcess(workdir / "data", checkpoint_for_tests(workdir), max_upload=MAX_UPLOAD)
    with srv:
        yield srv
    print(srv.tail())


@pytest.fixture(scope="module")
def finished_batch(server, media):
    """Run one batch to the end: 3 good videos (2 with identical content) + 1 without a face."""
    async def run() -> dict:
        async with aiohttp.ClientSession() as s:
            base = server.url
            bid = await new_batch(s, base, "flow")
            r = await upload(s, f"{base}/studio/batches/{bid}/audio", media.audio)
            assert r.status == 201, await r.text()
            audio = await r.json()
            assert abs(audio["duration"] - media.audio_seconds) < 0.05
            copy = media.face.with_name("presenter_copy.mp4")
            copy.write_bytes(media.face.read_bytes())
            for path in (media.face, media.no_face, copy, media.face_b):
                r = await upload(s, f"{base}/studio/batches/{bid}/videos", path)
                assert r.status == 201, await r.text()
            async with s.post(f"{base}/studio/batches/{bid}/start") as r:
                assert r.status == 200, await r.text()
            snapshots = await follow_events(s, f"{base}/studio/batches/{bid}/events")
            async with s.get(f"{base}/studio/batches/{bid}") as r:
                final = await r.json()
            return {"id": bid, "snapshots": snapshots, "final": final}

    return asyncio.run(run())


# -- the happy path (with one bad apple) ---------------------------------------------------------

def test_batch_runs_to_the_end_with_failure_isolated(finished_batch):
    final = finished_batch["final"]
    assert final["batch"]["status"] == "finished"
    by_name = {i["video_name"]: i for i in final["items"]}
    assert [i["video_name"] for i in final["items"]] == [
        "presenter.mp4", "empty_room.mp4", "presenter_copy.mp4", "presenter_wide.mp4"]
    assert by_name["empty_room.mp4"]["status"] == "failed"
    assert "face" in by_name["empty_room.mp4"]["error"].lower()
    for name in ("presenter.mp4", "presenter_copy.mp4", "presenter_wide.mp4"):
        assert by_name[name]["status"] == "done", by_name[name]
        assert by_name[name]["result_id"]
    assert final["counts"]["done"] == 3 and final["counts"]["failed"] == 1
    assert final["batch"]["error"] == "1 of 4 items failed"


def test_progress_stream_reports_items_overall_and_eta(finished_batch):
    snaps = finished_batch["snapshots"]
    assert len(snaps) >= 3
    overall = [s["progress"] for s in snaps]
    assert overall[-1] == 1.0
    # Overall progress never goes backwards (items only move forward).
    assert all(b >= a - 1e-9 for a, b in zip(overall, overall[1:])), overall
    running = [s for s in snaps if s["current"]]
    assert running, "no snapshot showed the item being processed"
    assert all(s["current_names"] for s in running)
    assert any(s["eta_s"] is not None for s in running), "no ETA while running"
    per_item = [i["progress"] for s in snaps for i in s["items"] if i["status"] == "running"]
    assert any(0 < p < 1 for p in per_item), "no partial per-item progress was reported"


async def test_results_listed_played_downloaded_and_zipped(server, media, finished_batch, tmp_path):
    bid = finished_batch["id"]
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{server.url}/studio/results", params={"batch": bid}) as r:
            listing = await r.json()
        assert listing["total"] == 3
        names = {x["filename"] for x in listing["results"]}
        # named after the video and the audio: never the source video's own name
        assert names == {"presenter__speech.mp4", "presenter_copy__speech.mp4", "presenter_wide__speech.mp4"}
        for res in listing["results"]:
            assert abs(res["duration"] - media.audio_seconds) < 0.15
            assert res["audio_name"] == "speech.wav"
            assert res["filename"] == res["video_name"].removesuffix(".mp4") + "__speech.mp4"
            assert res["created_at"] > 0 and res["size"] > 1000
            async with s.get(server.url + res["thumb_url"]) as r:
                assert r.status == 200 and r.content_type == "image/jpeg"
                assert (await r.read())[:3] == b"\xff\xd8\xff"
        wide = next(x for x in listing["results"] if x["filename"] == "presenter_wide__speech.mp4")
        assert (wide["width"], wide["height"]) == (320, 240)

        # play in page: the <video> element asks for byte ranges
        async with s.get(server.url + wide["url"], headers={"Range": "bytes=0-99"}) as r:
            assert r.status == 206 and len(await r.read()) == 100

        # download one
        async with s.get(server.url + wide["download_url"]) as r:
            assert r.status == 200
            assert 'attachment; filename="presenter_wide__speech.mp4"' in r.headers["Content-Disposition"]
            one = tmp_path / "one.mp4"
            one.write_bytes(await r.read())
        check_mp4(one, media.audio_seconds)

        # the whole batch as a ZIP, streamed
        async with s.get(f"{server.url}/studio/batches/{bid}/zip") as r:
            assert r.status == 200 and r.content_type == "application/zip"
            data = await r.read()
        check_zip(data, names, tmp_path, media.audio_seconds)


async def test_each_video_prepared_once(server, finished_batch):
    from models.avatar.avatar import list_avatars

    # presenter.mp4 and presenter_copy.mp4 have the same bytes: one avatar; the wide one is a second.
    assert len(list_avatars(server.data_dir / "avatars")) == 2
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{server.url}/studio/logs", params={"lines": 200}) as r:
            lines = (await r.json())["lines"]
    done = [line for line in lines if " item_done " in line and finished_batch["id"] in line]
    assert len(done) == 3
    # one audio analysis for the whole batch
    assert sum(" analyze_done " in line and finished_batch["id"] in line for line in lines) == 1


async def test_log_file_has_one_line_per_job_event(server, finished_batch):
    text = (server.data_dir / "studio" / "logs" / "jobs.log").read_text()
    lines = [line for line in text.splitlines() if finished_batch["id"] in line]
    events = [line.split()[1] for line in lines]
    for event in ("batch_created", "batch_queued", "batch_started", "analyze_started", "analyze_done",
                  "item_started", "item_done", "item_failed", "batch_finished", "batch_files_released"):
        assert event in events, (event, events)
    assert events.count("item_started") == 4
    # the settled batch's uploads were freed; the history still names them
    uploads = server.data_dir / "studio" / "uploads"
    assert not [p for p in uploads.rglob("*.mp4") if p.name.startswith("presenter")]
    assert all(line[:4].isdigit() and line.split()[0].endswith("Z") for line in lines)


async def test_selection_zip_delete_and_pagination(server, media, finished_batch, tmp_path):
    bid = finished_batch["id"]
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{server.url}/studio/results", params={"batch": bid}) as r:
            results = (await r.json())["results"]
        ids = [x["id"] for x in results]
        async with s.get(f"{server.url}/studio/zip", params={"ids": ",".join(ids[:2])}) as r:
            assert r.status == 200
            with zipfile.ZipFile(io.BytesIO(await r.read())) as z:
                assert sorted(z.namelist()) == sorted(x["filename"] for x in results[:2])

        async with s.get(f"{server.url}/studio/results", params={"page": 1, "per_page": 2}) as r:
            page1 = await r.json()
        async with s.get(f"{server.url}/studio/results", params={"page": 2, "per_page": 2}) as r:
            page2 = await r.json()
        assert page1["pages"] == page2["pages"] >= 2 and len(page1["results"]) == 2
        assert not {x["id"] for x in page1["results"]} & {x["id"] for x in page2["results"]}

        async with s.get(f"{server.url}/studio/usage") as r:
            before = await r.json()
        assert before["results"] >= 3 and before["results_bytes"] > 0 and before["free_bytes"] > 0

        victim = results[0]
        async with s.delete(f"{server.url}/studio/results/{victim['id']}") as r:
            assert r.status == 200 and (await r.json())["deleted"] == 1
        async with s.get(server.url + victim["download_url"]) as r:
            assert r.status == 404 and "error" in await r.json()
        assert not (server.data_dir / "studio" / "results" / bid / victim["filename"]).exists()
        async with s.post(f"{server.url}/studio/results/delete", json={"ids": [results[1]["id"], "nope"]}) as r:
            assert (await r.json())["deleted"] == 1
        async with s.get(f"{server.url}/studio/results", params={"batch": bid}) as r:
            assert (await r.json())["total"] == 1
        async with s.get(f"{server.url}/studio/usage") as r:
            after = await r.json()
        assert after["results_bytes"] < before["results_bytes"]
        # the survivor still downloads
        async with s.get(server.url + results[2]["download_url"]) as r:
            assert r.status == 200


async def test_cancel_a_running_batch(server, media):
    async with aiohttp.ClientSession() as s:
        base = server.url
        bid = await new_batch(s, base, "to cancel")
        await upload(s, f"{base}/studio/batches/{bid}/audio", media.audio)
        for _ in range(4):
            r = await upload(s, f"{base}/studio/batches/{bid}/videos", media.face_b)
            assert r.status == 201
        await s.post(f"{base}/studio/batches/{bid}/start")
        await wait_for(s, f"{base}/studio/batches/{bid}", lambda b: b["current"], timeout=120, every=0.1)
        async with s.post(f"{base}/studio/batches/{bid}/cancel") as r:
            assert r.status == 200
            assert (await r.json())["batch"]["status"] == "cancelled"
        final = await wait_for(s, f"{base}/studio/batches/{bid}", lambda b: not b["current"], timeout=60)
        statuses = [i["status"] for i in final["items"]]
        assert statuses.count("cancelled") >= 2, statuses
        assert set(statuses) <= {"cancelled", "done"}
        async with s.post(f"{base}/studio/batches/{bid}/cancel") as r:
            assert r.status == 409 and "error" in await r.json()
    folder = server.data_dir / "studio" / "results" / bid
    leftovers = [p.name for p in folder.glob("*")] if folder.exists() else []
    assert not [n for n in leftovers if ".part-" in n], leftovers


# -- bad input ------------------------------------------------------------------------------------

async def _error(resp: aiohttp.ClientResponse, status: int | tuple[int, ...]) -> str:
    statuses = (status,) if isinstance(status, int) else status
    assert resp.status in statuses, (resp.status, await resp.text())
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert isinstance(body.get("error"), str) and body["error"]
    return body["error"]


async def test_non_media_and_corrupt_uploads_are_refused(server, media):
    async with aiohttp.ClientSession() as s:
        base = server.url
        bid = await new_batch(s, base)
        # a text file dressed up as a video, with a lying Content-Type
        r = await upload(s, f"{base}/studio/batches/{bid}/videos", media.not_media, content_type="video/mp4")
        assert "not a video" in await _error(r, 415)
        r = await upload(s, f"{base}/studio/batches/{bid}/audio", media.not_media, content_type="audio/wav")
        assert "not an audio" in await _error(r, 415)
        r = await upload(s, f"{base}/studio/batches/{bid}/videos", media.corrupt)
        await _error(r, 415)
        # audio given where a video belongs, and a silent video given as the audio
        r = await upload(s, f"{base}/studio/batches/{bid}/videos", media.audio)
        await _error(r, 415)
        r = await upload(s, f"{base}/studio/batches/{bid}/audio", media.no_face)
        await _error(r, 415)
        async with s.get(f"{base}/studio/batches/{bid}") as r:
            snap = await r.json()
        assert snap["items"] == [] and snap["audio_name"] is None
    # nothing was kept on disk either
    uploads = server.data_dir / "studio" / "uploads"
    assert not any(p.name in ("notes.mp4", "broken.mp4") for p in uploads.rglob("*"))


async def test_upload_over_the_limit_is_413_and_leaves_nothing(server, media, tmp_path):
    big = tmp_path / "huge.mp4"
    # a real mp4 header followed by padding: media-looking, but too large
    big.write_bytes(media.face.read_bytes()[:4096] + b"\0" * (MAX_UPLOAD + 10))
    async with aiohttp.ClientSession() as s:
        bid = await new_batch(s, server.url)
        r = await upload(s, f"{server.url}/studio/batches/{bid}/videos", big)
        assert "limit" in await _error(r, 413)
        # the server is fine afterwards and the batch is untouched
        r = await upload(s, f"{server.url}/studio/batches/{bid}/videos", media.face)
        assert r.status == 201
        async with s.get(f"{server.url}/studio/batches/{bid}") as r:
            assert len((await r.json())["items"]) == 1
    assert not list((server.data_dir / "studio").rglob("huge.mp4"))


@pytest.mark.parametrize("path", [
    "/studio/files/{bid}/..%2F..%2Fstudio.sqlite3",
    "/studio/files/{bid}/%2e%2e%2f%2e%2e%2fstudio.sqlite3",
    "/studio/files/..%2Fstudio/studio.sqlite3",
    "/studio/files/{bid}/....//....//studio.sqlite3",
    "/studio/files/{bid}/%2Fetc%2Fpasswd",
    "/studio/files/{bid}/.hidden.mp4",
    "/studio/files/{bid}/..",
    "/studio/files/{bid}/presenter.mp4%00.txt",
    "/studio/files/{bid}/..\\..\\studio.sqlite3",
    "/studio/results/..%2F..%2Fstudio.sqlite3/video",
])
async def test_path_traversal_in_download_names_is_refused(server, finished_batch, path):
    url = server.url + path.format(bid=finished_batch["id"])
    async with aiohttp.ClientSession() as s:
        async with s.get(yarl_raw(url)) as r:
            await _error(r, (400, 404))
            body = await r.read()
    assert b"SQLite" not in body and b"root:" not in body


def yarl_raw(url: str):
    import yarl

    return yarl.URL(url, encoded=True)


async def test_bad_requests_answer_json_errors(server, media):
    async with aiohttp.ClientSession() as s:
        base = server.url
        await _error(await s.get(f"{base}/studio/batches/doesnotexist"), 404)
        await _error(await s.post(f"{base}/studio/batches/doesnotexist/start"), 404)
        await _error(await s.get(f"{base}/studio/nothing-here"), 404)
        await _error(await s.post(f"{base}/studio/batches", data=b"{not json",
                                  headers={"Content-Type": "application/json"}), 400)
        await _error(await s.post(f"{base}/studio/batches", json=["a list"]), 400)
        await _error(await s.post(f"{base}/studio/batches", json={"fps": 500}), 400)
        await _error(await s.get(f"{base}/studio/results", params={"per_page": 1000}), 400)
        await _error(await s.get(f"{base}/studio/results", params={"page": "x"}), 400)
        await _error(await s.get(f"{base}/studio/logs", params={"lines": 0}), 400)
        await _error(await s.get(f"{base}/studio/zip"), 400)
        await _error(await s.get(f"{base}/studio/zip", params={"ids": "nope"}), 404)
        await _error(await s.post(f"{base}/studio/results/delete", json={"ids": "abc"}), 400)

        bid = await new_batch(s, base)
        assert "audio" in await _error(await s.post(f"{base}/studio/batches/{bid}/start"), 400)
        await upload(s, f"{base}/studio/batches/{bid}/audio", media.audio)
        assert "video" in await _error(await s.post(f"{base}/studio/batches/{bid}/start"), 400)
        await _error(await s.post(f"{base}/studio/batches/{bid}/videos", data=b"raw bytes"), 415)
        await _error(await s.post(f"{base}/studio/batches/{bid}/tts", json={"text": ""}), 400)
        await _error(await s.post(f"{base}/studio/batches/{bid}/tts",
                                  json={"text": "hi", "voice": "nonexistent/voice"}), 400)
        await _error(await s.delete(f"{base}/studio/batches/{bid}/videos/nope"), 404)

        # a started batch can't be changed
        r = await upload(s, f"{base}/studio/batches/{bid}/videos", media.face)
        item_id = (await r.json())["items"][0]["id"]
        async with s.post(f"{base}/studio/batches/{bid}/start") as r:
            assert r.status == 200
        await _error(await upload(s, f"{base}/studio/batches/{bid}/videos", media.face), 409)
        await _error(await s.delete(f"{base}/studio/batches/{bid}/videos/{item_id}"), 409)
        await _error(await s.post(f"{base}/studio/batches/{bid}/start"), 409)
        await _error(await s.delete(f"{base}/studio/batches/{bid}"), 409)
        await wait_for(s, f"{base}/studio/batches/{bid}", lambda b: b["batch"]["status"] == "finished")


async def test_draft_editing_remove_and_clear(server, media):
    async with aiohttp.ClientSession() as s:
        base = server.url
        bid = await new_batch(s, base)
        r = await upload(s, f"{base}/studio/batches/{bid}/videos", media.face, media.face_b, media.face)
        items = (await r.json())["items"]
        assert [i["out_name"] for i in items] == [
            "presenter__audio.mp4", "presenter_wide__audio.mp4", "presenter__audio-2.mp4"]
        # the names follow the audio chosen afterwards
        assert (await upload(s, f"{base}/studio/batches/{bid}/audio", media.audio)).status == 201
        async with s.get(f"{base}/studio/batches/{bid}") as r:
            assert [i["out_name"] for i in (await r.json())["items"]] == [
                "presenter__speech.mp4", "presenter_wide__speech.mp4", "presenter__speech-2.mp4"]
        async with s.delete(f"{base}/studio/batches/{bid}/videos/{items[1]['id']}") as r:
            assert r.status == 200
        async with s.get(f"{base}/studio/batches/{bid}") as r:
            assert [i["id"] for i in (await r.json())["items"]] == [items[0]["id"], items[2]["id"]]
        async with s.delete(f"{base}/studio/batches/{bid}/videos") as r:
            assert (await r.json())["removed"] == 2
        async with s.delete(f"{base}/studio/batches/{bid}") as r:
            assert r.status == 200
        await _error(await s.get(f"{base}/studio/batches/{bid}"), 404)


def test_database_is_wal_and_consistent(server, finished_batch):
    conn = sqlite3.connect(server.data_dir / "studio" / "studio.sqlite3")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        orphans = conn.execute("SELECT COUNT(*) FROM results r LEFT JOIN items i ON i.id = r.item_id"
                               " WHERE i.id IS NULL").fetchone()[0]
        assert orphans == 0
    finally:
        conn.close()


async def test_typed_text_becomes_the_batch_audio(server):
    async with aiohttp.ClientSession() as s:
        base = server.url
        async with s.get(f"{base}/studio/voices") as r:
            voices = (await r.json())["voices"]
        ids = {v["id"] for v in voices}
        assert "espeak:en-us" in ids and "piper:joe" in ids, ids
        bid = await new_batch(s, base)
        async with s.post(f"{base}/studio/batches/{bid}/tts",
                          json={"text": "Hello from the studio. Welcome to the show!",
                                "voice": "espeak:en-us"}) as r:
            assert r.status == 201, await r.text()
            audio = await r.json()
        assert 1.0 < audio["duration"] < 10.0
        async with s.get(f"{base}/studio/batches/{bid}") as r:
            snap = await r.json()
        assert snap["audio_name"] == audio["filename"] and snap["audio_duration"] == audio["duration"]
