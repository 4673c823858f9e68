"""Work done once in the worker forkserver, inherited by every session's worker.

Loading the mouth model means tracing and freezing it with TorchScript, about two
seconds of CPU -- far longer than everything else a new session needs.  The
forkserver imports this module at start-up, so the default checkpoint is loaded
there once and each forked worker starts with it already in memory (copy on
write).  torch is pinned to one thread *before* that, so no thread pool exists
at fork time (forking a process with a live OpenMP pool is unsafe).

A worker asking for another checkpoint, or for a default checkpoint that changed
on disk since (a retrained model), loads it itself.
"""

from __future__ import annotations

from pathlib import Path

import torch

from models.mouth.mouth_model import DEFAULT_CHECKPOINT, MouthModelError, MouthPredictor

torch.set_num_threads(1)


def _stamp(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path.resolve()), st.st_mtime_ns, st.st_size


def _load_default() -> tuple[tuple[str, int, int] | None, MouthPredictor | None]:
    stamp = _stamp(DEFAULT_CHECKPOINT)
    if stamp is None:
        return None, None
    try:
        return stamp, MouthPredictor.load(DEFAULT_CHECKPOINT, threads=1)
    except MouthModelError:
        return None, None  # the worker will load (and report) it itself


_STAMP, _PREDICTOR = _load_default()


def predictor(checkpoint: Path | None) -> MouthPredictor:
    """The predictor for ``checkpoint`` (None: the default), preloaded if still current."""
    path = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    if _PREDICTOR is not None and _stamp(path) == _STAMP:
        return _PREDICTOR
    return MouthPredictor.load(path, threads=1)
