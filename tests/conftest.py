"""Shared fixtures: a real live server on a free loopback port with a temporary data dir.

The default avatar is prepared once per test run into a shared cache (it takes a
few seconds) and every server gets its own data directory.  ``make_server``
starts more servers with other settings (capacity, timeouts).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aiohttp import web

from live.server.app import create_app
from live.server.config import ServerConfig


@dataclass
class LiveServer:
    url: str
    app: web.Application
    config: ServerConfig


@pytest.fixture(scope="session")
def avatar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prepared default avatar for the whole test run."""
    from models.avatar.avatar import default_avatar

    root = tmp_path_factory.mktemp("avatars")
    default_avatar(root)
    return root


def _checkpoint() -> Path | None:
    # LIPSTREAM_TEST_CHECKPOINT lets a developer point the suite at another model file.
    value = os.environ.get("LIPSTREAM_TEST_CHECKPOINT")
    return Path(value) if value else None


@pytest.fixture
async def make_server(tmp_path: Path, avatar_root: Path) -> AsyncIterator[Callable[..., Awaitable[LiveServer]]]:
    runners: list[web.AppRunner] = []

    async def start(**overrides) -> LiveServer:
        base = ServerConfig(
            host="127.0.0.1",
            port=0,
            data_dir=tmp_path / f"data{len(runners)}",
            avatar_root=avatar_root,
            mouth_checkpoint=_checkpoint(),
            idle_timeout_s=120.0,
        )
        config = replace(base, **overrides)
        app = create_app(config)
        runner = web.AppRunner(app, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return LiveServer(f"http://127.0.0.1:{port}", app, config)

    yield start
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def live_server(make_server) -> LiveServer:
    return await make_server()


@pytest.fixture(scope="module")
def ray_scratch(tmp_path_factory) -> Iterator[Path]:
    """The Ray nodes' scratch folder (tests/test_ray_*.py): every raylet, and so every worker, is
    started from this process and inherits it."""
    folder = tmp_path_factory.mktemp("ray_scratch")
    old = os.environ.get("LIPSTREAM_RAY_SCRATCH")
    os.environ["LIPSTREAM_RAY_SCRATCH"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("LIPSTREAM_RAY_SCRATCH", None)
    else:
        os.environ["LIPSTREAM_RAY_SCRATCH"] = old
