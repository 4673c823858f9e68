"""A ZIP of results, produced as a stream of chunks.

The archive is never built on disk or in memory: ``zipfile`` writes into a sink
that the caller drains after every chunk, using data descriptors (the format's
way to write an entry whose size is known only afterwards).  Videos are already
compressed, so entries are stored, which keeps the cost at a CRC per byte.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from studio.storage import unique_name

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ZipEntry:
    arcname: str      # name inside the archive
    path: Path        # file on disk


class _Sink(io.RawIOBase):
    """Write-only, non-seekable buffer that zipfile writes into and we drain."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        data = bytes(b)
        self._chunks.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def drain(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def iter_zip(entries: list[ZipEntry], chunk_size: int = CHUNK) -> Iterator[bytes]:
    """Bytes of a ZIP containing ``entries``, about ``chunk_size`` at a time."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for entry in entries:
            info = zipfile.ZipInfo.from_file(entry.path, entry.arcname)
            info.compress_type = zipfile.ZIP_STORED
            big = info.file_size >= zipfile.ZIP64_LIMIT
            with open(entry.path, "rb") as src, zf.open(info, "w", force_zip64=big) as dst:
                while data := src.read(chunk_size):
                    dst.write(data)
                    yield sink.drain()
            yield sink.drain()
    tail = sink.drain()
    if tail:
        yield tail


def unique_arcnames(names: list[str]) -> list[str]:
    """The same names, with ``-2``, ``-3`` ... added where they repeat."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate = unique_name(name, seen)
        seen.add(candidate)
        out.append(candidate)
    return out
