"""The microphone's jitter buffer: Opus packets go straight to the session's worker.

aiortc's audio receiver holds every packet until four later ones have arrived (a
fixed 80 ms "prefetch": it can only tell a frame is complete when the next
timestamp shows up) and then decodes it in a thread of the server process.  A
WebRTC Opus packet *is* a complete 20 ms frame, so for the microphone each packet
is handed on the moment it is next in sequence -- to a callback that forwards it,
still encoded, to the worker that decodes it.  aiortc's own decoder gets nothing.

A missing packet is waited for until two later ones are here (40 ms: reordering
on a real network is rarely longer), then skipped; the engine pads the gap.

This subclasses aiortc's ``JitterBuffer`` and uses its private fields; it is
installed by ``live.rtc.aiortc_hooks.install_mic_tap``, which documents both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Optional

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

_MAX_WAIT_PACKETS = 2

OnPacket = Callable[[bytes, float], None]   # (Opus payload, monotonic arrival time)


class MicJitterBuffer(JitterBuffer):
    def __init__(self, on_packet: OnPacket, capacity: int = 16) -> None:
        super().__init__(capacity=capacity, prefetch=0)
        self.on_packet = on_packet
        self.skipped = 0

    def add(self, packet: RtpPacket) -> tuple[bool, Optional[JitterFrame]]:
        if self._origin is not None and _seq_diff(packet.sequence_number, self._origin) < 0:
            return False, None  # older than what was already handed on: too late
        super().add(packet)
        return False, None     # nothing for aiortc's decoder: the worker decodes

    def _remove_frame(self, sequence_number: int) -> Optional[JitterFrame]:
        assert self._origin is not None
        now = time.monotonic()
        if self._packets[self._origin % self._capacity] is None:
            waiting = sum(p is not None for p in self._packets)
            if waiting < _MAX_WAIT_PACKETS + 1:
                return None
            while self._packets[self._origin % self._capacity] is None:  # give up on the hole
                self.remove(1)
                self.skipped += 1
        while (head := self._packets[self._origin % self._capacity]) is not None:
            self.remove(1)
            self.on_packet(head._data, now)  # type: ignore[attr-defined]
        return None


def _seq_diff(a: int, b: int) -> int:
    """a - b on the 16-bit sequence-number circle, in [-32768, 32767]."""
    return (a - b + 32768) % 65536 - 32768

