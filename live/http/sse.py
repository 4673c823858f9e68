"""The one Server-Sent Events writer (live session events, studio batch progress).

A stream is a function that waits for the next event (``None`` ends the
stream).  The writer sends a keep-alive comment whenever nothing happened for
``keepalive_s`` (proxies close silent connections), stops quietly when the
client leaves, and is cancelled when the server shuts down: an open stream never
holds up a stopping server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
_STREAMS: web.AppKey[set] = web.AppKey("lipstream_sse_streams", set)


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: dict[str, Any]
    id: int | None = None

    def encode(self) -> bytes:
        head = f"id: {self.id}\n" if self.id is not None else ""
        return f"{head}event: {self.event}\ndata: {json.dumps(self.data)}\n\n".encode()


NextEvent = Callable[[], Awaitable["SseEvent | None"]]


def setup_sse(app: web.Application) -> None:
    """Once per app: streams still open at shutdown are cancelled."""
    if _STREAMS in app:
        return
    app[_STREAMS] = set()

    async def end_streams(app: web.Application) -> None:
        for task in list(app[_STREAMS]):
            task.cancel()

    app.on_shutdown.append(end_streams)


async def stream_sse(request: web.Request, next_event: NextEvent, *, keepalive_s: float = KEEPALIVE_S,
                     retry_ms: int | None = None) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    streams = request.app.get(_STREAMS, set())
    task = asyncio.current_task()
    streams.add(task)
    try:
        if retry_ms is not None:
            await resp.write(f"retry: {retry_ms}\n\n".encode())
        while True:
            try:
                event = await asyncio.wait_for(next_event(), keepalive_s)
            except asyncio.TimeoutError:
                await resp.write(b": keep-alive\n\n")
                continue
            if event is None:
                break
            await resp.write(event.encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass   # the client left, or the server is stopping
    except Exception:
        # The headers are sent: a JSON error response is no longer possible.
        log.exception("event stream failed: %s", request.path)
        try:
            await resp.write(SseEvent("error", {"error": "internal error (see the server log)"}).encode())
        except ConnectionResetError:
            pass
    finally:
        streams.discard(task)
    return resp
