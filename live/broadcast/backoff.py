"""Reconnect delays: quick after a one-off drop, capped so a returning ingest is found within seconds."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    first_s: float = 0.5
    cap_s: float = 4.0
    # A connection that stayed up this long was healthy: the next drop starts again at first_s.
    healthy_after_s: float = 10.0
    failures: int = 0
    _up_since: float | None = None

    def next_delay(self, now: float) -> float:
        """A connection attempt failed, or the connection dropped at ``now``: seconds until the next try."""
        if self._up_since is not None and now - self._up_since >= self.healthy_after_s:
            self.failures = 0
        self._up_since = None
        delay = min(self.cap_s, self.first_s * 2 ** self.failures)
        self.failures += 1
        return delay

    def connected(self, now: float) -> None:
        self._up_since = now
