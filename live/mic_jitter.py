"""A microphone jitter buffer that doesn't add 80 ms.

aiortc's audio receiver holds every Opus packet until four later ones have
arrived (a fixed 80 ms "prefetch"), because it can only tell a frame is complete
when the next timestamp shows up.  A WebRTC Opus packet *is* a complete 20 ms
frame, so for the microphone we hand each packet on as soon as it is next in
sequence.  A missing packet is waited for until two later ones are here (40 ms:
reordering on a real network is rarely longer), then skipped.  Latency matters
more than one lost packet here: the lips follow the audio, and the engine pads.
"""

from __future__ import annotations

import logging
from typing import Optional

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

log = logging.getLogger(__name__)

_MAX_WAIT_PACKETS = 2


class ImmediateAudioJitterBuffer(JitterBuffer):
    def __init__(self, capacity: int = 16) -> None:
        super().__init__(capacity=capacity, prefetch=0)

    def add(self, packet: RtpPacket) -> tuple[bool, Optional[JitterFrame]]:
        if self._origin is not None and _seq_diff(packet.sequence_number, self._origin) < 0:
            return False, None  # older than what was already handed on: too late
        return super().add(packet)

    def _remove_frame(self, sequence_number: int) -> Optional[JitterFrame]:
        assert self._origin is not None
        head = self._packets[self._origin % self._capacity]
        if head is None:
            waiting = sum(p is not None for p in self._packets)
            if waiting < _MAX_WAIT_PACKETS + 1:
                return None
            while self._packets[self._origin % self._capacity] is None:  # give up on the hole
                self.remove(1)
            head = self._packets[self._origin % self._capacity]
            assert head is not None
        self.remove(1)
        return JitterFrame(data=head._data, timestamp=head.timestamp)  # type: ignore[attr-defined]


def _seq_diff(a: int, b: int) -> int:
    """a - b on the 16-bit sequence-number circle, in [-32768, 32767]."""
    return (a - b + 32768) % 65536 - 32768


def install(receiver: object) -> bool:
    """Swap aiortc's audio jitter buffer on ``receiver`` (an RTCRtpReceiver) for ours."""
    attr = "_RTCRtpReceiver__jitter_buffer"
    current = getattr(receiver, attr, None)
    if not isinstance(current, JitterBuffer):
        log.warning("aiortc internals changed: keeping its audio jitter buffer (+80 ms mic latency)")
        return False
    setattr(receiver, attr, ImmediateAudioJitterBuffer(current.capacity))
    return True
