"""Avatar management over HTTP against a real server: the live list (studio avatars stay off it
until added), rename, delete, with the built-in avatar protected and every error a JSON reason."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import aiohttp
import pytest

from models.avatar import avatar_cache

pytestmark = pytest.mark.timeout(120)

STUDIO_ID = "0123456789abcdef"   # an avatar the studio prepared into the shared cache
UNKNOWN_ID = "fedcba9876543210"


async def _call(url: str, method: str, path: str, **kw) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url + path, **kw) as resp:
            return resp.status, await resp.json(content_type=None)


@pytest.fixture
def own_cache(tmp_path: Path, avatar_root: Path) -> Path:
    """A cache of this test's own: the built-in avatar, and a copy of it as if the studio had
    prepared a video (no "live" mark), so deleting and renaming touch nothing shared."""
    root = tmp_path / "avatars"
    shutil.copytree(avatar_root / "default", root / "default")
    shutil.copytree(avatar_root / "default", root / STUDIO_ID)
    info = json.loads((root / STUDIO_ID / "info.json").read_text())
    info.update(avatar_id=STUDIO_ID, name="presenter", source="presenter.mp4")
    (root / STUDIO_ID / "info.json").write_text(json.dumps(info))
    return root


async def _ids(url: str, query: str = "") -> dict[str, dict]:
    status, listing = await _call(url, "GET", "/avatars" + query)
    assert status == 200
    return {a["avatar_id"]: a for a in listing["avatars"]}


async def test_studio_avatars_stay_off_the_live_list_until_added(make_server, own_cache):
    server = await make_server(avatar_root=own_cache)
    live = await _ids(server.url)
    assert set(live) == {"default"} and live["default"]["live"] is True
    assert live["default"]["preview_url"] == "/avatars/default/preview.jpg"
    everything = await _ids(server.url, "?all=1")
    assert set(everything) == {"default", STUDIO_ID} and everything[STUDIO_ID]["live"] is False

    status, info = await _call(server.url, "PATCH", f"/avatars/{STUDIO_ID}", json={"live": True})
    assert status == 200 and info["live"] is True and info["name"] == "presenter"
    assert set(await _ids(server.url)) == {"default", STUDIO_ID}
    status, info = await _call(server.url, "PATCH", f"/avatars/{STUDIO_ID}", json={"live": False})
    assert status == 200 and set(await _ids(server.url)) == {"default"}


async def test_rename_cleans_and_caps_the_name_and_updates_info_json(make_server, own_cache):
    server = await make_server(avatar_root=own_cache)
    status, info = await _call(server.url, "PATCH", f"/avatars/{STUDIO_ID}",
                               json={"name": "  主播\u0000小美 \n\t Anna\u200b  "})
    assert status == 200 and info["name"] == "主播小美 Anna", info
    stored = json.loads((own_cache / STUDIO_ID / "info.json").read_text())
    assert stored["name"] == "主播小美 Anna" and stored["format"] == avatar_cache.FORMAT_VERSION
    assert (await _ids(server.url, "?all=1"))[STUDIO_ID]["name"] == "主播小美 Anna"

    status, info = await _call(server.url, "PATCH", f"/avatars/{STUDIO_ID}", json={"name": "名" * 500})
    assert status == 200 and info["name"] == "名" * 60

    for body, words in (({"name": " \u0000 "}, "empty"), ({"name": 5}, "string"), ({}, "send"),
                        ({"live": "yes"}, "true or false"), ({"colour": "red"}, "unknown field")):
        status, reply = await _call(server.url, "PATCH", f"/avatars/{STUDIO_ID}", json=body)
        assert status == 400 and words in reply["error"], (body, reply)
    status, reply = await _call(server.url, "PATCH", f"/avatars/{STUDIO_ID}", data=b'{"name": "x"}',
                                headers={"Content-Type": "text/plain"})
    assert status == 415 and reply["error"]
    status, reply = await _call(server.url, "PATCH", f"/avatars/{UNKNOWN_ID}", json={"name": "x"})
    assert status == 404 and "no prepared avatar" in reply["error"]
    status, reply = await _call(server.url, "PATCH", "/avatars/..%2F..%2Fetc", json={"name": "x"})
    assert status == 404 and reply["error"]
    status, reply = await _call(server.url, "PATCH", "/avatars/default", json={"name": "Mine"})
    assert status == 409 and "built-in" in reply["error"]
    assert (await _ids(server.url))["default"]["name"] == "Astronaut"


async def test_concurrent_renames_leave_one_whole_info_json(make_server, own_cache):
    server = await make_server(avatar_root=own_cache)
    names = [f"name {i}" for i in range(24)]
    replies = await asyncio.gather(*(_call(server.url, "PATCH", f"/avatars/{STUDIO_ID}", json={"name": n})
                                     for n in names))
    assert all(status == 200 for status, _ in replies)
    stored = json.loads((own_cache / STUDIO_ID / "info.json").read_text())
    assert stored["name"] in names and stored["n_frames"] > 0
    assert not [p.name for p in (own_cache / STUDIO_ID).iterdir() if p.name.endswith(".tmp")]


async def test_delete_removes_the_avatar_but_never_the_built_in_one(make_server, own_cache):
    server = await make_server(avatar_root=own_cache)
    status, reply = await _call(server.url, "DELETE", "/avatars/default")
    assert status == 409 and "built-in" in reply["error"]
    assert (own_cache / "default" / "info.json").is_file()

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/avatars/{STUDIO_ID}/preview.jpg?size=400") as resp:
            assert resp.status == 200 and resp.content_type == "image/jpeg"
            big = await resp.read()
        async with http.get(f"{server.url}/avatars/{STUDIO_ID}/preview.jpg") as resp:
            small = await resp.read()
    assert len(big) > len(small) > 1000

    # On air: refused until the channel using it ends.
    status, channel = await _call(server.url, "POST", "/channels", json={"avatar": STUDIO_ID, "name": "uses it"})
    assert status == 201, channel
    status, reply = await _call(server.url, "DELETE", f"/avatars/{STUDIO_ID}")
    assert status == 409 and "on air" in reply["error"] and "uses it" in reply["error"]
    status, _ = await _call(server.url, "DELETE", f"/channels/{channel['channel_id']}")
    assert status == 200

    status, reply = await _call(server.url, "DELETE", f"/avatars/{STUDIO_ID}")
    assert status == 200 and reply == {"deleted": STUDIO_ID}
    assert not any(p.name.startswith(f".{STUDIO_ID}") or p.name == STUDIO_ID for p in own_cache.iterdir())
    assert set(await _ids(server.url, "?all=1")) == {"default"}
    status, reply = await _call(server.url, "DELETE", f"/avatars/{STUDIO_ID}")
    assert status == 404 and reply["error"]
    status, reply = await _call(server.url, "GET", f"/avatars/{STUDIO_ID}/preview.jpg")
    assert status == 404 and reply["error"]
    status, reply = await _call(server.url, "DELETE", "/avatars/not-an-id")
    assert status == 404 and reply["error"]
