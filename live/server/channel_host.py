"""One public channel served on the node that hosts it: the far end of ``serve --ray``.

The front (``live.server.remote_channels``) relays a channel's HTTP calls here,
so this is the channel's own small server: the usual channel routes, WHEP and
agent sockets over one ``Channel``, answering on the node's address.  The viewer's
media then flows to and from this node directly: its WHEP answer carries this
node's ICE candidates.

Only the front may call it.  Every request must carry the host's secret in
``HOST_KEY_HEADER`` (403 otherwise); the same secret as a bearer token grants
control rights, and the front states the original caller's address in
``PEER_HEADER``, which the ICE guard (``live.rtc.ice_guard``) uses in place of the
front's own.  Nothing here knows about Ray: ``scale.ray_channels`` runs it in an
actor.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from aiohttp import web

from live.http.errors import ApiError, json_errors
from live.http.guard import ACCESS, AccessPolicy, guard
from live.http.sse import setup_sse
from live.server.agent_sockets import setup_agent_sockets
from live.server.channel_routes import setup_channel_routes
from live.server.config import ServerConfig
from live.server.loop_monitor import LoopMonitor
from live.server.remote_channels import HOST_KEY_HEADER, PEER_HEADER
from live.server.routes import CONFIG, DEFAULT_AVATAR, LOOP, REGISTRY, TTS
from live.server.session_registry import SessionRegistry
from live.server.tts_service import TtsService, remote_engines
from live.worker.client import warm_up as warm_up_workers

log = logging.getLogger(__name__)

_LINGER_S = 0.3      # after the channel ends: its event streams send their last event


class _OneChannel(SessionRegistry):
    """The host's registry: one channel, whose end is the host's."""

    def __init__(self) -> None:
        super().__init__(1)
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._channel = None

    def add(self, session) -> None:
        super().add(session)
        self._channel = session

    def release(self, session_id: str) -> None:
        super().release(session_id)
        channel = self._channel
        if channel is not None and channel.id == session_id and not self.ended.done():
            self.ended.set_result(channel.close_reason or "closed")


def _from_front(secret: str):
    @web.middleware
    async def check(request: web.Request, handler) -> web.StreamResponse:
        given = request.headers.get(HOST_KEY_HEADER, "")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), secret.encode()):
            raise ApiError("this is a channel host: call the lipstream front instead", status=403)
        peer = request.headers.get(PEER_HEADER)
        if peer:
            request = request.clone(remote=peer[:64])
        return await handler(request)
    return check


class ChannelHost:
    """The server of one channel on this node (all methods run on one event loop)."""

    def __init__(self, config: ServerConfig, secret: str) -> None:
        self.config = config
        self.secret = secret
        self._runner: web.AppRunner | None = None
        self._registry: _OneChannel | None = None

    async def start(self, bind_host: str) -> int:
        """Serve on ``bind_host`` (a free port, returned) once the engine's process server is up."""
        await asyncio.get_running_loop().run_in_executor(None, warm_up_workers)
        self._registry = _OneChannel()
        app = self._app(self._registry)
        self._runner = web.AppRunner(app, shutdown_timeout=2.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, bind_host, 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def wait_closed(self) -> str:
        """Until the channel has ended (deleted, or its engine failed); why it ended."""
        assert self._registry is not None
        return await asyncio.shield(self._registry.ended)

    async def stop(self) -> None:
        if self._registry is not None:
            await self._registry.close_all("its host is stopping")
            await asyncio.sleep(_LINGER_S)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _app(self, registry: _OneChannel) -> web.Application:
        config = self.config
        app = web.Application(middlewares=[json_errors, _from_front(self.secret), guard],
                              client_max_size=config.max_upload_bytes + (1 << 20))
        app[ACCESS] = AccessPolicy(token=self.secret, loopback=False, max_body=config.max_upload_bytes + (1 << 20))
        app[CONFIG] = config
        setup_sse(app)
        app[REGISTRY] = registry
        app[TTS] = TtsService.default(config.piper_voice_files, remote_engines(config.openai_tts),
                                      config.tts_threads, config.tts_onnx_threads)
        app[LOOP] = LoopMonitor()
        ready = asyncio.get_running_loop().create_future()
        ready.set_result("default")   # the front shipped the avatar into this node's cache
        app[DEFAULT_AVATAR] = ready

        async def lifetime(app: web.Application):
            app[LOOP].start()
            tts_warm = asyncio.ensure_future(app[TTS].warm_up())   # the first /say needs no voice loading
            yield
            tts_warm.cancel()
            await app[LOOP].stop()
            await registry.close_all("its host is stopping")
            await app[TTS].aclose()

        app.cleanup_ctx.append(lifetime)
        setup_channel_routes(app)
        setup_agent_sockets(app)
        return app
