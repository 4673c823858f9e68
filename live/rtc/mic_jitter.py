"""The microphone's jitter buffer: Opus packets go straight to the session's worker.

aiortc's audio receiver holds every packet until four later ones have arrived (a
fixed 80 ms "prefetch": it can only tell a frame is complete when the next
timestamp shows up) and then decodes it in a thread of the server process.  A
WebRTC Opus packet *is* a complete 20 ms frame, so for the microphone each packet
is handed on the moment it is next in sequence -- to a callback that forwards it,
still encoded, to the worker that decodes it.  aiortc's own decoder gets nothing.

A missing packet is waited for up to 40 ms (reordering on a real network is
rarely longer), then given up: the callback gets an empty payload in its place,
and the worker fills its duration (``live.rtc.audio_codec.MicDecoder``), so the
microphone's stream keeps its length.  Had it shrunk instead, every loss would
have eaten into the headroom the engine keeps against jitter, and the next
frame would have had to be padded: a loss on the way in became a gap on the way
out, and the gaps came as often as the losses.

This subclasses aiortc's ``JitterBuffer`` and uses its private fields; it is
installed by ``live.rtc.aiortc_hooks.install_mic_tap``, which documents both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Optional

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

MAX_WAIT_S = 0.040

OnPacket = Callable[[bytes, float], None]   # (Opus payload, or b"" for a lost one; monotonic arrival time)


class MicJitterBuffer(JitterBuffer):
    def __init__(self, on_packet: OnPacket, capacity: int = 16,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(capacity=capacity, prefetch=0)
        self.on_packet = on_packet
        self.clock = clock
        self.skipped = 0
        self._hole_since: float | None = None   # when a packet behind the missing head arrived

    def add(self, packet: RtpPacket) -> tuple[bool, Optional[JitterFrame]]:
        if self._origin is not None and _seq_diff(packet.sequence_number, self._origin) < 0:
            return False, None  # older than what was already handed on: too late
        super().add(packet)
        return False, None     # nothing for aiortc's decoder: the worker decodes

    def _remove_frame(self, sequence_number: int) -> Optional[JitterFrame]:
        assert self._origin is not None
        now = self.clock()
        if self._packets[self._origin % self._capacity] is None:
            if self._hole_since is None:
                self._hole_since = now
            waiting = sum(p is not None for p in self._packets)
            if now - self._hole_since < MAX_WAIT_S and waiting < self._capacity // 2:
                return None
            while self._packets[self._origin % self._capacity] is None:  # give up on the hole
                self.remove(1)
                self.skipped += 1
                self.on_packet(b"", now)
        self._hole_since = None
        while (head := self._packets[self._origin % self._capacity]) is not None:
            self.remove(1)
            self.on_packet(head._data, now)  # type: ignore[attr-defined]
        return None


def _seq_diff(a: int, b: int) -> int:
    """a - b on the 16-bit sequence-number circle, in [-32768, 32767]."""
    return (a - b + 32768) % 65536 - 32768

