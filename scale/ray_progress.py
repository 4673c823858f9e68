"""The caller's progress board: Ray tasks report to it, the caller reads it.

One small actor (no CPU) on the caller's own node.  A task reports its stage and
fraction under a key and learns in the same call whether the caller has cancelled
that key; the caller collects the latest reports once per progress interval and
hands over the keys to cancel.  Nothing else crosses: the caller's database stays
the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Report:
    stage: str
    fraction: float
    node_id: str


class ProgressBoard:
    def __init__(self) -> None:
        self._latest: dict[str, Report] = {}
        self._cancelled: set[str] = set()

    def report(self, key: str, stage: str, fraction: float, node_id: str) -> bool:
        """Record a task's progress; True once ``key`` is cancelled (the task should stop)."""
        self._latest[key] = Report(stage, float(fraction), node_id)
        return key in self._cancelled

    def exchange(self, forget: list[str]) -> dict[str, Report]:
        """The reports since the last call; ``forget``: settled keys, never asked about again."""
        self._cancelled.difference_update(forget)
        latest, self._latest = self._latest, {}
        return latest

    def cancel(self, keys: list[str]) -> None:
        """Each of ``keys`` learns at its next report that it must stop."""
        self._cancelled.update(keys)
