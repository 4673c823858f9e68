"""Fuzz every route of a running server (live + avatars + studio) with malformed requests.

The routes are read from ``app.router.routes()``, so a route added later is fuzzed without
touching this file.  For each route, hypothesis draws path parameters (random text, traversal
attempts, and ids that really exist), query strings, headers (token, Origin, Content-Type)
and bodies (random bytes, odd JSON, deep nesting, broken multipart).  Every answer must come
within 5 s and be below 500; afterwards the server must still be healthy and no refused
upload may be left on disk.  Deterministic (``derandomize``), a few examples per route.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import threading
import time
from collections import Counter
from urllib.parse import quote, urlencode

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from live.server.app import create_app
from live.server.config import ServerConfig

pytestmark = pytest.mark.timeout(300)

TOKEN = "fuzz-token-0123456789abcdef"
EXAMPLES_PER_ROUTE = 40
REQUEST_TIMEOUT_S = 5.0
JSON_KEYS = ["text", "voice", "interrupt", "name", "fps", "ids", "sdp", "type", "avatar"]
QUERY_KEYS = ["page", "per_page", "offset", "limit", "lines", "ids", "batch", "interrupt", "token"]
# File names that never reach avatar preparation (a process per upload would make the test slow).
FILE_NAMES = ["x.bin", "a\x00.mp4", "../../etc/passwd", "notes.txt", "", "ä" * 300, "a\r\nb.wav", "C:\\x\\y"]


class ThreadedServer:
    """The real app on a loopback port, served from its own thread and event loop."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fuzz-server", daemon=True)
        self._runner: web.AppRunner | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self._runner = web.AppRunner(self.app, shutdown_timeout=2.0)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        try:
            self.loop.run_until_complete(start())
        finally:
            self._ready.set()   # start() checks that the port is set
        self.loop.run_forever()

    def start(self) -> "ThreadedServer":
        self._thread.start()
        assert self._ready.wait(120) and self.port, "the server did not start"
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def request(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        # A stream (SSE) that opened is a success; read only its start.
        data = resp.read(4096) if resp.getheader("Content-Type", "").startswith("text/event-stream") else resp.read()
        return resp.status, data
    finally:
        conn.close()


# -- strategies --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**40), 10**40) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(JSON_KEYS) | st.text(max_size=8),
                                                                inner, max_size=4),
    max_leaves=12,
)


@st.composite
def multipart_bodies(draw) -> tuple[bytes, str]:
    boundary = draw(st.sampled_from(["b0und", "x" * 70, "-"]))
    out = b""
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["file", "name", "", "x\"y"]))
        disposition = f'form-data; name="{name}"'
        if draw(st.booleans()):
            disposition += f'; filename="{draw(st.sampled_from(FILE_NAMES))}"'
        content = draw(st.binary(max_size=300) | st.text(max_size=100).map(str.encode))
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode("utf-8", "surrogatepass") \
            + content + b"\r\n"
    if draw(st.booleans()):
        out += f"--{boundary}--\r\n".encode()
    ctype = draw(st.sampled_from([f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                                  "multipart/mixed; boundary=zz", f"multipart/form-data; boundary={'y' * 80}"]))
    return out, ctype


@st.composite
def bodies(draw) -> tuple[bytes | None, str | None]:
    kind = draw(st.sampled_from(["none", "bytes", "json", "json_object", "deep", "multipart"]))
    if kind == "none":
        return None, draw(st.sampled_from([None, "application/json"]))
    if kind == "multipart":
        return draw(multipart_bodies())
    if kind == "bytes":
        body = draw(st.binary(max_size=500))
    elif kind == "json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "json_object":
        body = json.dumps(draw(st.dictionaries(st.sampled_from(JSON_KEYS), json_values, max_size=5))).encode()
    else:
        n = draw(st.sampled_from([40, 2_000, 20_000]))
        body = (b"[" * n + b"]" * n) if draw(st.booleans()) else (b'{"a":' * n + b"1" + b"}" * n)
    # Mostly the right type, so the body gets past the guard into the handler's parser.
    ctype = draw(st.sampled_from(["application/json"] * 8 + ["application/json; charset=latin-1", "text/plain",
                                  "application/octet-stream", "audio/wav", "video/mp4", None, "garbage/",
                                  "application/x-www-form-urlencoded"]))
    return body, ctype


def path_values(real_ids: list[str]):
    return (st.sampled_from(real_ids)
            | st.sampled_from(["..", "../../etc/passwd", "%00", "a" * 300, "0" * 16, "default"])
            | st.text(max_size=30))


def queries():
    value = st.text(max_size=20) | st.integers(-(10**30), 10**30).map(str) | st.sampled_from(
        ["", "1e3", "NaN", "-0", " 5", "0x10", "١٢"])
    return st.dictionaries(st.sampled_from(QUERY_KEYS), value, max_size=4)


def headers_strategy():
    auth = st.sampled_from([f"Bearer {TOKEN}"] * 6 + [None, "Bearer", "Bearer wrong", "Basic Zm9vOmJhcg==",
                                                      "Bearer " + "t" * 5000])
    origin = st.sampled_from([None] * 12 + ["http://evil.example", "null", "http://127.0.0.1", "garbage"])
    return st.tuples(auth, origin)


# -- the test ------------------------------------------------------------------------------------

def _route_templates(app: web.Application) -> list[tuple[str, str]]:
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("formatter") or info.get("path") or (info.get("prefix", "") + "/{filename}")
        out.append((route.method, template))
    return sorted(set(out))


def _fill(template: str, values: list[str], raw: bool) -> str:
    it = iter(values)
    return re.sub(r"\{[^}]+\}", lambda _m: quote(next(it), safe="/." if raw else ""), template)


@pytest.fixture(scope="module")
def server(tmp_path_factory, avatar_root):
    data = tmp_path_factory.mktemp("fuzz")
    app = create_app(ServerConfig(host="127.0.0.1", port=0, data_dir=data, avatar_root=avatar_root,
                                  preload_default_avatar=False, token=TOKEN))
    srv = ThreadedServer(app).start()
    yield srv, data
    srv.stop()


def _real_ids(port: int) -> list[str]:
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    status, body = request(port, "POST", "/studio/batches", auth, b'{"name": "fuzz"}')
    assert status == 201, body
    return [json.loads(body)["batch"]["id"]]


def test_no_route_answers_5xx_or_hangs(server):
    srv, data = server
    routes = _route_templates(srv.app)
    paths = {t for _m, t in routes}
    assert {"/offer", "/sessions/{session_id}/say", "/avatars", "/studio/batches/{batch}/videos"} <= paths, paths
    real_ids = _real_ids(srv.port)
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    t0 = time.monotonic()

    for method, template in routes:
        n_params = template.count("{")
        methods = ["GET", "POST", "PUT", "DELETE", "PATCH"] if method == "*" else [method]

        @settings(max_examples=EXAMPLES_PER_ROUTE, derandomize=True, database=None, deadline=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.sampled_from(methods), st.lists(path_values(real_ids), min_size=n_params, max_size=n_params),
               st.booleans(), queries(), headers_strategy(), bodies())
        def one(method, values, raw, query, hdrs, body_and_type):
            body, ctype = body_and_type
            path = _fill(template, values, raw) + ("?" + urlencode(query) if query else "")
            auth, origin = hdrs
            headers = {k: v for k, v in (("Authorization", auth), ("Origin", origin), ("Content-Type", ctype)) if v}
            started = time.monotonic()
            try:
                status, reply = request(srv.port, method, path, headers, body)
            except TimeoutError:
                failures.append(f"{method} {path}: no answer in {REQUEST_TIMEOUT_S} s")
                return
            except (ConnectionError, http.client.HTTPException) as e:
                failures.append(f"{method} {path}: connection failed ({e!r})")
                return
            assert time.monotonic() - started < REQUEST_TIMEOUT_S + 1
            statuses[status] += 1
            if status >= 500:
                failures.append(f"{method} {path} [{ctype}] body={body[:80] if body else body!r}: "
                                f"{status} {reply[:200]!r}")

        one()
    elapsed = time.monotonic() - t0

    assert not failures, "\n".join(failures[:20])
    # The requests got past the guard into the handlers, not just bounced off it.
    assert {200, 400, 401, 403, 404, 415} <= set(statuses), statuses
    assert srv.alive
    status, body = request(srv.port, "GET", "/health", {}, None)
    assert status == 200 and json.loads(body)["status"] == "ok"
    # Nothing refused stays on disk.
    leftovers = [p for folder in (data / "uploads", data / "studio" / "uploads") if folder.exists()
                 for p in folder.rglob("*") if p.is_file()]
    assert not leftovers, leftovers
    print(f"fuzzed {len(routes)} routes x {EXAMPLES_PER_ROUTE} requests in {elapsed:.1f} s: {dict(statuses)}")
