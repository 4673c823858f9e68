"""The job log: one line per job event in a rotating file.

Lines look like ``2025-01-31T12:00:00.123Z item_done batch=… item=… video="a.mp4" seconds=4.2``
so ``tail -F data/studio/logs/jobs.log`` and ``grep batch=…`` both work.  Only the
server process writes it (workers report back to the server), so rotation never
races between processes.
"""

from __future__ import annotations

import logging
import logging.handlers
import time
from pathlib import Path


def _value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".")
    text = str(v).replace("\n", " ").replace("\r", " ")
    if not text or any(c in text for c in ' "=\t'):
        return '"' + text.replace('"', "'") + '"'
    return text


def format_event(event: str, fields: dict[str, object], at: float | None = None) -> str:
    at = time.time() if at is None else at
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"
    parts = [stamp, event] + [f"{k}={_value(v)}" for k, v in fields.items() if v is not None]
    return " ".join(parts)


class JobLog:
    def __init__(self, path: Path, max_bytes: int = 2 * 1024 * 1024, backups: int = 3) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A private logger per file: job events must not leak into (or depend on)
        # the application's logging configuration.
        self._logger = logging.Logger(f"lipstream.studio.jobs:{self.path}")
        self._logger.propagate = False
        self._handler = logging.handlers.RotatingFileHandler(
            self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger.addHandler(self._handler)

    def event(self, event: str, **fields: object) -> str:
        line = format_event(event, fields)
        self._logger.log(logging.INFO, line)
        return line

    def tail(self, lines: int) -> list[str]:
        """The last ``lines`` lines, reaching into the previous file after a rotation."""
        lines = max(0, lines)
        out: list[str] = []
        for p in (self.path, self.path.with_name(self.path.name + ".1")):
            if len(out) >= lines:
                break
            out = _last_lines(p, lines - len(out)) + out
        return out

    def close(self) -> None:
        self._handler.close()
        self._logger.removeHandler(self._handler)


def _last_lines(path: Path, n: int, block: int = 16384) -> list[str]:
    """Last ``n`` lines of a file, reading backwards so a big log costs no more than a small one."""
    if n <= 0 or not path.exists():
        return []
    with open(path, "rb") as f:
        f.seek(0, 2)
        pos = f.tell()
        data = b""
        while pos > 0 and data.count(b"\n") <= n:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    text = data.decode("utf-8", errors="replace").splitlines()
    return text[-n:]
