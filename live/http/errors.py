"""One JSON error layer for every route (live, avatars, studio).

Handlers raise :class:`ApiError` (or an ``aiohttp.web.HTTPException``) for a
request they refuse; the :func:`json_errors` middleware turns it into
``{"error": message}`` with its status.  Anything else is a bug: it is logged
with its traceback and answered with a plain 500 that names neither the
exception nor a server path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal error (see the server log)"


class ApiError(Exception):
    """A request the server refuses; ``status`` is the HTTP status to answer with."""

    status = 400

    def __init__(self, message: str, status: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        self.extra = extra


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _http_exception_message(e: web.HTTPException) -> str:
    # aiohttp's default text is "404: Not Found"; a reason given by our code is the better message.
    if e.text is None or e.text.startswith(f"{e.status}:"):
        return e.reason
    return e.text


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        return json_error(e.status, str(e), **e.extra)
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == "application/json":
            raise
        return web.json_response({"error": _http_exception_message(e)}, status=e.status, headers=_kept_headers(e))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, INTERNAL_ERROR)


def _kept_headers(e: web.HTTPException) -> dict[str, str]:
    # 405 must still say which methods are allowed, 401 how to authenticate.
    return {k: v for k, v in e.headers.items() if k in ("Allow", "WWW-Authenticate")}
