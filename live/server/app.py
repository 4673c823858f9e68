"""The live server: an aiohttp application serving the page, the API and WebRTC.

``python run_live.py`` calls ``serve(ServerConfig(...))``.  At start-up the app
starts the worker forkserver (which imports torch once for all sessions), builds
the default avatar if it isn't cached yet and loads the default TTS voice, all in
the background: ``/health`` answers at once and says when the avatar is ready.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from live.worker import engine_worker
from live.server.avatar_routes import AvatarJobs, setup_avatar_routes
from live.server.config import ServerConfig
from live.server.loop_monitor import LoopMonitor
from live.server.routes import CONFIG, DEFAULT_AVATAR, LOOP, REGISTRY, TTS, json_errors, setup_routes
from live.server.session_registry import SessionRegistry
from live.server.tts_service import TtsService

log = logging.getLogger(__name__)

AVATAR_JOBS: web.AppKey[AvatarJobs] = web.AppKey("lipstream_avatar_jobs", AvatarJobs)


def _build_default_avatar(config: ServerConfig) -> str:
    from models.avatar.avatar import default_avatar

    return default_avatar(config.avatar_dir, fps=config.fps).info.avatar_id


def create_app(config: ServerConfig | None = None) -> web.Application:
    config = config or ServerConfig()
    app = web.Application(middlewares=[json_errors], client_max_size=config.max_upload_bytes + (1 << 20))
    app[CONFIG] = config
    app[REGISTRY] = SessionRegistry(config.max_sessions)
    app[TTS] = TtsService.default(
        config.piper_voice_files, config.http_tts_url, config.tts_threads, config.tts_onnx_threads
    )
    app[AVATAR_JOBS] = AvatarJobs(config)
    app[LOOP] = LoopMonitor()

    async def lifetime(app: web.Application):
        loop = asyncio.get_running_loop()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        # The forkserver imports torch once (seconds); every session's worker forks from it.
        warm = loop.run_in_executor(None, engine_worker.warm_up)
        if config.preload_default_avatar:
            app[DEFAULT_AVATAR] = asyncio.ensure_future(loop.run_in_executor(None, _build_default_avatar, config))
        else:
            app[DEFAULT_AVATAR] = loop.create_future()
            app[DEFAULT_AVATAR].set_result("default")
        tts_warm = asyncio.ensure_future(app[TTS].warm_up())
        await warm
        app[LOOP].start()
        yield
        await app[LOOP].stop()
        tts_warm.cancel()
        await app[REGISTRY].close_all()
        await app[AVATAR_JOBS].close()
        app[TTS].close()

    async def end_sessions(app: web.Application) -> None:
        # Before aiohttp waits for open requests: SSE streams end with their sessions.
        await app[REGISTRY].close_all()

    app.cleanup_ctx.append(lifetime)
    app.on_shutdown.append(end_sessions)
    setup_routes(app, config)
    setup_avatar_routes(app, config, AVATAR_JOBS)

    from studio.config import StudioConfig
    from studio.routes import setup_studio

    # The studio renders with the same model and shares the avatar cache.
    setup_studio(app, data_dir=config.data_dir,
                 config=StudioConfig(avatar_root=config.avatar_dir, checkpoint=config.mouth_checkpoint,
                                     retention_max_results=config.keep_results,
                                     retention_max_bytes=config.keep_bytes,
                                     retention_max_age_days=config.keep_days))
    return app


def serve(config: ServerConfig | None = None) -> None:
    """Run the server until interrupted (Ctrl-C)."""
    config = config or ServerConfig()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    print(f"lipstream live server on http://{config.host}:{config.port}/  (Ctrl-C to stop)", flush=True)
    web.run_app(create_app(config), host=config.host, port=config.port, print=None, shutdown_timeout=5.0)
