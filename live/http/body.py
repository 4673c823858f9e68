"""Small request bodies and parameters, read with limits.

A JSON body is at most :data:`MAX_JSON_BYTES` (a declared larger
``Content-Length`` is refused before a byte is read), at most
:data:`MAX_JSON_DEPTH` levels deep, and holds no number a handler could choke
on: no NaN/Infinity, no integer longer than 18 digits.  Numbers taken from a
body or a query string are range-checked here, and ``true`` is not a number
(in Python ``bool`` is an ``int``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from aiohttp import web

from live.http.errors import ApiError

MAX_JSON_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32
_MAX_INT_DIGITS = 18
_INT = re.compile(r"-?[0-9]{1,%d}" % _MAX_INT_DIGITS)


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise ApiError(f"number too large in the JSON body ({len(text)} digits)")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ApiError("number out of range in the JSON body")
    return value


def _no_constant(name: str) -> float:
    raise ApiError(f"{name} is not valid JSON")


def _depth_ok(value: Any) -> bool:
    todo = [(value, 1)]
    while todo:
        v, depth = todo.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        if isinstance(v, dict):
            todo.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            todo.extend((x, depth + 1) for x in v)
    return True


def parse_json(raw: bytes) -> Any:
    try:
        value = json.loads(raw.decode("utf-8"), parse_int=_parse_int, parse_float=_parse_float,
                           parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError):
        raise ApiError("the body must be valid JSON (UTF-8)") from None
    except RecursionError:
        raise ApiError(f"the JSON body is nested too deeply (max {MAX_JSON_DEPTH} levels)") from None
    if not _depth_ok(value):
        raise ApiError(f"the JSON body is nested too deeply (max {MAX_JSON_DEPTH} levels)")
    return value


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it (or its declared length) passes ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(f"the body is {request.content_length} bytes; the limit is {limit}", status=413)
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 14):
        data += chunk
        if len(data) > limit:
            raise ApiError(f"the body is larger than the limit of {limit} bytes", status=413)
    return bytes(data)


async def read_json(request: web.Request, *, optional: bool = False) -> dict:
    """A JSON object body.  ``optional``: an empty body reads as ``{}``."""
    if optional and not request.body_exists:
        return {}
    if request.content_type != "application/json":
        raise ApiError('send the body as JSON with "Content-Type: application/json"', status=415)
    raw = await read_limited(request, MAX_JSON_BYTES)
    if optional and not raw.strip():
        return {}
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError("the body must be a JSON object")
    return body


def json_number(body: dict, name: str, lo: float, hi: float) -> float | None:
    """``body[name]`` as a number in [lo, hi], or None when absent/null."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ApiError(f"{name} must be a number between {lo:g} and {hi:g}")
    return float(value)


def json_string(body: dict, name: str, *, required: bool = False, max_len: int | None = None) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ApiError(f'"{name}" is required and must be a string' if required else f'"{name}" must be a string')
    if max_len is not None and len(value) > max_len:
        raise ApiError(f'"{name}" is too long ({len(value)} characters, max {max_len})', status=413)
    return value


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter in [lo, hi]; anything else is a 400."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not _INT.fullmatch(raw.strip()):
        raise ApiError(f"{name} must be an integer between {lo} and {hi}")
    value = int(raw.strip())
    if not lo <= value <= hi:
        raise ApiError(f"{name} must be an integer between {lo} and {hi}")
    return value
