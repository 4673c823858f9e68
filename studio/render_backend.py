"""Where the studio's units of work run.

The default is the local process pool of ``studio.worker_pool``.  Another engine
(a Ray cluster: ``scale.ray_studio``) plugs in here: the queue, the database, the
result names, thumbnails, retention and the log stay the pool's; a backend only
runs one ``AnalyzeJob`` or ``RenderJob`` and returns what the local process would
have returned, with the result file committed at ``RenderJob.out_path``.

Errors keep the pool's meaning: ``pipeline.JobFailed`` (the item's readable
reason), ``pipeline.JobCancelled``, and ``BrokenProcessPool`` for a lost worker
that the engine could not retry (counted as a crash, requeued).
"""

from __future__ import annotations

from typing import Callable, Protocol

from studio.pipeline import AnalyzeJob, AnalyzeOutcome, RenderJob, RenderOutcome


class RenderBackend(Protocol):
    name: str

    def slots(self) -> int:
        """How many units of work may run at once now (the pool fills this many)."""

    async def start(self) -> None: ...

    async def run(self, job: AnalyzeJob | RenderJob) -> AnalyzeOutcome | RenderOutcome: ...

    def node_of(self, item_id: str) -> str | None:
        """Where the item was rendered (None: on this machine, or not known)."""

    def forget_batch(self, batch_id: str) -> None:
        """The batch is settled: drop whatever the backend keeps for it."""

    async def close(self) -> None: ...


BackendFactory = Callable[[], RenderBackend]   # called once by the Studio, inside its event loop
