"""The sender process of one RTMP output: ``python -m live.broadcast.sender``.

FFmpeg's network writes block, and PyAV passes no I/O timeout to an output URL,
so a stalled ingest (a SIGSTOPped server, a black-holed route, a TLS handshake
that never answers) would block forever.  The connection therefore lives in a
process of its own that the server can kill (``RtmpOutput`` does when this
process stops reporting progress).  The AAC encoding runs here too, off the
server's GIL.

It reads its ``SenderConfig`` and then frames from stdin, keeps (re)connecting
with backoff, starting every connection at a keyframe, and reports
``SenderEvent`` lines on stdout, a tick after every frame.  Frames that arrive
while it is not connected are dropped: the channel never waits for an output.
"""

from __future__ import annotations

import ctypes
import signal
import sys
import time
from typing import BinaryIO

from live.broadcast.backoff import Backoff
from live.broadcast.flv_publisher import FlvPublisher, PublishError, StreamError
from live.broadcast.frames import BroadcastFrame
from live.broadcast.sender_protocol import SenderConfig, SenderEvent, read_frames

class Sender:
    def __init__(self, config: SenderConfig, out: BinaryIO, clock=time.monotonic) -> None:
        self.config = config
        self._out = out
        self._clock = clock
        self._publisher: FlvPublisher | None = None
        self._backoff = Backoff()
        self._retry_at = 0.0
        self._asked_keyframe = False
        self._sent = self._dropped = self._bytes_before = 0

    def feed(self, frame: BroadcastFrame) -> None:
        if self._publisher is None:
            self._connect_with(frame)
        else:
            try:
                self._publisher.write(frame)
                self._sent += 1
            except PublishError as e:
                self._lost(str(e))
                self._dropped += 1
        # One tick per frame: the server's stall check counts on seeing each frame acknowledged.
        self.tick()

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._bytes_before += self._publisher.bytes_sent
            self._publisher = None
        self.tick()

    def fatal(self, reason: str) -> None:
        self.close()
        self._emit(SenderEvent("fatal", error=reason))

    def tick(self) -> None:
        sent_bytes = self._bytes_before + (self._publisher.bytes_sent if self._publisher else 0)
        self._emit(SenderEvent("tick", counters={"sent": self._sent, "dropped": self._dropped, "bytes": sent_bytes}))

    def _connect_with(self, frame: BroadcastFrame) -> None:
        if self._clock() < self._retry_at:
            self._dropped += 1
            return
        if not (frame.keyframe and frame.video):
            if not self._asked_keyframe:
                self._emit(SenderEvent("want_keyframe"))
                self._asked_keyframe = True
            self._dropped += 1
            return
        try:
            self._publisher = FlvPublisher(self.config, frame)
        except PublishError as e:
            self._lost(str(e))
            self._dropped += 1
            return
        self._sent += 1
        self._backoff.connected(self._clock())
        self._emit(SenderEvent("live"))

    def _lost(self, reason: str) -> None:
        if self._publisher is not None:
            self._publisher.close()
            self._bytes_before += self._publisher.bytes_sent
            self._publisher = None
        delay = self._backoff.next_delay(self._clock())
        self._retry_at = self._clock() + delay
        self._asked_keyframe = False
        self._emit(SenderEvent("down", error=reason, retry_in_s=delay))

    def _emit(self, event: SenderEvent) -> None:
        self._out.write(event.to_line())
        self._out.flush()


def _die_with_parent() -> None:
    # If the server dies while this process is blocked on the network, stdin's EOF would
    # never be read: ask Linux to end it with its parent.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> int:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the server decides when an output ends
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    line = stdin.readline()
    if not line:
        return 0
    sender = Sender(SenderConfig.from_line(line), stdout)
    sender.tick()   # started: the server's stall watch begins now
    try:
        for frame in read_frames(stdin):
            sender.feed(frame)
    except StreamError as e:
        sender.fatal(str(e))
        return 2
    except BrokenPipeError:
        return 0
    sender.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
