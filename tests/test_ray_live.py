"""Live channels on a real Ray cluster: two raylets on this machine (1 CPU each).

The server under test is the front (``serve --ray``): each ``POST /channels`` runs
in a Ray actor on a node with room, every call is relayed to it, and a WHEP viewer
(a real aiortc peer) gets its media from that node.  Here a channel reserves a whole
CPU and the head's CPU is held by another actor, so the only room is on the second
node.  Ray runs only here (marker ``ray``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest

ray = pytest.importorskip("ray")

from models.avatar.avatar import load_avatar  # noqa: E402
from testing.live_measure import MouthMeter, best_lag, envelope  # noqa: E402
from testing.webrtc_client import LipstreamClient  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]
STORE = 100 * 1024 * 1024
FPS = 25.0
AV_BOUND_S = 2.0 / FPS      # lips within two frames of the sound (the functional bound of tests/test_live_media.py)


@pytest.fixture(scope="module")
def cluster(ray_scratch):
    from ray.cluster_utils import Cluster

    from scale.ray_cluster import connect

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": STORE,
                                                      "include_dashboard": False})
    second = c.add_node(num_cpus=1, object_store_memory=STORE)
    c.wait_for_nodes()
    connect(c.address)
    c.second = second
    yield c
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


@ray.remote(num_cpus=1)
class _Hold:
    """A node's CPU, taken (what a render or another channel would do)."""

    def ping(self) -> str:
        return "ok"


def _hold(node_id: str):
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor = _Hold.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
    ray.get(actor.ping.remote(), timeout=60)
    return actor


@pytest.fixture
async def front(cluster, make_server):
    """A live server whose channels run on the cluster, one whole CPU each."""
    from live.server.channel_host import ChannelHost
    from scale.ray_channels import RayChannelCluster

    return await make_server(channel_cluster=lambda: RayChannelCluster(ChannelHost, cpus=1.0, place_timeout_s=3.0))


async def _json(http: aiohttp.ClientSession, method: str, url: str, **kw) -> tuple[int, dict]:
    async with http.request(method, url, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


def _ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        out.append(pid)
    return out


class _Events:
    def __init__(self, client: LipstreamClient) -> None:
        self.items: list[dict] = []
        self.ended = asyncio.Event()
        self._task = asyncio.ensure_future(self._run(client))

    async def _run(self, client: LipstreamClient) -> None:
        try:
            async for ev in client.events():
                self.items.append(ev)
        finally:
            self.ended.set()

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.items if e["type"] == kind]

    async def wait_for(self, kind: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while not self.of(kind):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind} event in {timeout} s; got {[e['type'] for e in self.items]}")
            await asyncio.sleep(0.05)
        return self.of(kind)[0]

    def close(self) -> None:
        self._task.cancel()


async def test_with_no_room_on_any_node_a_channel_is_refused_503(cluster, front):
    from ray.util import placement_group_table

    holds = [_hold(n["NodeID"]) for n in ray.nodes() if n["Alive"]]
    try:
        async with aiohttp.ClientSession() as http:
            t0 = time.monotonic()
            status, reply = await _json(http, "POST", front.url + "/channels", json={"name": "no room"})
            assert status == 503 and reply["reason"] == "capacity", reply
            assert time.monotonic() - t0 < 30
            status, listing = await _json(http, "GET", front.url + "/channels")
            assert listing["channels"] == []
        # Nothing reserved is left behind, so the cluster's room is as it was.
        assert all(g["state"] == "REMOVED" for g in placement_group_table().values())
    finally:
        for h in holds:
            ray.kill(h)


async def test_every_control_call_reaches_the_hosted_channel_and_delete_frees_its_room(cluster, front):
    import io

    from ray.util import placement_group_table

    from live.server.remote_channels import REMOTE_CHANNELS
    from models.audio.pcm import write_wav
    from testing.media import speech_sample

    url = front.url
    async with aiohttp.ClientSession() as http:
        status, info = await _json(http, "POST", url + "/channels", json={"name": "Relay", "voice": "piper:joe"})
        assert status == 201, info
        cid = info["channel_id"]
        base = f"{url}/channels/{cid}"
        status, info = await _json(http, "PATCH", base, json={"name": "Renamed"})
        assert status == 200 and info["name"] == "Renamed"
        status, reply = await _json(http, "PATCH", base, json={"voice": "nobody:nothing"})
        assert status == 400 and "voice" in reply["error"]       # the host's own validation, relayed
        wav = io.BytesIO()
        write_wav(wav, speech_sample())
        status, reply = await _json(http, "POST", base + "/audio", data=wav.getvalue(),
                                    headers={"Content-Type": "audio/wav"})
        assert status == 202 and reply["seconds"] > 1.0, reply
        status, reply = await _json(http, "POST", base + "/interrupt")
        assert status == 200 and "cancelled" in reply
        status, reply = await _json(http, "GET", base + "/outputs")
        assert status == 200 and reply == {"outputs": []}
        status, reply = await _json(http, "POST", base + "/outputs", json={"url": "http://not-rtmp"})
        assert status == 400 and "error" in reply
        status, reply = await _json(http, "GET", base + "/viewers")
        assert status == 200 and reply == {"viewers": []}
        # The agent sockets too (a WebSocket, relayed message by message).
        async with http.ws_connect(base + "/text") as ws:
            await ws.send_json({"type": "text", "text": "Through the front."})
            await ws.send_json({"type": "flush"})
            msg = await asyncio.wait_for(ws.receive_json(), 30)
            assert msg["type"] == "speech_queued" and msg["text"] == "Through the front.", msg
        # A WHEP player on another origin without the key is refused by the front, readably (CORS).
        async with http.post(base + "/whep", data=b"v=0\r\n", headers={"Content-Type": "application/sdp",
                                                                         "Origin": "https://player.example"}) as resp:
            assert resp.status == 403 and resp.headers.get("Access-Control-Allow-Origin") == "*"
            assert "view key" in (await resp.json())["error"]
        # The host answers only the front: not a caller that found its address.
        hosted = front.app[REMOTE_CHANNELS].get(cid).hosted
        status, reply = await _json(http, "GET", f"{hosted.url}/channels/{cid}")
        assert status == 403, reply

        status, reply = await _json(http, "DELETE", base)
        assert status == 200 and reply == {"ended": cid}
        deadline = time.monotonic() + 60
        while (await _json(http, "GET", base))[0] != 404 or \
                not all(g["state"] == "REMOVED" for g in placement_group_table().values()):
            assert time.monotonic() < deadline, "the deleted channel still holds its room"
            await asyncio.sleep(0.2)
        status, listing = await _json(http, "GET", url + "/channels")
        assert listing["channels"] == []


async def test_a_channel_on_the_second_node_streams_speaks_in_sync_and_ends_with_its_node(
        cluster, front, avatar_root):
    head = cluster.head_node.node_id
    hold = _hold(head)          # the head is full: the only room is on the second node
    meter = MouthMeter(load_avatar("default", avatar_root))
    url = front.url
    async with aiohttp.ClientSession() as http:
        status, info = await _json(http, "POST", url + "/channels", json={"name": "Far away"})
        assert status == 201, info
        cid, key = info["channel_id"], info["view_key"]
        assert info["node_id"] == cluster.second.node_id and info["state"] == "live"
        # The front hosts nothing itself; the second node is now full, so another channel finds no room.
        status, health = await _json(http, "GET", url + "/health")
        assert health["channels"] == 0 and health["channels_on_cluster"] == 1
        status, reply = await _json(http, "POST", url + "/channels", json={"name": "one too many"})
        assert status == 503 and reply["reason"] == "capacity", reply

        viewer = LipstreamClient(url, http=http, frame_fn=lambda f: f.to_ndarray(format="gray"))
        events = None
        try:
            # WHEP through the front with the view key: the answer is the node's.
            await viewer.connect(whep=f"/channels/{cid}/whep?key={key}")
            assert viewer.whep_location.startswith(f"/channels/{cid}/whep/")
            viewer.channel_id = cid
            events = _Events(viewer)
            stats = await events.wait_for("stats", timeout=20)
            # The engine rendering this channel is a process of the second node's raylet.
            raylet = cluster.second.all_processes["raylet"][0].process.pid
            assert raylet in _ancestors(stats["worker_pid"])

            reply = await viewer.say("Hello from the second machine. The lips move with the words.")
            start = await events.wait_for("speech_start", timeout=60)
            end = await events.wait_for("speech_end", timeout=60)
            assert start["utterance_id"] == end["utterance_id"] == reply["utterance_id"]
            await asyncio.sleep(0.5)
            status, listing = await _json(http, "GET", url + "/channels")
            assert [(c["channel_id"], c["viewers"], c["node_id"]) for c in listing["channels"]] == \
                [(cid, 1, cluster.second.node_id)]

            # Lips in sync, as a viewer sees and hears them (sender times from the node's RTCP reports).
            v_pts = np.array([v.pts for v in viewer.video])
            score = np.array([meter.score(v.data) for v in viewer.video])
            t_v = viewer.sender_time("video", v_pts) + 0.5 / FPS
            audio, a0 = viewer.audio_signal()
            t_rel, rms = envelope(audio, 48_000, 0.01)
            t_a = viewer.sender_time("audio", a0 + t_rel * 48_000)
            s0, e0 = start["time"], end["time"]
            during, before = (t_a > s0) & (t_a < e0), t_a < s0 - 0.1
            assert rms[during].mean() > 10 * max(rms[before].mean(), 1e-4), "the speech was not heard"
            speaking = score[(t_v > s0) & (t_v < e0)].mean()
            assert speaking > 2 * score[t_v < s0 - 0.1].mean() + 1.0, "the mouth did not move"
            lag, r = best_lag(t_v, score, t_a, rms, max_lag=0.25)
            assert r > 0.3 and abs(lag) <= AV_BOUND_S, f"A/V lag {lag * 1000:.0f} ms (r={r:.2f})"

            # The node dies: the channel's stream ends with an error, and the channel is gone.
            t_kill = time.monotonic()
            cluster.remove_node(cluster.second, allow_graceful=False)
            error = await events.wait_for("error", timeout=120)
            print(f"\nA/V lag {lag * 1000:.0f} ms (r={r:.2f}); node loss reported after "
                  f"{time.monotonic() - t_kill:.1f} s")
            assert "lost" in error["message"]
            await asyncio.wait_for(events.ended.wait(), 30)

            async def gone() -> bool:
                status, _ = await _json(http, "GET", url + f"/channels/{cid}")
                return status == 404
            deadline = time.monotonic() + 120
            while not await gone():
                assert time.monotonic() < deadline, "the lost channel is still listed"
                await asyncio.sleep(0.2)
        finally:
            if events is not None:
                events.close()
            await viewer.close()
        # Nothing else is affected: the front answers, the head's work goes on.
        status, health = await _json(http, "GET", url + "/health")
        assert status == 200 and health["status"] == "ok"
        status, listing = await _json(http, "GET", url + "/channels")
        assert status == 200 and listing["channels"] == []
        assert ray.get(hold.ping.remote(), timeout=30) == "ok"
    ray.kill(hold)
