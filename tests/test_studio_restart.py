"""Nothing lost: SIGKILL the server mid-batch, start it again, and the batch completes.

Finished results stay byte-identical, the interrupted items are resumed to
completion, no partial file is ever listed (or left on disk), the history is
complete, and the orphaned render processes do not linger.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import aiohttp
import numpy as np

from testing.studio_helpers import (
    ServerProcess,
    check_mp4,
    checkpoint_for_tests,
    make_media,
    new_batch,
    upload,
    wait_for,
)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_kill_mid_batch_then_restart_loses_nothing(tmp_path):
    from testing.media import speech_sample, trim_silence, write_wav

    media = make_media(tmp_path / "media")
    # Longer speech, so that renders last long enough to be interrupted.
    speech = np.concatenate([trim_silence(speech_sample(n)) for n in ("Front_Center", "Front_Left", "Rear_Right")])
    audio = write_wav(tmp_path / "media" / "long.wav", speech)
    audio_seconds = len(speech) / 16_000
    data = tmp_path / "data"
    results_dir = data / "studio" / "results"
    videos = [media.face, media.face_b]
    for v in (media.face, media.face_b):   # same bytes: their avatars come from the cache
        copy = v.with_name(f"{v.stem}_again.mp4")
        copy.write_bytes(v.read_bytes())
        videos.append(copy)

    server = ServerProcess(data, checkpoint_for_tests(tmp_path)).start()
    try:
        async def first_life() -> tuple[str, dict]:
            async with aiohttp.ClientSession() as s:
                bid = await new_batch(s, server.url, "crash")
                await upload(s, f"{server.url}/studio/batches/{bid}/audio", audio)
                for v in videos:
                    assert (await upload(s, f"{server.url}/studio/batches/{bid}/videos", v)).status == 201
                await s.post(f"{server.url}/studio/batches/{bid}/start")

                def mid_render(b: dict) -> bool:
                    return b["counts"]["done"] >= 1 and any(
                        i["status"] == "running" and i["stage"] == "rendering" and i["progress"] > 0.4
                        for i in b["items"])
                snap = await wait_for(s, f"{server.url}/studio/batches/{bid}", mid_render,
                                      timeout=240, every=0.05)
                return bid, snap

        bid, before = asyncio.run(first_life())
        workers = server.worker_pids()
        server.kill()
    finally:
        server.kill()

    assert before["counts"]["done"] < len(videos), "the batch finished before the kill"
    done_before = {i["out_name"]: i for i in before["items"] if i["status"] == "done"}
    hashes = {name: _sha(results_dir / bid / name) for name in done_before}

    # The orphaned render processes notice their server is gone and stop.
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in workers if _alive(p)], "render processes outlived their server"

    with ServerProcess(data, checkpoint_for_tests(tmp_path)) as again:
        async def second_life() -> tuple[dict, dict, list[str]]:
            async with aiohttp.ClientSession() as s:
                # Right after the restart: only complete results are listed.
                async with s.get(f"{again.url}/studio/results", params={"batch": bid}) as r:
                    early = await r.json()
                assert all(".part-" not in x["filename"] for x in early["results"])
                final = await wait_for(s, f"{again.url}/studio/batches/{bid}",
                                       lambda b: b["batch"]["status"] == "finished" and not b["current"],
                                       timeout=300)
                async with s.get(f"{again.url}/studio/results", params={"batch": bid}) as r:
                    listing = await r.json()
                async with s.get(f"{again.url}/studio/logs", params={"lines": 500}) as r:
                    lines = (await r.json())["lines"]
                return final, listing, lines

        final, listing, lines = asyncio.run(second_life())

    assert [i["status"] for i in final["items"]] == ["done"] * len(videos), final["items"]
    assert listing["total"] == len(videos)
    assert {x["filename"] for x in listing["results"]} == {i["out_name"] for i in final["items"]}
    for name, digest in hashes.items():
        assert _sha(results_dir / bid / name) == digest, f"{name} changed after the restart"
    resumed = [line for line in lines if " item_resumed " in line and bid in line]
    assert resumed, "no item was recorded as resumed"
    interrupted = [i for i in final["items"] if i["attempts"] >= 2]
    assert interrupted, "no item needed a second attempt"
    on_disk = sorted(p.name for p in (results_dir / bid).iterdir())
    assert on_disk == sorted(x["filename"] for x in listing["results"]), on_disk
    for name in on_disk:
        check_mp4(results_dir / bid / name, audio_seconds)
