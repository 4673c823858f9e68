"""Live channels on a Ray cluster: each public channel in an actor, on a node with room.

``serve --ray`` gives the live server a ``RayChannelCluster``
(``live.server.remote_channels.ChannelCluster``).  For each ``POST /channels`` it

1. reserves the CPU share one stream needs as a one-bundle placement group:
   Ray answers "placed" within milliseconds when a node has room, so a short
   timeout means "no node has room" (503), however long a host takes to start;
2. starts a ``ChannelActor`` in that bundle.  The actor is an async actor: its
   event loop runs the channel's host (``live.server.channel_host.ChannelHost``,
   handed in by run_live.py: scale never imports the server), whose engine worker
   process runs on that node, and whose WHEP answers carry that node's ICE
   candidates;
3. ships what the node needs and may not have: the prepared avatar (once per
   avatar, through the object store, into the node's scratch cache by content id)
   and the mouth model's weights when they are not the installed default.

Why a share of CPUs and not one: a stream is one engine process plus packetising,
about half a core at 512x512 and 25 fps (BENCHMARKS.md: 4 streams on 2 cores),
and Ray's CPU is a logical count.  Studio renders ask 1 CPU each, so renders and
channels share a node's cores in the same currency.

The front watches each actor with one pending call (``wait_closed``): it returns
when the channel ends, and fails when the actor dies with its node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import ray
from ray.exceptions import RayActorError, RayError
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from scale.ray_cluster import connect, this_node
from scale.ray_tasks import _NOT_SHIPPED, PackedAvatar, _unpack, scratch

log = logging.getLogger(__name__)

CHANNEL_CPUS = 0.5          # one stream's share (see the module docstring)
PLACE_TIMEOUT_S = 5.0       # no bundle placed by then: no node has room
START_TIMEOUT_S = 120.0     # a fresh node: the actor's process, the engine's imports, the channel's first frame
_STOP_TIMEOUT_S = 10.0

HostFactory = Callable[[Any, str], Any]   # (ServerConfig, secret) -> live.server.channel_host.ChannelHost


@dataclass(frozen=True)
class Hosted:
    node_id: str
    url: str
    secret: str
    actor: Any
    group: PlacementGroup


@dataclass(frozen=True)
class Ending:
    reason: str
    lost: bool


class ChannelActor:
    """One channel's host, on the node Ray placed it on (an async actor: one event loop)."""

    def __init__(self, host_factory: HostFactory) -> None:
        self._factory = host_factory
        self._host = None

    async def open(self, config: Any, avatar: PackedAvatar | None, weights: bytes | None,
                   secret: str) -> tuple[str, str]:
        """Start the host on this node's address; (node id, its URL)."""
        ip = ray.util.get_node_ip_address()
        root = scratch()
        if avatar is not None:
            await asyncio.to_thread(_unpack, avatar)
        checkpoint = await asyncio.to_thread(_weights_file, weights) if weights is not None else None
        config = dataclasses.replace(config, host=ip, max_sessions=1, data_dir=root / "channels",
                                     avatar_root=root / "avatars", mouth_checkpoint=checkpoint,
                                     preload_default_avatar=False)
        self._host = self._factory(config, secret)
        port = await self._host.start(ip)
        return this_node(), f"http://{f'[{ip}]' if ':' in ip else ip}:{port}"

    async def wait_closed(self) -> str:
        return await self._host.wait_closed()

    async def close(self) -> None:
        if self._host is not None:
            await self._host.stop()


def _weights_file(data: bytes) -> Path:
    path = scratch() / "weights" / f"{hashlib.sha256(data).hexdigest()[:16]}.pt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def _pack(avatar_root: Path, avatar_id: str) -> PackedAvatar:
    folder = Path(avatar_root) / avatar_id
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name not in _NOT_SHIPPED}
    return PackedAvatar(avatar_id, files, (), 0.0, 0.0)


class RayChannelCluster:
    """``live.server.remote_channels.ChannelCluster`` on Ray (runs on the front's event loop)."""

    def __init__(self, host_factory: HostFactory, cpus: float = CHANNEL_CPUS, resources: dict[str, float] | None = None,
                 place_timeout_s: float = PLACE_TIMEOUT_S) -> None:
        self._factory = host_factory
        self.cpus = cpus
        self.resources = dict(resources or {})
        self.place_timeout_s = place_timeout_s
        self.front_address = ray.util.get_node_ip_address()
        self._actor = ray.remote(ChannelActor)
        self._avatars: dict[tuple[str, float], ray.ObjectRef] = {}
        self._weights: dict[str, ray.ObjectRef] = {}

    async def open(self, config: Any, avatar_id: str) -> Hosted | None:
        """A started host on a node with room; None when there is none (RuntimeError: it did not start)."""
        avatar = await self._avatar_ref(Path(config.avatar_dir), avatar_id)
        weights = await self._weights_ref(config.mouth_checkpoint)
        group = placement_group([{"CPU": self.cpus, **self.resources}], strategy="STRICT_PACK")
        try:
            await asyncio.wait_for(group.ready(), self.place_timeout_s)
        except asyncio.TimeoutError:
            remove_placement_group(group)
            return None
        except BaseException:
            remove_placement_group(group)
            raise
        secret = secrets.token_urlsafe(24)
        actor = self._actor.options(
            num_cpus=self.cpus, resources=self.resources or None, max_restarts=0, max_task_retries=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0),
        ).remote(self._factory)
        try:
            node_id, url = await asyncio.wait_for(actor.open.remote(config, avatar, weights, secret), START_TIMEOUT_S)
        except BaseException as e:
            ray.kill(actor)
            remove_placement_group(group)
            if isinstance(e, (RayError, asyncio.TimeoutError)):
                log.error("a channel host did not start: %s", e)
                raise RuntimeError("the channel's host did not start on its node (see the server log)") from None
            raise
        return Hosted(node_id, url, secret, actor, group)

    async def wait_ended(self, hosted: Hosted) -> Ending:
        try:
            return Ending(await hosted.actor.wait_closed.remote(), lost=False)
        except RayActorError:
            return Ending("its actor died (node lost)", lost=True)
        except RayError as e:
            return Ending(f"its host failed: {type(e).__name__}", lost=True)

    async def close(self, hosted: Hosted) -> None:
        try:
            await asyncio.wait_for(hosted.actor.close.remote(), _STOP_TIMEOUT_S)
        except (RayError, asyncio.TimeoutError):
            pass   # dead already, or stuck: killed below either way
        finally:
            ray.kill(hosted.actor)
            remove_placement_group(hosted.group)

    async def _avatar_ref(self, avatar_root: Path, avatar_id: str) -> ray.ObjectRef:
        info = avatar_root / avatar_id / "info.json"
        key = (avatar_id, info.stat().st_mtime)
        if key not in self._avatars:
            self._avatars[key] = ray.put(await asyncio.to_thread(_pack, avatar_root, avatar_id))
        return self._avatars[key]

    async def _weights_ref(self, checkpoint: Path | None) -> ray.ObjectRef | None:
        if checkpoint is None:
            return None   # the installed default, on every node
        key = str(checkpoint)
        if key not in self._weights:
            self._weights[key] = ray.put(await asyncio.to_thread(Path(checkpoint).read_bytes))
        return self._weights[key]


def cluster_factory(address: str, host_factory: HostFactory, cpus: float = CHANNEL_CPUS,
                    **options: Any) -> Callable[[], RayChannelCluster]:
    """``--ray ADDRESS``: join the cluster now; the server builds its channel cluster from this."""
    connect(address)
    return lambda: RayChannelCluster(host_factory, cpus, **options)
