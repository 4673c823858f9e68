"""RTMP ingest URLs: checked before anything connects, and never shown whole.

The last path segment of an ingest URL (and any query) is the platform's stream
key, a secret that lets anyone broadcast on the user's account.  It must not reach
the UI, SSE events or logs, and FFmpeg's error messages quote the URL they failed
on, so every message that leaves an output goes through ``redact``.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
SCHEMES = ("rtmp", "rtmps")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f\s]")


def validate_output_url(url: object) -> str:
    """The URL itself when it is a usable rtmp:// or rtmps:// ingest URL; ``ValueError`` (say why) otherwise."""
    if not isinstance(url, str) or not url:
        raise ValueError("url must be a non-empty string")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"url is longer than {MAX_URL_LENGTH} characters")
    if _FORBIDDEN_CHARS.search(url):
        raise ValueError("url must not contain spaces or control characters")
    # FFmpeg matches protocol names case-sensitively: only the lower-case spelling works.
    if not url.startswith(tuple(f"{s}://" for s in SCHEMES)):
        raise ValueError("url must start with rtmp:// or rtmps://")
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError("url has an invalid port") from None
    if not host:
        raise ValueError("url has no host")
    if port == 0:
        raise ValueError("url has an invalid port")
    if not re.fullmatch(r"[A-Za-z0-9.\-_:\[\]%]+", parts.netloc.rsplit("@", 1)[-1]):
        raise ValueError("url has an invalid host")
    if parts.fragment:
        raise ValueError("url must not have a #fragment")
    if not parts.path.strip("/"):
        raise ValueError("url has no application path (rtmp://host/app/stream-key)")
    return url


def _mask(secret: str) -> str:
    return (secret[:2] + "***") if secret else ""


def mask_url(url: str) -> str:
    """The URL with its stream key (and password, query) masked: ``rtmp://host/app/ab***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    path = parts.path
    head, sep, key = path.rpartition("/")
    if sep and head.strip("/"):     # app/key: the key is the last segment
        path = f"{head}/{_mask(key)}"
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{netloc}{path}{query}"


def redact(text: str, url: str) -> str:
    """``text`` (an error message, a log line) with the URL and its secrets masked."""
    parts = urlsplit(url)
    key = parts.path.rpartition("/")[2] if parts.path.strip("/").count("/") else ""
    secrets = [url, parts.query, parts.password or "", key]
    for s in sorted((s for s in secrets if len(s) >= 3), key=len, reverse=True):
        text = text.replace(s, mask_url(url) if s == url else "***")
    return text
