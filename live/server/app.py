"""The live server: an aiohttp application serving the page, the API and WebRTC.

``python run_live.py`` calls ``serve(ServerConfig(...))``.  At start-up the app
starts the worker forkserver (which imports torch once for all sessions), builds
the default avatar if it isn't cached yet and loads the default TTS voice, all in
the background: ``/health`` answers at once and says when the avatar is ready.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from aiohttp import web

from live.http.errors import json_errors
from live.http.guard import ACCESS, AccessPolicy, QuietAccessLogger, guard, is_loopback, resolve_token
from live.http.sse import setup_sse
from live.rtc.aiortc_hooks import check_versions as check_aiortc_versions
from live.server.agent_sockets import setup_agent_sockets
from live.server.avatar_routes import AvatarJobs, setup_avatar_routes
from live.server.channel_routes import setup_channel_routes
from live.server.config import ServerConfig
from live.server.loop_monitor import LoopMonitor
from live.server.routes import CONFIG, DEFAULT_AVATAR, LOOP, REGISTRY, TTS, setup_routes
from live.server.session_registry import SessionRegistry
from live.server.tts_service import TtsService, remote_engines
from live.worker.client import warm_up as warm_up_workers

log = logging.getLogger(__name__)

AVATAR_JOBS: web.AppKey[AvatarJobs] = web.AppKey("lipstream_avatar_jobs", AvatarJobs)


def _build_default_avatar(config: ServerConfig) -> str:
    from models.avatar.avatar import default_avatar

    return default_avatar(config.avatar_dir, fps=config.fps).info.avatar_id


class StartupError(Exception):
    """The server cannot start; the message is for the operator (run_live.py prints it as ``error: …``)."""


def check_writable(folder: Path) -> None:
    """Create ``folder`` and write (and sync) a probe file in it: a read-only or full disk fails here,
    at start-up, rather than as a traceback in the middle of the first request."""
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise StartupError(f"cannot write to the data directory {folder}: {e.strerror or e}") from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass


def create_app(config: ServerConfig | None = None) -> web.Application:
    config = config or ServerConfig()
    from studio.config import StudioConfig
    from studio.routes import setup_studio

    studio_config = StudioConfig(avatar_root=config.avatar_dir, checkpoint=config.mouth_checkpoint,
                                 retention_max_results=config.keep_results,
                                 retention_max_bytes=config.keep_bytes,
                                 retention_max_age_days=config.keep_days,
                                 piper_voice_files=tuple(config.piper_voice_files),
                                 remote_voices=remote_engines(config.openai_tts),
                                 render_backend=config.studio_backend)
    # Outermost first: errors become JSON, then the guard decides who may call what.
    app = web.Application(middlewares=[json_errors, guard], client_max_size=config.max_upload_bytes + (1 << 20))
    try:
        token = resolve_token(config.host, config.token)
    except ValueError as e:   # an operator's malformed --token / LIPSTREAM_TOKEN: one line, no traceback
        raise StartupError(str(e)) from None
    app[ACCESS] = AccessPolicy(
        token=token,
        loopback=is_loopback(config.host),
        max_body=max(config.max_upload_bytes, studio_config.max_upload_bytes) + (1 << 20),
    )
    app[CONFIG] = config
    setup_sse(app)
    app[REGISTRY] = SessionRegistry(config.max_sessions)
    app[TTS] = TtsService.default(   # the studio speaks with the same remote engines
        config.piper_voice_files, studio_config.remote_voices, config.tts_threads, config.tts_onnx_threads
    )
    app[AVATAR_JOBS] = AvatarJobs(config)
    app[LOOP] = LoopMonitor()

    async def lifetime(app: web.Application):
        loop = asyncio.get_running_loop()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        # The forkserver imports torch once (seconds); every session's worker forks from it.
        check_aiortc_versions()   # warns if aiortc/aioice differ from what the hooks were tested with
        warm = loop.run_in_executor(None, warm_up_workers)
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
        await app[TTS].aclose()

    async def end_sessions(app: web.Application) -> None:
        # Before aiohttp waits for open requests: SSE streams end with their sessions.
        await app[REGISTRY].close_all()

    app.cleanup_ctx.append(lifetime)
    app.on_shutdown.append(end_sessions)
    setup_routes(app, config)
    setup_channel_routes(app)
    if config.channel_cluster is not None:   # serve --ray: public channels run on the cluster's nodes
        from live.server.remote_channels import setup_remote_channels

        setup_remote_channels(app, config.channel_cluster)
    setup_agent_sockets(app)
    setup_avatar_routes(app, config, AVATAR_JOBS)

    # The studio renders with the same model and shares the avatar cache.
    setup_studio(app, data_dir=config.data_dir, config=studio_config)
    return app


def serve(config: ServerConfig | None = None) -> None:
    """Run the server until interrupted (Ctrl-C)."""
    config = config or ServerConfig()
    for folder in dict.fromkeys((config.data_dir, config.avatar_dir)):
        check_writable(folder)
    app = create_app(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    url = f"http://{config.host}:{config.port}/"
    print(f"lipstream live server on {url}  (Ctrl-C to stop)", flush=True)
    token = app[ACCESS].token
    if token is not None:
        # The page takes the token from the address once (#token=, never sent to a server or a log).
        print(f"token: {token}", flush=True)
        print(f"open {url}#token={token}", flush=True)
    try:
        web.run_app(app, host=config.host, port=config.port, print=None, shutdown_timeout=5.0,
                    access_log_class=QuietAccessLogger)
    except OSError as e:
        if e.errno is None or "address" not in str(e).lower():
            raise
        raise StartupError(f"cannot listen on {config.host}:{config.port}: {e.strerror or e}") from None
