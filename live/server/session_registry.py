"""The live sessions of a server, with a hard capacity.

A slot is reserved before any work starts for a new offer (so two offers racing
for the last slot can't both get it) and released when the session ends, however
it ends.  Beyond capacity a new offer is refused with a reason -- a degraded
stream for everyone would be worse.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from live.server.live_session import LiveSession


class CapacityError(RuntimeError):
    """No free session slot (HTTP 503)."""


class UnknownSession(KeyError):
    """No session with that id (HTTP 404)."""

    def __str__(self) -> str:
        return f"no session {self.args[0]!r}"


class SessionRegistry:
    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._sessions: dict[str, LiveSession] = {}
        self._reserved: set[str] = set()
        self.total_started = 0

    def reserve(self) -> str:
        """A new session id holding one slot; raises CapacityError when full."""
        used = len(self._sessions) + len(self._reserved)
        if used >= self.max_sessions:
            raise CapacityError(
                f"server at capacity: {used} of {self.max_sessions} live sessions in use; try again later"
            )
        session_id = secrets.token_urlsafe(12)
        self._reserved.add(session_id)
        return session_id

    def add(self, session: LiveSession) -> None:
        self._reserved.discard(session.id)
        self._sessions[session.id] = session
        self.total_started += 1

    def release(self, session_id: str) -> None:
        self._reserved.discard(session_id)
        self._sessions.pop(session_id, None)

    def get(self, session_id: str) -> LiveSession:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise UnknownSession(session_id) from None

    def __iter__(self) -> Iterator[LiveSession]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def in_use(self) -> int:
        return len(self._sessions) + len(self._reserved)

    async def close_all(self, reason: str = "server shutting down") -> None:
        await asyncio.gather(*(s.close(reason) for s in self), return_exceptions=True)
