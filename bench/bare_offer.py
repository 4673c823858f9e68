"""What an offer that never connects costs the server: time, memory, processes, and how long it holds a slot.

    python -m bench.bare_offer [--offers 4]

A "bare" offer is a valid SDP offer whose peer then goes away without ever
answering ICE checks (what a careless client or an attacker does).  The script
starts the server as a user would (``run_live.py``), posts the offers, and
reports the ``POST /offer`` time, the memory of the server's process tree
(RSS, and PSS, which splits pages shared with the forkserver fairly), the
number of worker processes, and when the slots come back.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection

from bench.live_common import ServerProcess
from bench.report import record


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for k in kids:
            out.append(int(k))
            out.extend(_children(int(k)))
    return out


def _memory_mb(pid: int) -> tuple[float, float, int]:
    """(RSS MB, PSS MB, process count) of ``pid`` and all its descendants."""
    rss = pss = 0.0
    pids = [pid, *_children(pid)]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) / 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) / 1024
        except OSError:
            pass
    return rss, pss, len(pids)


async def _bare_offer(http: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    t0 = time.perf_counter()
    async with http.post(f"{url}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as resp:
        await resp.read()
        status = resp.status
    elapsed = time.perf_counter() - t0
    await pc.close()   # never answers the server's ICE checks
    return status, elapsed


async def main(offers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = await ServerProcess.start(Path(tmp) / "data", max_sessions=offers)
        try:
            async with aiohttp.ClientSession() as http:
                await asyncio.sleep(2.0)   # let start-up work (TTS warm-up) settle
                base = _memory_mb(server.proc.pid)
                times = []
                for _ in range(offers):
                    status, elapsed = await _bare_offer(http, server.url)
                    assert status == 200, status
                    times.append(elapsed)
                await asyncio.sleep(1.0)
                held = _memory_mb(server.proc.pid)
                t0 = time.monotonic()
                while True:
                    async with http.get(f"{server.url}/sessions") as resp:
                        if (await resp.json())["count"] == 0:
                            break
                    await asyncio.sleep(0.25)
                released = time.monotonic() - t0 + 1.0
        finally:
            server.stop()
    rows = [
        ("`POST /offer`", f"{min(times) * 1000:.0f}-{max(times) * 1000:.0f} ms"),
        ("memory held by the server's process tree (RSS / PSS)",
         f"+{held[0] - base[0]:.0f} MB / +{held[1] - base[1]:.0f} MB"),
        ("extra processes", f"+{held[2] - base[2]}"),
        ("all slots free again after the last offer", f"{released:.1f} s (connect timeout 10 s)"),
    ]
    for what, value in rows:
        print(f"{what}: {value}")
    record("bench/bare_offer.py", [
        f"{offers} offers that never connect (valid SDP, the peer then vanishes), against `run_live.py`.", "",
        "| figure | value |", "|---|---|", *[f"| {what} | {value} |" for what, value in rows],
    ])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offers", type=int, default=4)
    asyncio.run(main(parser.parse_args().offers))
