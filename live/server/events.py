"""Per-session event stream (Server-Sent Events).

A session publishes small JSON events ("speech_start", "speech_end", "error",
"stats", "closed"); every open ``GET /sessions/{id}/events`` gets its own
bounded queue.  A subscriber that stops reading loses its oldest events rather
than growing the server's memory; the others are unaffected.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_QUEUE_SIZE = 256
_KEEPALIVE_S = 15.0


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]
    time: float = field(default_factory=time.time)
    seq: int = 0

    def encode(self) -> bytes:
        body = json.dumps({"type": self.kind, "time": round(self.time, 4), **self.data})
        return f"id: {self.seq}\nevent: {self.kind}\ndata: {body}\n\n".encode()


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self._seq = 0
        self.closed = False
        self.history: list[Event] = []   # speech/error events, for late subscribers and tests

    def publish(self, kind: str, **data: Any) -> Event:
        self._seq += 1
        event = Event(kind, data, seq=self._seq)
        if kind != "stats":
            self.history.append(event)
            del self.history[:-200]
        for q in self._subscribers:
            if q.full():
                q.get_nowait()
            q.put_nowait(event)
        return event

    def subscribe(self) -> asyncio.Queue[Event | None]:
        q: asyncio.Queue[Event | None] = asyncio.Queue(_QUEUE_SIZE)
        if self.closed:
            q.put_nowait(None)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Event | None]) -> None:
        self._subscribers.discard(q)

    def close(self) -> None:
        """End every stream (after a final event has been published)."""
        self.closed = True
        for q in self._subscribers:
            if q.full():
                q.get_nowait()
            q.put_nowait(None)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


async def stream_events(request: web.Request, hub: EventHub) -> web.StreamResponse:
    """Serve ``hub`` as text/event-stream until the session closes or the client leaves."""
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    q = hub.subscribe()
    try:
        await resp.write(b"retry: 2000\n\n")
        while True:
            try:
                event = await asyncio.wait_for(q.get(), _KEEPALIVE_S)
            except asyncio.TimeoutError:
                await resp.write(b": keep-alive\n\n")
                continue
            if event is None:
                break
            await resp.write(event.encode())
    except ConnectionResetError:
        pass  # the client left
    finally:
        hub.unsubscribe(q)
    return resp
