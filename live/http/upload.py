"""Uploads streamed to disk under a size limit: one helper for every upload route.

Multipart bodies: a part with a file name is a file, written where ``dest``
says; a part without one is a short UTF-8 text field.  Everything a client
controls is checked before use: the boundary, the file names (no NUL or control
characters; only the base name is kept), the text fields (no binary), the
number of files and each file's size.  A refused upload leaves nothing on disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import HttpProcessingError

from live.http.errors import ApiError

T = TypeVar("T")

_CHUNK = 1 << 16
_HEAD = 512
MAX_TEXT_FIELD = 4096
MAX_TEXT_FIELDS = 20
_MULTIPART_OVERHEAD = 1 << 20
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class SavedFile:
    filename: str     # the client's base name ("" for a raw body)
    path: Path
    size: int
    head: bytes       # the first bytes, to sniff the format


@dataclass
class Upload:
    files: list[SavedFile] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        for f in self.files:
            _remove(f.path)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()   # a per-file folder (studio) goes with its file; a shared one stays
    except OSError:
        pass


async def _parsing(step: Awaitable[T]) -> T:
    """A step of aiohttp's multipart parser: its complaints about the body are the client's 400."""
    try:
        return await step
    except (ValueError, LookupError, AssertionError, HttpProcessingError) as e:
        raise ApiError(f"malformed multipart body ({type(e).__name__})") from None


def _client_filename(raw: str) -> str:
    if _CONTROL.search(raw):
        raise ApiError("the file name contains control characters")
    return raw.replace("\\", "/").rsplit("/", 1)[-1].strip()


async def _copy(read_chunk: Callable[[], Awaitable[bytes]], path: Path, max_bytes: int) -> tuple[int, bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    size, head = 0, b""
    try:
        with open(path, "wb") as out:
            while chunk := await read_chunk():
                size += len(chunk)
                if size > max_bytes:
                    raise ApiError(f"the upload is larger than the limit of {max_bytes} bytes", status=413)
                if len(head) < _HEAD:
                    head += chunk[: _HEAD - len(head)]
                out.write(chunk)
    except BaseException:
        _remove(path)
        raise
    if size == 0:
        _remove(path)
        raise ApiError("the uploaded file is empty")
    return size, head


def _refuse_declared_size(request: web.Request, limit: int) -> None:
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(f"the upload is {request.content_length} bytes; the limit is {limit}", status=413)


async def receive_multipart(request: web.Request, dest: Callable[[str], Path], max_bytes: int, *,
                            max_files: int = 1, file_field: str | None = None) -> Upload:
    """Save the file parts of a multipart/form-data body.

    ``dest(filename)`` gives the path for each file (its folder is created);
    ``max_bytes`` is per file; ``file_field`` keeps only files of that field
    (others are skipped).  At least one file must arrive.
    """
    _refuse_declared_size(request, max_bytes * max_files + _MULTIPART_OVERHEAD)
    if request.content_type != "multipart/form-data":
        raise ApiError('send the file(s) as multipart/form-data', status=415)
    if not _has_boundary(request):
        raise ApiError("the multipart body has no boundary")
    reader = await request.multipart()
    upload = Upload()
    try:
        await _read_parts(reader, upload, dest, max_bytes, max_files, file_field)
    except BaseException:
        upload.discard()
        raise
    if not upload.files:
        raise ApiError(f'no file in the upload (expected a multipart part "{file_field or "file"}" with a file name)')
    return upload


def _has_boundary(request: web.Request) -> bool:
    boundary = parse_mimetype(request.headers.get("Content-Type", "")).parameters.get("boundary", "")
    return 0 < len(boundary) <= 70


async def _read_parts(reader: MultipartReader, upload: Upload, dest: Callable[[str], Path], max_bytes: int,
                      max_files: int, file_field: str | None) -> None:
    while (part := await _parsing(reader.next())) is not None:
        if not isinstance(part, BodyPartReader):
            raise ApiError("nested multipart bodies are not accepted")
        filename = part.filename
        if filename is not None:
            name = _client_filename(filename)
            if file_field is not None and part.name != file_field:
                await _parsing(part.release())
                continue
            if len(upload.files) >= max_files:
                raise ApiError(f"at most {max_files} file(s) per request")
            path = dest(name)
            size, head = await _copy(lambda: _parsing(part.read_chunk(_CHUNK)), path, max_bytes)
            upload.files.append(SavedFile(name, path, size, head))
        else:
            if len(upload.fields) >= MAX_TEXT_FIELDS:
                raise ApiError(f"at most {MAX_TEXT_FIELDS} form fields")
            upload.fields[part.name or ""] = await _text_field(part)


async def _text_field(part: BodyPartReader) -> str:
    raw = bytearray()
    while chunk := await _parsing(part.read_chunk(1024)):
        raw += chunk
        if len(raw) > MAX_TEXT_FIELD:
            raise ApiError(f"form field {part.name!r} is longer than {MAX_TEXT_FIELD} bytes")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(f"form field {part.name!r} is not text") from None
    if _CONTROL.search(text):
        raise ApiError(f"form field {part.name!r} is not text")
    return text


async def receive_body(request: web.Request, path: Path, max_bytes: int) -> SavedFile:
    """Save a raw (non-multipart) body to ``path``."""
    _refuse_declared_size(request, max_bytes)
    size, head = await _copy(lambda: request.content.read(_CHUNK), path, max_bytes)
    return SavedFile("", path, size, head)
