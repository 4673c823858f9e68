"""The studio on a real Ray cluster: three raylets on this machine (1 CPU each).

``run_live.py batch --ray ADDRESS`` spreads a batch over the nodes and writes the
same results (names, ZIP) as a local batch, plus the ``--json`` summary; a node
removed mid-batch loses no item.  Ray runs only here (marker ``ray``); the rest of
the suite never starts it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from testing.studio_helpers import REPO, check_mp4, checkpoint_for_tests, make_media  # noqa: E402

pytestmark = pytest.mark.ray
STORE = 100 * 1024 * 1024   # object store per raylet: small, the machine is shared


@pytest.fixture(scope="module")
def cluster(ray_scratch):
    from ray.cluster_utils import Cluster

    from scale.ray_cluster import connect

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": STORE,
                                                      "include_dashboard": False})
    for _ in range(2):
        c.add_node(num_cpus=1, object_store_memory=STORE)
    c.wait_for_nodes()
    connect(c.address)   # this process is a driver too (the node-loss test runs the studio in it)
    yield c
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return make_media(tmp_path_factory.mktemp("ray_media"))


def _videos(media, folder: Path, n: int) -> list[Path]:
    """``n`` videos, two distinct contents: each is prepared once and reused by the others."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"clip{i}.mp4"
        shutil.copyfile(media.face if i % 2 == 0 else media.face_b, p)
        out.append(p)
    return out


def test_cli_batch_spreads_over_the_nodes_and_writes_local_style_results(cluster, media, ray_scratch, tmp_path):
    videos = _videos(media, tmp_path / "in", 5)
    out, data = tmp_path / "out", tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "run_live.py", "batch", "--ray", cluster.address, "--audio", str(media.audio),
         *map(str, videos), str(media.no_face), "--out", str(out), "--data-dir", str(data), "--zip",
         "--json", str(tmp_path / "summary.json"), "--checkpoint", str(checkpoint_for_tests(tmp_path))],
        cwd=REPO, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 1, proc.stderr[-3000:]   # the video without a face fails, alone
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["backend"] == "ray" and summary["status"] == "finished"
    items = summary["items"]
    assert [i["video"] for i in items] == [v.name for v in videos] + ["empty_room.mp4"]
    done = [i for i in items if i["status"] == "done"]
    assert len(done) == 5, items
    for i, item in enumerate(done):
        # Named as a local batch names them, delivered to --out on this machine.
        assert item["output"] == str((out / f"clip{i}__speech.mp4").resolve())
        check_mp4(Path(item["output"]), media.audio_seconds)
        assert item["error"] is None and item["node_id"]
    nodes = {i["node_id"] for i in done}
    assert len(nodes) >= 2, f"all items rendered on one node: {nodes}"
    assert nodes <= {n["NodeID"] for n in _alive_nodes(cluster)}
    failed = items[-1]
    assert failed["status"] == "failed" and "face" in failed["error"] and failed["output"] is None
    with zipfile.ZipFile(out / "lipstream-batch.zip") as z:
        assert sorted(z.namelist()) == sorted(f"clip{i}__speech.mp4" for i in range(5))
    # One preparation per distinct video, kept in the nodes' caches by content id.
    log = (out / "lipstream-batch.log").read_text()
    avatars = {w.split("=", 1)[1] for line in log.splitlines() if " item_done " in line
               for w in line.split() if w.startswith("avatar=")}
    assert len(avatars) == 2, avatars
    # No temp file anywhere: not in --out, not in a node's scratch folder.
    assert not [p for p in out.rglob("*") if ".part-" in p.name]
    assert not [p for p in (ray_scratch / "renders").rglob("*") if p.is_file()]
    assert [p.name for p in data.iterdir()] == ["avatars"]


def _alive_nodes(cluster) -> list[dict]:
    return [n for n in ray.nodes() if n["Alive"]]


async def test_a_node_removed_mid_batch_loses_no_item(cluster, media, tmp_path):
    from scale.ray_studio import backend_factory
    from studio.config import StudioConfig
    from studio.jobs import ItemStatus
    from studio.service import Studio

    doomed = cluster.add_node(num_cpus=1, object_store_memory=STORE)
    cluster.wait_for_nodes()
    factory = backend_factory(cluster.address, progress_interval_s=0.1)
    config = StudioConfig(checkpoint=checkpoint_for_tests(tmp_path), render_backend=factory,
                          progress_interval_s=0.1)
    studio = Studio(tmp_path / "data", config)
    await studio.start()
    try:
        batch = studio.create_batch("node loss")
        studio.add_local_files(batch.id, media.audio, _videos(media, tmp_path / "in", 6))
        studio.start_batch(batch.id)
        backend = studio.pool.backend
        removed = False
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            snap = studio.progress(batch.id)
            if snap.batch.status.terminal and not snap.current:
                break
            if not removed and doomed.node_id in backend.working_nodes().values():
                # Work (a preparation or a render) is running there right now: pull the plug.
                victims = [k for k, n in backend.working_nodes().items() if n == doomed.node_id]
                cluster.remove_node(doomed, allow_graceful=False)
                removed = True
            await asyncio.sleep(0.05)
        assert removed, "no task ever ran on the node to remove"
        statuses = [(v.video_name, v.item.status.value, v.item.error) for v in snap.items]
        assert all(v.item.status is ItemStatus.DONE for v in snap.items), statuses
        # What ran there was run again elsewhere (Ray's retry), not lost or left half done.
        items = {v.item.id for v in snap.items}
        assert all(backend.node_of(k) != doomed.node_id for k in victims if k in items), victims
        results = studio.db.list_results(100, 0, batch.id)
        assert len(results) == 6
        for r in results:
            check_mp4(studio.result_file(r), media.audio_seconds)
        assert not [p for p in studio.paths.root.rglob("*") if ".part-" in p.name]
    finally:
        await studio.stop()


async def test_progress_and_cancel_reach_the_cluster(cluster, media, ray_scratch, tmp_path):
    from scale.ray_studio import backend_factory
    from studio.config import StudioConfig
    from studio.jobs import BatchStatus, ItemStatus
    from studio.service import Studio

    config = StudioConfig(checkpoint=checkpoint_for_tests(tmp_path), progress_interval_s=0.1,
                          render_backend=backend_factory(cluster.address, progress_interval_s=0.1))
    studio = Studio(tmp_path / "data", config)
    await studio.start()
    # The scratch folder is the module's: a node killed by the test before may have left a
    # dead worker's partial file there (swept by the next task that renders on this machine).
    before = {p for p in (ray_scratch / "renders").rglob("*") if p.is_file()}
    try:
        batch = studio.create_batch("cancel me")
        studio.add_local_files(batch.id, media.audio, _videos(media, tmp_path / "in", 6))
        studio.start_batch(batch.id)
        seen: set[str] = set()
        cancelled = False
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            snap = studio.progress(batch.id)
            seen |= {v.item.stage for v in snap.items if v.item.status is ItemStatus.RUNNING and v.item.progress > 0}
            if not cancelled and any(v.item.status is ItemStatus.DONE for v in snap.items):
                studio.cancel_batch(batch.id)   # one item is done, others are on their way
                cancelled = True
            if snap.batch.status.terminal and not snap.current:
                break
            await asyncio.sleep(0.05)
        # The nodes' progress reached the database on its way, as a local render's does.
        assert {"preparing", "rendering"} & seen, seen
        assert snap.batch.status is BatchStatus.CANCELLED
        statuses = [v.item.status for v in snap.items]
        assert ItemStatus.CANCELLED in statuses and set(statuses) <= {ItemStatus.DONE, ItemStatus.CANCELLED}
        results = studio.db.list_results(100, 0, batch.id)
        assert len(results) == statuses.count(ItemStatus.DONE)   # a cancelled item records nothing
        leftovers = [p for p in studio.paths.results.rglob("*") if p.is_file()]
        assert sorted(p.name for p in leftovers) == sorted(r.filename for r in results)
        assert not {p for p in (ray_scratch / "renders").rglob("*") if p.is_file()} - before
    finally:
        await studio.stop()


def test_a_node_sweeps_the_partial_files_of_dead_writers_and_leaves_live_ones(tmp_path):
    from scale.ray_tasks import sweep_orphans
    from studio import storage

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    orphan = tmp_path / f"clip__speech{storage.PARTIAL_MARK}{dead}-1.mp4"
    orphan_inner = tmp_path / f".clip__speech{storage.PARTIAL_MARK}{dead}-1.mp4.0a1b2c3d4e5f.part"
    working = storage.temp_path_for(tmp_path / "mine.mp4")       # this process: alive
    finished = tmp_path / "done.mp4"
    for p in (orphan, orphan_inner, working, finished):
        p.write_bytes(b"x")
    assert sorted(sweep_orphans(tmp_path)) == sorted([orphan, orphan_inner])
    assert working.exists() and finished.exists()
