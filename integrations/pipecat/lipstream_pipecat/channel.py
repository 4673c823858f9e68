"""The lipstream server's channel API, as far as the pipecat service needs it.

Only HTTP: create or look up a channel, end it, and the URLs and headers of its
sockets and WHEP resource.  The token (``Authorization: Bearer``) is required by
a server that listens beyond loopback; on loopback it may be left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import aiohttp


class LipstreamError(RuntimeError):
    """The lipstream server refused a request; the message is the server's own."""


@dataclass(frozen=True)
class ChannelInfo:
    channel_id: str
    width: int
    height: int
    fps: float
    view_key: str | None


@dataclass(frozen=True)
class LipstreamServer:
    """Where the server is and how to authenticate to it."""

    base_url: str                 # "http://127.0.0.1:8080"
    token: str | None = None      # the server's control token (required off loopback)

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def ws_url(self, path: str) -> str:
        base = self.base_url.rstrip("/")
        if base.startswith("https://"):
            return "wss://" + base[len("https://"):] + path
        if base.startswith("http://"):
            return "ws://" + base[len("http://"):] + path
        raise ValueError(f"base_url must start with http:// or https://, not {self.base_url[:40]!r}")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @staticmethod
    def channel_path(channel_id: str) -> str:
        return f"/channels/{quote(channel_id, safe='')}"


async def _json(resp: aiohttp.ClientResponse) -> dict:
    try:
        body = await resp.json()
    except (aiohttp.ContentTypeError, ValueError):
        body = {"error": (await resp.text())[:200]}
    if resp.status >= 400:
        raise LipstreamError(f"{resp.method} {resp.url.path}: {resp.status} {body.get('error', body)}")
    return body


def _info(body: dict) -> ChannelInfo:
    return ChannelInfo(str(body["channel_id"]), int(body.get("width") or 0), int(body.get("height") or 0),
                       float(body.get("fps") or 25.0), body.get("view_key"))


async def create_channel(http: aiohttp.ClientSession, server: LipstreamServer, *, name: str | None = None,
                         avatar: str | None = None, voice: str | None = None) -> ChannelInfo:
    spec = {k: v for k, v in {"name": name, "avatar": avatar, "voice": voice}.items() if v is not None}
    async with http.post(server.url("/channels"), json=spec, headers=server.headers()) as resp:
        return _info(await _json(resp))


async def get_channel(http: aiohttp.ClientSession, server: LipstreamServer, channel_id: str) -> ChannelInfo:
    async with http.get(server.url(server.channel_path(channel_id)), headers=server.headers()) as resp:
        return _info(await _json(resp))


async def end_channel(http: aiohttp.ClientSession, server: LipstreamServer, channel_id: str) -> None:
    async with http.delete(server.url(server.channel_path(channel_id)), headers=server.headers()) as resp:
        if resp.status not in (200, 404):
            await _json(resp)
