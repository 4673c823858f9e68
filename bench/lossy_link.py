"""``run_live.py`` behind a lossy, jittery link: the server's WebRTC datagrams, both ways.

    python -m bench.lossy_link --loss-pct 2 --jitter-ms 30 -- --host 127.0.0.1 --port 8080 ...

The issue asks for tc/netem in a network namespace; this kernel has no ``sch_netem``
(``tc qdisc add dev lo root netem`` answers "Specified qdisc kind is unknown"), so the
link is impaired where every media packet of the session passes: the server's ICE
sockets (aioice).  Each datagram the server receives or sends is dropped with the
given probability, and otherwise delivered after a delay drawn uniformly from
``[0, jitter]`` -- independently per packet, so packets overtake each other as they do
under netem's jitter.  STUN consent checks stay unimpaired (only media: RTP/RTCP over
DTLS/SRTP).  Everything else is the real server, started as ``run_live.py`` starts it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys

from aioice import ice


def impair(loss: float, jitter_s: float, seed: int = 13) -> None:
    """Patch aioice's datagram protocol in this process (call before the server starts)."""
    rng = random.Random(seed)
    received = ice.StunProtocol.datagram_received

    def delay() -> float | None:
        return None if rng.random() < loss else rng.uniform(0.0, jitter_s)

    def lossy_received(self: ice.StunProtocol, data: bytes, addr: tuple) -> None:
        if not data or data[0] > 3:           # not STUN (RFC 7983: 0-3): DTLS, SRTP/SRTCP
            d = delay()
            if d is None:
                return
            asyncio.get_running_loop().call_later(d, received, self, data, addr)
            return
        received(self, data, addr)

    async def lossy_send(self: ice.StunProtocol, data: bytes, addr: tuple[str, int]) -> None:
        d = delay()
        if d is None:
            return
        asyncio.get_running_loop().call_later(d, _send, self, data, addr)

    def _send(self: ice.StunProtocol, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    ice.StunProtocol.datagram_received = lossy_received   # type: ignore[method-assign]
    ice.StunProtocol.send_data = lossy_send               # type: ignore[method-assign]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loss-pct", type=float, default=2.0)
    ap.add_argument("--jitter-ms", type=float, default=30.0)
    ap.add_argument("server_args", nargs=argparse.REMAINDER, help="after --: run_live.py's arguments")
    args = ap.parse_args()
    rest = args.server_args[1:] if args.server_args[:1] == ["--"] else args.server_args
    impair(args.loss_pct / 100.0, args.jitter_ms / 1000.0)
    import run_live

    return run_live.main(rest)


if __name__ == "__main__":
    sys.exit(main())
