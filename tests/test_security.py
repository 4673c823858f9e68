"""Access control, request limits and start-up errors (issue #8, items 3, 5 and 8), one by one.

Every test talks to a real server on 127.0.0.1: the in-process app of ``make_server``, or
``run_live.py`` in a subprocess where start-up itself is under test.  A token "forced" on
loopback (``token=...``) is how the auth rules are exercised without a public address.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from live.http.guard import is_loopback, resolve_token
from testing.studio_helpers import free_port

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent
TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def call(url: str, method: str, path: str, **kw) -> tuple[int, dict, dict]:
    """(status, JSON body or {"_text": ...}, headers)"""
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url + path, **kw) as resp:
            text = await resp.text()
            try:
                body = json.loads(text)
            except ValueError:
                body = {"_text": text}
            return resp.status, body, dict(resp.headers)


async def raw_request(port: int, head: bytes, body: bytes = b"", timeout: float = 5.0) -> tuple[int, bytes]:
    """Send exactly these bytes; return the status and the raw response (read until close or timeout)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        rest = b""
        try:
            rest = await asyncio.wait_for(reader.read(65536), 1.0)
        except asyncio.TimeoutError:
            pass
        return int(status_line.split()[1]), status_line + rest
    finally:
        writer.close()


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture
async def guarded(make_server):
    return await make_server(token=TOKEN)


# -- item 3: access control ----------------------------------------------------------------------

def test_which_addresses_are_loopback():
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST."):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "192.168.1.5", "example.com", "localhost.example.com"):
        assert not is_loopback(host), host


def test_a_public_address_gets_a_generated_token_and_loopback_none():
    a, b = resolve_token("0.0.0.0", None), resolve_token("0.0.0.0", None)
    assert a and b and a != b and len(a) >= 32
    assert resolve_token("127.0.0.1", None) is None
    assert resolve_token("127.0.0.1", TOKEN) == TOKEN
    with pytest.raises(ValueError):
        resolve_token("0.0.0.0", "short")
    with pytest.raises(ValueError):
        resolve_token("0.0.0.0", "has a space in it, long enough")


async def test_loopback_without_token_stays_open(live_server):
    status, body, _ = await call(live_server.url, "GET", "/sessions")
    assert status == 200 and body["count"] == 0
    status, _, _ = await call(live_server.url, "GET", "/studio/results")
    assert status == 200


@pytest.mark.parametrize("method, path", [
    ("GET", "/sessions"), ("GET", "/voices"), ("GET", "/avatars"), ("POST", "/offer"),
    ("GET", "/sessions/abcdefghijklmnop"), ("DELETE", "/sessions/abcdefghijklmnop"),
    ("POST", "/sessions/abcdefghijklmnop/say"), ("POST", "/sessions/abcdefghijklmnop/interrupt"),
    ("GET", "/sessions/abcdefghijklmnop/events"), ("GET", "/avatars/jobs/x"),
    ("GET", "/studio/results"), ("POST", "/studio/batches"), ("GET", "/studio/usage"),
    ("GET", "/studio/logs"), ("GET", "/studio/nothing-here"),
])
async def test_with_a_token_every_control_route_needs_it(guarded, method, path):
    status, body, headers = await call(guarded.url, method, path)
    assert status == 401, (status, body)
    assert "token" in body["error"] and headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = await call(guarded.url, method, path, headers={"Authorization": "Bearer wrong-token-123456789"})
    assert status == 401
    status, _, _ = await call(guarded.url, method, path, headers=AUTH)
    assert status != 401


async def test_with_a_token_the_page_and_health_stay_public(guarded):
    for path in ("/", "/static/app.js", "/static/auth.js", "/health"):
        status, _, _ = await call(guarded.url, "GET", path)
        assert status == 200, path


async def test_a_session_id_alone_gives_no_control(guarded):
    # Without the token the answer is the same 401 whether the session exists or not.
    status, _, _ = await call(guarded.url, "POST", "/sessions/abcdefghijklmnop/interrupt")
    assert status == 401
    status, body, _ = await call(guarded.url, "POST", "/sessions/abcdefghijklmnop/interrupt", headers=AUTH)
    assert status == 404, body


async def test_query_token_only_for_browser_loaded_gets(guarded):
    # An EventSource cannot send a header: its GET may carry ?token=.
    status, body, _ = await call(guarded.url, "GET", f"/sessions/abcdefghijklmnop/events?token={TOKEN}")
    assert status == 404, body
    status, body, _ = await call(guarded.url, "GET", f"/studio/batches/nope/events?token={TOKEN}")
    assert status == 404, body
    # ... but never on a listing, and never to change anything.
    status, _, _ = await call(guarded.url, "GET", f"/sessions?token={TOKEN}")
    assert status == 401
    status, _, _ = await call(guarded.url, "POST", f"/studio/batches?token={TOKEN}", json={})
    assert status == 401


async def test_a_foreign_origin_is_refused(live_server):
    url = live_server.url
    status, body, _ = await call(url, "POST", "/studio/batches", json={"name": "x"},
                                 headers={"Origin": "http://evil.example"})
    assert status == 403 and "Origin" in body["error"]
    status, _, _ = await call(url, "GET", "/sessions", headers={"Origin": "null"})
    assert status == 403
    status, _, _ = await call(url, "POST", "/studio/batches", json={"name": "x"}, headers={"Origin": url})
    assert status == 201
    status, _, _ = await call(url, "POST", "/studio/batches", json={"name": "x"})   # no Origin: not a browser
    assert status == 201


async def test_a_dns_rebinding_host_is_refused(live_server):
    status, body, _ = await call(live_server.url, "GET", "/sessions", headers={"Host": "attacker.example:80"})
    assert status == 403 and "loopback" in body["error"]


@pytest.mark.parametrize("ctype, data", [
    ("text/plain", b'{"name": "x"}'),
    ("application/x-www-form-urlencoded", b"name=x"),
    (None, b'{"name": "x"}'),
])
async def test_state_changing_bodies_need_a_non_simple_type(live_server, ctype, data):
    headers = {"Content-Type": ctype} if ctype else {}
    for path in ("/studio/batches", "/sessions/abcdefghijklmnop/say", "/offer"):
        if ctype is None:
            status, _ = await raw_request(port_of(live_server.url), (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n").encode(), data)
        else:
            status, _, _ = await call(live_server.url, "POST", path, data=data, headers=headers)
        assert status == 415, (path, ctype, status)


# -- item 5: resource limits -------------------------------------------------------------------

async def test_json_bodies_have_a_small_limit(live_server):
    big = json.dumps({"name": "x" * 70_000})
    status, body, _ = await call(live_server.url, "POST", "/studio/batches", data=big,
                                 headers={"Content-Type": "application/json"})
    assert status == 413, body


async def test_a_huge_declared_length_is_refused_before_reading(live_server):
    port = port_of(live_server.url)
    for path in ("/studio/batches", "/sessions/abcdefghijklmnop/audio", "/avatars"):
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {10**12}\r\n\r\n").encode()
        t = time.monotonic()
        status, raw = await raw_request(port, head)   # no body is ever sent
        assert status == 413, raw
        assert time.monotonic() - t < 5.0


@pytest.mark.parametrize("body", [
    "[" * 30_000 + "]" * 30_000,                         # far deeper than the recursion limit
    '{"name": ' + "[" * 40 + "]" * 40 + "}",            # deeper than any request needs
    '{"fps": ' + "9" * 5000 + "}",                       # an int Python refuses to parse
    '{"fps": ' + "9" * 30 + "}",
    '{"fps": 1e999}', '{"fps": NaN}', '{"fps": -Infinity}',
    '{"fps": true}', '{"fps": "25"}', '{"fps": 0}', '{"fps": 1000}',
    '{"name": 5}', "[1, 2]", '"just a string"', '{"name": "\\ud800"}x',
    b'{"name": "\xff\xfe"}',
])
async def test_malformed_json_is_400(live_server, body):
    status, reply, _ = await call(live_server.url, "POST", "/studio/batches", data=body,
                                  headers={"Content-Type": "application/json"})
    assert status == 400, (status, reply)
    assert isinstance(reply["error"], str)


@pytest.mark.parametrize("query", [
    "page=0", "page=-1", "page=" + "9" * 30, "page=99999999999", "page=1e3", "page=%EF%BC%91",
    "per_page=0", "per_page=100000", "per_page=abc",
])
async def test_absurd_paging_is_400(live_server, query):
    status, reply, _ = await call(live_server.url, "GET", f"/studio/results?{query}")
    assert status == 400, (query, status, reply)


@pytest.mark.parametrize("path", [
    "/studio/batches?offset=" + "9" * 30, "/studio/batches?offset=-1", "/studio/batches?limit=0",
    "/studio/logs?lines=0", "/studio/logs?lines=" + "9" * 30, "/studio/logs?lines=1000000",
])
async def test_absurd_offsets_and_lines_are_400(live_server, path):
    status, reply, _ = await call(live_server.url, "GET", path)
    assert status == 400, (path, status, reply)


def _multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"XyZ") -> bytes:
    out = b""
    for headers, content in parts:
        out += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + content + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


async def test_multipart_without_a_boundary_is_400(live_server):
    body = _multipart([(b'Content-Disposition: form-data; name="file"; filename="a.mp4"', b"data")])
    for path in ("/avatars", "/studio/batches/none/videos", "/sessions/abcdefghijklmnop/audio"):
        status, reply, _ = await call(live_server.url, "POST", path, data=body,
                                      headers={"Content-Type": "multipart/form-data"})
        assert status in (400, 404), (path, status, reply)
    status, reply, _ = await call(live_server.url, "POST", "/avatars", data=body,
                                  headers={"Content-Type": "multipart/form-data"})
    assert status == 400 and "boundary" in reply["error"]


async def test_a_nul_in_a_file_name_is_400(live_server):
    body = _multipart([(b'Content-Disposition: form-data; name="file"; filename="a\x00.jpg"', b"\xff\xd8\xff" * 10)])
    status, reply, _ = await call(live_server.url, "POST", "/avatars", data=body,
                                  headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert status == 400, reply
    assert not list((live_server.config.upload_dir).glob("*")) if live_server.config.upload_dir.exists() else True


async def test_binary_in_a_text_field_is_400(live_server):
    body = _multipart([(b'Content-Disposition: form-data; name="name"', b"\xff\xfe\x00\x01binary"),
                       (b'Content-Disposition: form-data; name="file"; filename="a.jpg"', b"\xff\xd8\xff" * 10)])
    status, reply, _ = await call(live_server.url, "POST", "/avatars", data=body,
                                  headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert status == 400 and "not text" in reply["error"], reply


async def test_a_500_names_no_exception_and_no_path(tmp_path, avatar_root):
    from live.http.guard import PUBLIC, access
    from live.server.app import create_app
    from live.server.config import ServerConfig

    @access(PUBLIC)
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError(f"secret detail in {tmp_path}/private.db")

    app = create_app(ServerConfig(port=0, data_dir=tmp_path / "data", avatar_root=avatar_root,
                                  preload_default_avatar=False))
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        status, body, _ = await call(f"http://127.0.0.1:{port}", "GET", "/broken")
        assert status == 500
        assert body == {"error": "internal error (see the server log)"}
    finally:
        await runner.cleanup()


# -- item 8: start-up errors -------------------------------------------------------------------

def _start(args: list[str], timeout: float = 60.0, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run_live.py", *args, "--port", str(free_port())], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, **popen)


def _one_error_line(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert needle in lines[0] and "Traceback" not in proc.stderr


def test_a_data_dir_that_is_a_file_is_one_error_line(tmp_path):
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("a file where the data directory should be")
    _one_error_line(_start(["--data-dir", str(not_a_dir)]), "data directory")


def test_a_read_only_data_dir_is_one_error_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    args = [sys.executable, "run_live.py", "--data-dir", str(data), "--port", str(free_port())]
    if os.geteuid() != 0:
        data.chmod(0o555)
    else:
        # Root writes through any mode bits: mount a read-only tmpfs over the folder, in a private
        # mount namespace of the child only (nothing changes for the rest of the machine).
        wrap = ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o ro,size=1m tmpfs "$0" && exec "$@"', str(data)]
        if shutil.which("unshare") is None or subprocess.run(wrap + ["true"], capture_output=True).returncode:
            pytest.skip("running as root without mount namespaces: no way to make a read-only folder")
        args = wrap + args
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60)
    _one_error_line(proc, "cannot write")
    assert "Read-only" in proc.stderr or "Permission denied" in proc.stderr


def test_a_full_disk_is_one_error_line(tmp_path):
    # RLIMIT_FSIZE makes every write past 4 kB fail with EFBIG, as a full disk fails with ENOSPC
    # (Python ignores SIGXFSZ, so the write raises instead of killing the process).
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    _one_error_line(_start(["--data-dir", str(tmp_path / "data")], preexec_fn=limit), "cannot write")


def test_a_public_address_prints_a_token_and_enforces_it(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "run_live.py", "--host", "0.0.0.0", "--port", str(port),
                             "--data-dir", str(tmp_path / "data")], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "LIPSTREAM_TOKEN": ""})
    try:
        token = None
        deadline = time.monotonic() + 90
        while token is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the server exited before printing a token"
            if line.startswith("token: "):
                token = line.split(":", 1)[1].strip()
        assert token and len(token) >= 32

        async def probe() -> None:
            url = f"http://127.0.0.1:{port}"
            while time.monotonic() < deadline:
                try:
                    if (await call(url, "GET", "/health"))[0] == 200:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.3)
            assert (await call(url, "GET", "/sessions"))[0] == 401
            status, body, _ = await call(url, "GET", "/sessions", headers={"Authorization": f"Bearer {token}"})
            assert status == 200 and body["count"] == 0
        asyncio.run(probe())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_token_can_come_from_the_environment(tmp_path):
    # An invalid token from LIPSTREAM_TOKEN is refused at start-up: proof that it is read.
    proc = _start(["--data-dir", str(tmp_path / "data")], env={**os.environ, "LIPSTREAM_TOKEN": "bad token"})
    _one_error_line(proc, "token")
