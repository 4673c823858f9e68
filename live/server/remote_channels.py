"""Channels hosted on other machines (``serve --ray``): the front's side.

With a ``ChannelCluster`` configured, ``POST /channels`` asks the cluster for a
node with room and starts the channel there, in its own small server
(``live.server.channel_host``).  Every later call for that channel -- say, audio,
interrupt, PATCH, DELETE, events, outputs, viewers, WHEP, the agent sockets -- is
relayed to it by ``relay`` (a middleware placed after the guard, so the front's
token and Origin rules apply first).  The front only relays a WHEP offer and its
answer: the answer carries the hosting node's ICE candidates, and the media flows
between the viewer and that node.  The host is told the caller's address, for the
ICE guard (a caller on the front's own machine stands for that machine's cluster
address).

When the cluster reports the host gone (its node died), the channel's open event
streams get an ``error`` event and ``closed``, and the channel is forgotten.
Nothing here imports Ray: ``scale.ray_channels`` implements ``ChannelCluster``, and
``run_live.py`` wires it in.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

import aiohttp
from aiohttp import WSMsgType, web

from live.http.errors import ApiError
from live.http.guard import PUBLIC, VIEWER, viewer_rights
from live.rtc.ice_guard import parse_ip
from live.server.config import ServerConfig
from live.server.events import Event
from live.server.routes import CONFIG

log = logging.getLogger(__name__)

# What a channel host (live.server.channel_host) reads from the front: its secret, and the caller's address.
HOST_KEY_HEADER = "X-Lipstream-Host-Key"
PEER_HEADER = "X-Lipstream-Peer"
LOST_MESSAGE = "the machine hosting this channel was lost: the channel has ended"
_KEPT_HEADERS = ("Content-Type", "Location", "Allow", "WWW-Authenticate", "Cache-Control", "Content-Disposition",
                 "Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
                 "Access-Control-Expose-Headers")
_CALL_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10.0)
_WS_MAX_MESSAGE = 1 << 20
_VERDICT_S = 60.0     # a host whose stream broke: how long to wait for the cluster to say it is gone


class Hosted(Protocol):
    """A channel's host, as the cluster started it."""

    node_id: str
    url: str          # http://node:port of its channel host
    secret: str       # what the front shows it (live.server.channel_host)


class Ending(Protocol):
    reason: str
    lost: bool        # the host died (its node, or its process), as opposed to the channel ending


class ChannelCluster(Protocol):
    """Where channels run when they don't run here (``scale.ray_channels.RayChannelCluster``)."""

    front_address: str   # this machine's address as the cluster's nodes see it

    async def open(self, config: ServerConfig, avatar_id: str) -> Hosted | None:
        """A started host for one channel on a node with room; None when no node has room.
        Raises RuntimeError (a readable message) when the host did not start."""

    async def wait_ended(self, hosted: Hosted) -> Ending:
        """Until the host's channel ends, or the host is lost."""

    async def close(self, hosted: Hosted) -> None:
        """Stop the host and free its share of the cluster (idempotent)."""


@dataclass
class RemoteChannel:
    channel_id: str
    hosted: Hosted
    view_key: str
    lost: asyncio.Event = field(default_factory=asyncio.Event)


class RemoteChannels:
    """The front's table of channels hosted elsewhere, and the relay to them."""

    def __init__(self, cluster: ChannelCluster) -> None:
        self.cluster = cluster
        self._channels: dict[str, RemoteChannel] = {}
        self._watchers: set[asyncio.Task] = set()
        self._http: aiohttp.ClientSession | None = None

    def get(self, channel_id: str) -> RemoteChannel | None:
        return self._channels.get(channel_id)

    def __len__(self) -> int:
        return len(self._channels)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=_CALL_TIMEOUT, auto_decompress=False)
        return self._http

    # -- POST /channels, GET /channels ---------------------------------------------

    async def create(self, request: web.Request, body: dict, avatar: str) -> web.Response:
        """``POST /channels`` with a checked ``body`` (its avatar ready here, as ``avatar``)."""
        # The front's hooks (factories, the cluster itself) stay here; the rest travels to the node.
        config = replace(request.app[CONFIG], studio_backend=None, channel_cluster=None)
        try:
            hosted = await self.cluster.open(config, avatar)
        except RuntimeError as e:
            raise ApiError(str(e), status=503, reason="start_failed") from None
        if hosted is None:
            raise ApiError("no machine of the cluster has room for another channel; try again later", status=503,
                           reason="capacity")
        try:
            async with self._session().post(hosted.url + "/channels", json=body,
                                            headers=self._host_headers(hosted, request, operator=True)) as up:
                status, info = up.status, await up.json(content_type=None)
        except BaseException as e:
            await asyncio.shield(self.cluster.close(hosted))
            if isinstance(e, (aiohttp.ClientError, ValueError)):
                log.error("channel host on node %s at %s: %s", hosted.node_id, hosted.url, e)
                raise ApiError("the machine chosen for this channel cannot be reached from this one", status=503,
                               reason="host_unreachable") from None
            raise
        if status != 201:
            await self.cluster.close(hosted)
            return web.json_response(info, status=status)
        channel = RemoteChannel(info["channel_id"], hosted, info["view_key"])
        self._channels[channel.channel_id] = channel
        watcher = asyncio.create_task(self._watch(channel), name=f"watch-{channel.channel_id}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        log.info("channel %s (%s) started on node %s", channel.channel_id, info.get("name"), hosted.node_id)
        return web.json_response({**info, "node_id": hosted.node_id}, status=201,
                                 headers={"Location": f"/channels/{channel.channel_id}"})

    async def infos(self) -> list[dict]:
        """Every hosted channel's info (one that does not answer is left out)."""
        async def one(channel: RemoteChannel) -> dict | None:
            try:
                async with self._session().get(f"{channel.hosted.url}/channels/{channel.channel_id}",
                                               headers=self._host_headers(channel.hosted, None, operator=True),
                                               timeout=aiohttp.ClientTimeout(total=5.0)) as up:
                    if up.status != 200:
                        return None
                    return {**await up.json(), "node_id": channel.hosted.node_id}
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                return None
        found = await asyncio.gather(*(one(c) for c in list(self._channels.values())))
        return [info for info in found if info is not None]

    async def close_all(self) -> None:
        """The front is stopping: its channels end with it."""
        channels = list(self._channels.values())
        self._channels.clear()
        await asyncio.gather(*(self.cluster.close(c.hosted) for c in channels), return_exceptions=True)
        for task in list(self._watchers):
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def _watch(self, channel: RemoteChannel) -> None:
        ending = await self.cluster.wait_ended(channel.hosted)
        if ending.lost:
            log.warning("channel %s lost with its host on node %s: %s", channel.channel_id,
                        channel.hosted.node_id, ending.reason)
            channel.lost.set()
        self._channels.pop(channel.channel_id, None)
        await self.cluster.close(channel.hosted)

    # -- the relay -------------------------------------------------------------------

    @web.middleware
    async def relay(self, request: web.Request, handler) -> web.StreamResponse:
        channel = self._channels.get(request.match_info.get("channel_id", ""))
        route = getattr(request.match_info.handler, "lipstream_access", None)
        if channel is None or (route is not None and route.level == PUBLIC):
            return await handler(request)   # a channel of this machine, or a page
        try:
            operator = viewer_rights(request, channel.view_key) if route is not None and route.level == VIEWER else True
        except ApiError as e:
            from live.server.channel_routes import whep_delete, whep_error, whep_offer   # it imports this module
            if request.match_info.handler in (whep_offer, whep_delete):
                return whep_error(e)   # the player is on another origin: it must be able to read why
            raise
        headers = self._host_headers(channel.hosted, request, operator, view_key=channel.view_key)
        query = {k: v for k, v in request.query.items() if k not in ("token", "key")}
        url = channel.hosted.url + request.path
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._relay_socket(request, channel, url, query, headers)
        if "Content-Type" in request.headers:
            headers["Content-Type"] = request.headers["Content-Type"]
        try:
            async with self._session().request(request.method, url, params=query, headers=headers,
                                               data=request.content if request.body_exists else None) as up:
                if up.content_type == "text/event-stream":
                    return await self._relay_events(request, channel, up)
                body = await up.read()
                kept = {k: up.headers[k] for k in _KEPT_HEADERS if k in up.headers}
                return web.Response(body=body, status=up.status, headers=kept)
        except aiohttp.ClientError:
            raise ApiError("the machine hosting this channel does not answer", status=503,
                           reason="host_unreachable") from None

    def _host_headers(self, hosted: Hosted, request: web.Request | None, operator: bool,
                      view_key: str = "") -> dict[str, str]:
        headers = {HOST_KEY_HEADER: hosted.secret,
                   "Authorization": f"Bearer {hosted.secret if operator else view_key}"}
        if request is not None:
            headers[PEER_HEADER] = self._peer(request)
        return headers

    def _peer(self, request: web.Request) -> str:
        """The caller's address for the host's ICE guard: a caller on this machine stands for it."""
        ip = parse_ip(request.remote)
        if ip is None or ip.is_loopback:
            return self.cluster.front_address
        return str(ip)

    async def _relay_events(self, request: web.Request, channel: RemoteChannel,
                            up: aiohttp.ClientResponse) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        lost = asyncio.ensure_future(channel.lost.wait())
        try:
            while True:
                chunk = asyncio.ensure_future(up.content.readany())
                await asyncio.wait({chunk, lost}, return_when=asyncio.FIRST_COMPLETED)
                if not chunk.done():
                    chunk.cancel()
                    break
                try:
                    data = chunk.result()
                except (aiohttp.ClientError, ConnectionError):
                    # The stream broke: the host is gone, or the link hiccupped (then the client reconnects).
                    try:
                        await asyncio.wait_for(asyncio.shield(lost), _VERDICT_S)
                    except asyncio.TimeoutError:
                        return resp
                    break
                if not data:
                    return resp   # the channel ended and said so ("closed")
                await resp.write(data)
            await resp.write(Event("error", {"message": LOST_MESSAGE}).encode())
            await resp.write(Event("closed", {"reason": "host lost"}).encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass   # the client left, or the front is stopping
        finally:
            lost.cancel()
        return resp

    async def _relay_socket(self, request: web.Request, channel: RemoteChannel, url: str, query: dict,
                            headers: dict[str, str]) -> web.StreamResponse:
        try:
            up = await self._session().ws_connect(url, params=query, headers=headers, heartbeat=20.0,
                                                  max_msg_size=_WS_MAX_MESSAGE)
        except aiohttp.WSServerHandshakeError as e:
            raise ApiError(e.message or "refused by the channel's host", status=e.status) from None
        except aiohttp.ClientError:
            raise ApiError("the machine hosting this channel does not answer", status=503) from None
        down = web.WebSocketResponse(heartbeat=20.0, max_msg_size=_WS_MAX_MESSAGE)
        try:
            await down.prepare(request)
            pumps = [asyncio.create_task(_pump_socket(down, up)), asyncio.create_task(_pump_socket(up, down)),
                     asyncio.create_task(channel.lost.wait())]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            if channel.lost.is_set() and not down.closed:
                await down.send_json({"type": "error", "message": LOST_MESSAGE})
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            await up.close()
            await down.close()
        return down


async def _pump_socket(source: Any, sink: Any) -> None:
    """Messages from one WebSocket to the other, until one side closes."""
    async for msg in source:
        if msg.type == WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        else:
            break


REMOTE_CHANNELS: web.AppKey[RemoteChannels] = web.AppKey("lipstream_remote_channels", RemoteChannels)


def setup_remote_channels(app: web.Application, cluster_factory: Callable[[], ChannelCluster]) -> None:
    """Host this app's channels on a cluster (call after the guard middleware is in place)."""
    remote = app[REMOTE_CHANNELS] = RemoteChannels(cluster_factory())
    app.middlewares.append(remote.relay)

    async def end_channels(app: web.Application) -> None:
        await remote.close_all()

    app.on_shutdown.append(end_channels)
