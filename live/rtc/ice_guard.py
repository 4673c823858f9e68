"""Which remote ICE candidates the server may send connectivity checks to.

An SDP offer names the addresses the server should send STUN checks to, and
anyone can post an offer: without a rule the server would send packets to any
host:port on anyone's behalf (reflection).  The server only checks candidates the
signalling peer can plausibly own:

- the address the offer came from (the HTTP peer, ``request.remote``);
- when that peer is on this machine (loopback), this machine's own addresses
  (an aiortc or browser peer here offers its interface addresses, not 127.0.0.1);
- the TURN servers the server hands out (a peer's relayed candidates are on them).

Everything else is removed from the offer before aiortc sees it, and the same rule
guards every check aioice starts (peer-reflexive candidates included, see
``live.rtc.aiortc_hooks.guard_ice_checks``), with a per-session rate limit.
mDNS (``*.local``) candidates are dropped: their address is unknown until
resolved; a peer that hides behind them is still reached through the checks it
sends us (peer-reflexive).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REMOTE_CANDIDATES = 16          # per offer, after filtering: a real peer has a handful


def parse_ip(host: str | None) -> IpAddress | None:
    """An IP address, or None for names and garbage (IPv4-mapped IPv6 comes out as IPv4)."""
    if not host:
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def local_addresses() -> frozenset[IpAddress]:
    """This machine's interface addresses (what a peer on this machine offers)."""
    import ifaddr  # aioice's own dependency

    out: set[IpAddress] = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    for adapter in ifaddr.get_adapters():
        for a in adapter.ips:
            ip = parse_ip(a.ip if isinstance(a.ip, str) else a.ip[0])
            if ip is not None:
                out.add(ip)
    return frozenset(out)


def turn_addresses(urls: Iterable[str]) -> frozenset[IpAddress]:
    """The addresses of the configured TURN servers (``turn:host[:port][?transport=...]``)."""
    out: set[IpAddress] = set()
    for url in urls:
        if not url.lower().startswith(("turn:", "turns:")):
            continue
        host = urlsplit("//" + url.split(":", 1)[1]).hostname
        if host is None:
            continue
        ip = parse_ip(host)
        if ip is not None:
            out.add(ip)
            continue
        try:
            for info in socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM):
                resolved = parse_ip(str(info[4][0]))
                if resolved is not None:
                    out.add(resolved)
        except OSError:
            log.warning("TURN server %s does not resolve; its relayed candidates will be refused", host)
    return frozenset(out)


_CACHE_TTL_S = 60.0
_cache: dict[tuple[str, ...], tuple[float, frozenset[IpAddress]]] = {}


def _cached(key: tuple[str, ...], compute: Callable[[], frozenset[IpAddress]]) -> frozenset[IpAddress]:
    """``compute()``, remembered for a minute (interfaces and TURN addresses rarely change)."""
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is None or hit[0] < now:
        hit = (now + _CACHE_TTL_S, compute())
        _cache[key] = hit
    return hit[1]


@dataclass
class CheckRate:
    """A token bucket: at most ``per_s`` connectivity checks a second after a ``burst``."""

    per_s: float = 20.0
    burst: float = 10.0
    _tokens: float | None = field(default=None, repr=False)   # negative: checks already waiting
    _at: float = field(default=0.0, repr=False)

    def delay(self, now: float | None = None) -> float:
        """Take one token; the seconds the caller must wait before sending (0: now)."""
        now = time.monotonic() if now is None else now
        if self._tokens is None:
            self._tokens, self._at = self.burst, now
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_s)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.per_s


@dataclass
class IceGuard:
    """The remote addresses one session may send checks to, and how fast."""

    allowed: frozenset[IpAddress]
    rate: CheckRate = field(default_factory=CheckRate)
    refused: int = 0                 # candidates and checks refused so far

    @classmethod
    def for_peer(cls, peer: str | None, turn_urls: Iterable[str] = ()) -> "IceGuard":
        ip = parse_ip(peer)
        # Cached: this runs for every offer, on the event loop; a DNS look-up or an interface
        # scan per offer would stall every session's frame pump.
        allowed: set[IpAddress] = set(_cached(("turn", *turn_urls), lambda: turn_addresses(turn_urls)))
        if ip is None or ip.is_loopback:
            # On this machine (or a unix socket): the peer owns this machine's addresses.
            allowed |= _cached(("local",), local_addresses)
        if ip is not None:
            allowed.add(ip)
        return cls(frozenset(allowed))

    def permits(self, host: str) -> bool:
        ip = parse_ip(host)
        return ip is not None and ip in self.allowed

    def filter_sdp(self, sdp: str) -> str:
        """The offer without candidates we must not check (and at most MAX_REMOTE_CANDIDATES)."""
        out, kept = [], 0
        for line in sdp.splitlines(keepends=True):
            if line.startswith("a=candidate:"):
                host = _candidate_host(line)
                if host is None or not self.permits(host) or kept >= MAX_REMOTE_CANDIDATES:
                    self.refused += 1
                    log.info("ICE candidate refused (not the signalling peer's): %s", line.strip()[:120])
                    continue
                kept += 1
            out.append(line)
        return "".join(out)


def _candidate_host(line: str) -> str | None:
    """The connection address of an ``a=candidate:`` line (UDP only; None if unusable)."""
    parts = line.split()
    # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
    if len(parts) < 8 or parts[2].lower() != "udp":
        return None
    return parts[4]
