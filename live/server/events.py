"""Per-session event stream (Server-Sent Events).

A session publishes small JSON events ("speech_start", "speech_end", "error",
"stats", "closed"); every open ``GET /sessions/{id}/events`` gets its own
bounded queue.  A subscriber that stops reading loses its oldest events rather
than growing the server's memory; the others are unaffected.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from live.http.sse import SseEvent, stream_sse

_QUEUE_SIZE = 256


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]
    time: float = field(default_factory=time.time)
    seq: int = 0

    def sse(self) -> SseEvent:
        return SseEvent(self.kind, {"type": self.kind, "time": round(self.time, 4), **self.data}, id=self.seq)

    def encode(self) -> bytes:
        return self.sse().encode()


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
    q = hub.subscribe()

    async def next_event() -> SseEvent | None:
        event = await q.get()
        return None if event is None else event.sse()

    try:
        return await stream_sse(request, next_event, retry_ms=2000)
    finally:
        hub.unsubscribe(q)
