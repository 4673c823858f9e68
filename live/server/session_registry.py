"""The live streams of a server -- private sessions and channels -- with a hard capacity.

Each stream holds one worker process, so both kinds count against the same
limit.  A slot is reserved before any work starts for a new offer or channel (so
two requests racing for the last slot can't both get it) and released when the
stream ends, however it ends.  Beyond capacity a new one is refused with a
reason -- a degraded stream for everyone would be worse.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from live.server.channel import Channel


class CapacityError(RuntimeError):
    """No free session slot (HTTP 503)."""


class UnknownSession(KeyError):
    """No session (or channel) with that id (HTTP 404)."""

    def __init__(self, stream_id: str, kind: str = "session") -> None:
        super().__init__(stream_id, kind)

    def __str__(self) -> str:
        return f"no {self.args[1]} {self.args[0]!r}"


class SessionRegistry:
    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._sessions: dict[str, Channel] = {}
        self._reserved: set[str] = set()
        self.total_started = 0

    def reserve(self) -> str:
        """A new session id holding one slot; raises CapacityError when full."""
        used = len(self._sessions) + len(self._reserved)
        if used >= self.max_sessions:
            raise CapacityError(
                f"server at capacity: {used} of {self.max_sessions} live streams (sessions and channels) in use; "
                "try again later"
            )
        session_id = secrets.token_urlsafe(12)
        self._reserved.add(session_id)
        return session_id

    def add(self, session: Channel) -> None:
        self._reserved.discard(session.id)
        self._sessions[session.id] = session
        self.total_started += 1

    def release(self, session_id: str) -> None:
        self._reserved.discard(session_id)
        self._sessions.pop(session_id, None)

    def get(self, stream_id: str, private: bool = True) -> Channel:
        """A private session (``private``) or a channel; the other kind is unknown here."""
        stream = self._sessions.get(stream_id)
        if stream is None or stream.private != private:
            raise UnknownSession(stream_id, "session" if private else "channel")
        return stream

    def __iter__(self) -> Iterator[Channel]:
        return iter(list(self._sessions.values()))

    def sessions(self) -> list[Channel]:
        return [s for s in self if s.private]

    def channels(self) -> list[Channel]:
        return [s for s in self if not s.private]

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def in_use(self) -> int:
        return len(self._sessions) + len(self._reserved)

    async def close_all(self, reason: str = "server shutting down") -> None:
        await asyncio.gather(*(s.close(reason) for s in self), return_exceptions=True)
