"""Who may call what: the bearer token, the Origin check, body types and sizes.

Every route is one of three kinds, marked on its handler with :func:`access`:

* ``public``  -- the page, its static assets and ``/health``: anyone.
* ``viewer``  -- watching a channel (WHEP, the broadcast page).  The token
  grants it, and so does the channel's own view key (``?key=`` or
  ``Authorization: Bearer <key>``), which a foreign-origin player may use too;
  the handler asks :func:`viewer_rights` which of the two it got.
* ``control`` -- everything else (the default for an unmarked handler).

With a token in force (always when bound to a non-loopback address), a
``viewer``/``control`` request needs ``Authorization: Bearer <token>``.  A GET
that the browser makes by itself -- an ``EventSource``, an ``<img>``/``<video>``
source, a download link -- cannot carry a header, so routes marked
``query_token`` also take ``?token=``; only for GET, so a URL that leaks (history,
a shared link) can read but never change anything.

Whatever the address:

* a browser ``Origin`` other than the server's own is refused (403): no web page
  may drive the server from another origin (no Origin: not a browser);
* a state-changing request with a body must declare a type a browser cannot send
  cross-origin without asking first (JSON, media, SDP) or multipart (415);
* bound to loopback, the ``Host`` must be a loopback name too (403), so a
  DNS-rebinding page that *is* "same origin" still cannot reach the server;
* a declared ``Content-Length`` above the largest upload is refused before reading (413).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from typing import Callable, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from live.http.errors import ApiError

PUBLIC, VIEWER, CONTROL = "public", "viewer", "control"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_BODY_TYPES = frozenset({"application/json", "multipart/form-data", "application/octet-stream", "application/sdp"})
_BODY_FAMILIES = ("audio/", "video/")
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class RouteAccess:
    level: str = CONTROL
    query_token: bool = False


def access(level: str, *, query_token: bool = False) -> Callable[[F], F]:
    """Mark a handler's kind (see the module docstring)."""
    if level not in (PUBLIC, VIEWER, CONTROL):
        raise ValueError(f"unknown access level {level!r}")

    def mark(handler: F) -> F:
        handler.lipstream_access = RouteAccess(level, query_token)  # type: ignore[attr-defined]
        return handler
    return mark


@dataclass(frozen=True)
class AccessPolicy:
    token: str | None     # None: open (loopback only)
    loopback: bool        # bound to a loopback address
    max_body: int         # the largest body any route accepts


ACCESS: web.AppKey[AccessPolicy] = web.AppKey("lipstream_access", AccessPolicy)
_OPERATOR: web.RequestKey[bool] = web.RequestKey("lipstream_operator", bool)   # a viewer route called with control rights


def viewer_rights(request: web.Request, view_key: str) -> bool:
    """For a ``viewer`` route: True for the operator (token, or an open loopback server, same
    origin), False for a viewer holding ``view_key``; anyone else gets 401/403."""
    if request.get(_OPERATOR):
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    given = value.strip() if scheme.lower() == "bearer" and value.strip() else request.query.get("key")
    if given is not None and _authorized(given, view_key):
        return False
    origin = request.headers.get("Origin")
    if origin is not None and not _same_origin(origin, request.host):
        raise ApiError("a cross-origin player needs the channel's view key (?key=)", status=403)
    raise ApiError("a token or the channel's view key (?key=) is required", status=401)


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_token(token: str) -> str:
    """A token given by the operator: printable, no spaces, long enough not to guess."""
    if not 16 <= len(token) <= 256 or not set(token) <= _TOKEN_CHARS:
        raise ValueError("the token must be 16 to 256 characters of A-Z a-z 0-9 - . _ ~ + / =")
    return token


def resolve_token(host: str, token: str | None) -> str | None:
    """The token in force: the operator's, else a fresh one unless bound to loopback."""
    if token:
        return check_token(token)
    return None if is_loopback(host) else secrets.token_urlsafe(24)


def _route_access(request: web.Request) -> RouteAccess | None:
    """None for a request that matched no route (it answers 404/405 by itself)."""
    info = request.match_info
    if info.http_exception is not None:
        return None
    if isinstance(info.route.resource, web.StaticResource):
        # aiohttp's file handler answers a name longer than the file system allows with a 500.
        if any(len(part.encode()) > 255 for part in info.get("filename", "").split("/")):
            raise web.HTTPNotFound()
        return RouteAccess(PUBLIC)
    return getattr(info.handler, "lipstream_access", RouteAccess(CONTROL))


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _same_origin(origin: str, host_header: str) -> bool:
    # The scheme is not compared: behind a TLS proxy the page is https and the request reaches us as http.
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc.lower() == host_header.lower()


def _bearer(request: web.Request, route: RouteAccess) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if route.query_token and request.method in ("GET", "HEAD"):
        return request.query.get("token")
    return None


def _authorized(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


@web.middleware
async def guard(request: web.Request, handler) -> web.StreamResponse:
    policy = request.app[ACCESS]
    if request.content_length is not None and request.content_length > policy.max_body:
        raise ApiError(f"the body is {request.content_length} bytes; the limit is {policy.max_body}", status=413)
    if policy.loopback and not is_loopback(_host_name(request.host)):
        raise ApiError("this server only answers to a loopback host name (127.0.0.1, localhost)", status=403)
    route = _route_access(request)
    if route is None or route.level == PUBLIC:
        return await handler(request)
    origin = request.headers.get("Origin")
    if route.level == VIEWER:
        foreign = origin is not None and not _same_origin(origin, request.host)
        request[_OPERATOR] = not foreign and (policy.token is None or _authorized(_bearer(request, route), policy.token))
        if request.method in STATE_CHANGING and request.body_exists:
            _check_body_type(request)
        return await handler(request)
    if origin is not None and not _same_origin(origin, request.host):
        raise ApiError(f"cross-origin requests are not allowed (Origin {origin[:100]!r})", status=403)
    if policy.token is not None and not _authorized(_bearer(request, route), policy.token):
        return web.json_response({"error": "a token is required: send Authorization: Bearer <token>"},
                                 status=401, headers={"WWW-Authenticate": 'Bearer realm="lipstream"'})
    if request.method in STATE_CHANGING and request.body_exists:
        _check_body_type(request)
    return await handler(request)


def _check_body_type(request: web.Request) -> None:
    # aiohttp reads a missing Content-Type as application/octet-stream; a browser can send that cross-origin.
    ctype = request.content_type if "Content-Type" in request.headers else ""
    if ctype not in _BODY_TYPES and not ctype.startswith(_BODY_FAMILIES):
        raise ApiError(f"unsupported Content-Type {ctype!r}: send application/json, multipart/form-data "
                       "or an audio/video file", status=415)


class QuietAccessLogger(AbstractAccessLogger):
    """The access log without query strings: a ``?token=`` must not end up in a log file."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info('%s "%s %s" %s %.3fs', request.remote, request.method, request.path,
                         response.status, time)
