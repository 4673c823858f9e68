"""Offers that can't hurt the server: ICE checks only to the peer's own addresses,
and offers that never connect neither start a worker nor hold a slot for long."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from live.rtc.ice_guard import MAX_REMOTE_CANDIDATES, CheckRate, IceGuard, local_addresses
from testing.webrtc_client import LipstreamClient

pytestmark = pytest.mark.timeout(120)

_CANDIDATE = "a=candidate:{f} 1 udp {prio} {host} {port} typ host\r\n"


# -- the rule -------------------------------------------------------------------


def test_a_remote_peer_may_only_name_its_own_address_and_the_turn_servers():
    guard = IceGuard.for_peer("203.0.113.7", ["turn:198.51.100.9:3478?transport=udp", "stun:192.0.2.99"])
    assert guard.permits("203.0.113.7") and guard.permits("198.51.100.9")
    for other in ("203.0.113.8", "192.0.2.99", "127.0.0.1", "10.0.0.1", "example.local", "garbage", ""):
        assert not guard.permits(other), other
    assert IceGuard.for_peer("::ffff:203.0.113.7").permits("203.0.113.7")   # IPv4-mapped HTTP peer


def test_a_loopback_peer_may_name_this_machines_addresses_but_not_others():
    guard = IceGuard.for_peer("127.0.0.1")
    for ip in local_addresses():
        assert guard.permits(str(ip))
    assert not guard.permits("127.0.0.2") and not guard.permits("203.0.113.7")


def test_foreign_and_surplus_candidates_are_removed_from_the_offer():
    lines = [_CANDIDATE.format(f=k, prio=1, host="203.0.113.7", port=5000 + k) for k in range(MAX_REMOTE_CANDIDATES + 3)]
    sdp = ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n" + _CANDIDATE.format(f=90, prio=1, host="192.0.2.1", port=9)
           + "a=candidate:91 1 tcp 1 203.0.113.7 9 typ host tcptype active\r\n"
           + _CANDIDATE.format(f=92, prio=1, host="abc.local", port=9) + "".join(lines) + "a=end-of-candidates\r\n")
    guard = IceGuard.for_peer("203.0.113.7")
    out = guard.filter_sdp(sdp)
    kept = [line for line in out.splitlines() if line.startswith("a=candidate:")]
    assert len(kept) == MAX_REMOTE_CANDIDATES and all(" 203.0.113.7 " in k and " udp " in k for k in kept)
    assert "a=end-of-candidates" in out and out.startswith("v=0\r\nm=video")
    assert guard.refused == 6


def test_checks_are_rate_limited_after_a_burst():
    rate = CheckRate(per_s=20.0, burst=10.0)
    delays = [rate.delay(now=100.0) for _ in range(30)]
    assert delays[:10] == [0.0] * 10
    assert delays[10] == pytest.approx(0.05) and delays[29] == pytest.approx(1.0)
    assert rate.delay(now=200.0) == 0.0       # refilled


# -- end to end -----------------------------------------------------------------


def _listener(host: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.setblocking(False)
    return s


def _received(s: socket.socket) -> int:
    n = 0
    while True:
        try:
            s.recvfrom(2048)
        except BlockingIOError:
            return n
        n += 1


def _add_candidates(sdp: str, targets: list[tuple[str, int]]) -> str:
    """Add host candidates to every media section, checked first and in this order
    (the highest priorities: the server stops checking once a pair is nominated)."""
    extra = "".join(_CANDIDATE.format(f=900 + k, prio=2130706431 - k, host=h, port=p) for k, (h, p) in enumerate(targets))
    return re.sub(r"(\r\nm=[^\r\n]*\r\n)", lambda m: m.group(1) + extra, sdp)


async def _checks_received_by(url: str, listener: socket.socket) -> int:
    """Connect a real client whose offer also names ``listener``'s address, first in
    check order; how many STUN packets the listener got while the stream started."""
    client = LipstreamClient(url)
    try:
        await client.connect(edit_offer=lambda sdp: _add_candidates(sdp, [listener.getsockname()]))
        await client.wait_video(25)       # the real connection works
        n, deadline = 0, time.monotonic() + 3.0   # aioice retransmits a check for ~1.6 s
        while time.monotonic() < deadline:
            n += _received(listener)
            await asyncio.sleep(0.05)
        return n
    finally:
        await client.close()


async def test_the_server_sends_no_stun_to_an_address_the_peer_does_not_own(live_server):
    # The client is 127.0.0.1.  Its offer names 127.0.0.2 (not an address of this
    # machine's interfaces: someone else's) as its best candidate.  The control names
    # another port of 127.0.0.1 the same way and must be checked: otherwise this test
    # would prove nothing.
    victim, control = _listener("127.0.0.2"), _listener("127.0.0.1")
    try:
        got_control = await _checks_received_by(live_server.url, control)
        got_victim = await _checks_received_by(live_server.url, victim)
    finally:
        victim.close()
        control.close()
    assert got_control > 0, "control: the server sent no check to a permitted candidate, so the test proves nothing"
    assert got_victim == 0, f"{got_victim} STUN packets reached 127.0.0.2, an address the peer does not own"


async def _bare_offer(http: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(f"{url}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as resp:
        reply = resp.status, await resp.json()
    await pc.close()    # never completes ICE
    return reply


async def test_offers_that_never_connect_start_no_worker_and_free_their_slots(make_server):
    server = await make_server(max_sessions=2, connect_timeout_s=2.0, stats_interval_s=0.25)
    async with aiohttp.ClientSession() as http:
        offers = [await _bare_offer(http, server.url) for _ in range(2)]
        assert [s for s, _ in offers] == [200, 200]
        t_last = time.monotonic()
        for _, body in offers:
            async with http.get(f"{server.url}/sessions/{body['session_id']}") as resp:
                assert (await resp.json())["worker_pid"] is None, "a bare offer started a worker process"
        status, body = await _bare_offer(http, server.url)
        assert status == 503, "two bare offers should hold both slots for now"
        while True:
            async with http.get(f"{server.url}/sessions") as resp:
                if (await resp.json())["count"] == 0:
                    break
            assert time.monotonic() - t_last < 2.0 + 10.0, "bare offers kept their slots"
            await asyncio.sleep(0.1)
    client = LipstreamClient(server.url)
    try:
        await client.connect()
        await client.wait_video(10)
        assert (await client.stats())["worker_pid"] is not None
    finally:
        await client.close()
