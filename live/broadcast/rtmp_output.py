"""One RTMP/RTMPS output of a channel, as the server's event loop sees it.

``put`` is called on the loop for every channel frame and never blocks: frames
wait in a short backlog, and a task writes them to the output's sender process
(``live.broadcast.sender``), which holds the connection.  When the sender falls
behind (a slow ingest) the backlog is dropped whole and pictures are skipped up
to the next keyframe, since the frames in between refer to dropped ones; memory
stays bounded by the backlog, one pipe and one transport buffer.

The sender acknowledges every frame.  If frames are pending and it has said
nothing for ``stall_s``, it is blocked inside FFmpeg on a dead ingest: it is
killed and a new one started, which reconnects from the next keyframe.  Every
state change (connecting, live, reconnecting, stopped, failed) goes to
``on_status`` with the output's info and a message, on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from live.broadcast.backoff import Backoff
from live.broadcast.frames import BroadcastFrame
from live.broadcast.sender_protocol import SenderConfig, SenderEvent, encode_frame
from live.broadcast.urls import mask_url, validate_output_url

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
OutputState = Literal["connecting", "live", "reconnecting", "stopped", "failed"]
SENDER_START_S = 30.0      # a sender that has not started by then (a swamped machine) is replaced
STOP_GRACE_S = 5.0         # time the sender gets to flush and close the stream on stop()
RATE_WINDOW_S = 3.0


@dataclass(frozen=True)
class OutputInfo:
    """What the API shows of an output (``url`` has its stream key masked).

    ``frames_sent``: frames whose sound, and picture if they had one, went out.
    ``frames_dropped``: frames discarded (not connected, backlog overflow) or sent without
    their picture (waiting for a keyframe).  ``reconnects``: connections re-established
    after a loss.  ``bitrate_kbps``: muxed audio + video payload over the last 3 s, while live.
    """

    output_id: str
    url: str
    state: OutputState
    bitrate_kbps: float | None
    frames_sent: int
    frames_dropped: int
    retry_in_s: float | None
    reconnects: int
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Counters:
    sent: int = 0
    dropped: int = 0
    bytes: int = 0

    def add(self, other: _Counters) -> None:
        self.sent += other.sent
        self.dropped += other.dropped
        self.bytes += other.bytes


class RtmpOutput:
    """Streams a channel's frames to ``url`` until ``stop()``; reconnects by itself.

    ``on_status(event)`` gets ``info()`` plus ``"message"`` on every state change;
    ``request_keyframe()`` is called when a (re)connection waits for a keyframe.
    Both are called on the event loop.  Raises ``ValueError`` for a bad URL or size.
    """

    def __init__(
        self,
        url: str,
        width: int,
        height: int,
        fps: float,
        on_status: Callable[[dict[str, Any]], None],
        request_keyframe: Callable[[], None],
        *,
        output_id: str | None = None,
        stall_s: float = 10.0,
        backlog_s: float = 2.0,
    ) -> None:
        validate_output_url(url)
        if not (16 <= width <= 8192 and 16 <= height <= 8192):
            raise ValueError(f"invalid video size {width}x{height}")
        if not (1 <= fps <= 120):
            raise ValueError(f"invalid frame rate {fps}")
        self.output_id = output_id or f"out_{secrets.token_hex(4)}"
        self.masked_url = mask_url(url)
        self.stall_s = stall_s
        self._config = SenderConfig(url=url, width=width, height=height, fps=fps)
        self._on_status = on_status
        self._request_keyframe = request_keyframe
        self._max_backlog = max(2, math.ceil(backlog_s * fps))
        self._backlog: deque[BroadcastFrame] = deque()
        self._skip_video = False       # after dropping the backlog: no pictures until the next keyframe
        self._wake = asyncio.Event()
        self._sender_ready = asyncio.Event()    # the running sender has started reading frames
        self._stop_requested = asyncio.Event()
        self._state: OutputState = "connecting"
        self._error: str | None = None
        self._retry_in_s: float | None = None
        self._ever_live = False
        self._reconnects = 0
        self._fatal = False
        self._done = _Counters()        # senders that have exited, and frames this side dropped
        self._child = _Counters()       # the running sender's own counts
        self._written = 0               # frames written to the running sender
        self._last_event_at = 0.0
        self._rate: deque[tuple[float, int]] = deque()
        self._respawn = Backoff()
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None

    # ------------------------------------------------------------------ public

    @property
    def state(self) -> OutputState:
        return self._state

    @property
    def backlog(self) -> int:
        """Frames waiting for the sender (at most ``backlog_s * fps``)."""
        return len(self._backlog)

    @property
    def sender_pid(self) -> int | None:
        """The running sender process, if any (for monitoring its CPU and memory)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the sender (call on the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"rtmp {self.output_id}")
            self._announce(f"connecting to {self.masked_url}")

    def put(self, frame: BroadcastFrame) -> None:
        """Queue one channel frame; never blocks."""
        if self._stop_requested.is_set() or self._state == "failed":
            return
        if len(self._backlog) >= self._max_backlog:
            # The sender is not keeping up: what waits is stale, and the pictures up to the
            # next keyframe refer to it.  Drop it rather than fall further behind.
            self._done.dropped += len(self._backlog)
            self._backlog.clear()
            self._skip_video = True
        if self._skip_video and frame.video:
            if frame.keyframe:
                self._skip_video = False
            else:
                frame = replace(frame, video=b"")
                self._done.dropped += 1
        self._backlog.append(frame)
        self._wake.set()

    def info(self) -> dict[str, Any]:
        return self._info().as_dict()

    async def stop(self) -> None:
        """Close the stream (the sender flushes and disconnects) and end the output."""
        self._stop_requested.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE_S + 2)
            except asyncio.TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._backlog.clear()
        if self._state != "stopped":
            self._set_state("stopped", "stopped")

    # ------------------------------------------------------------------ state

    def _info(self) -> OutputInfo:
        sent = self._done.sent + self._child.sent
        dropped = self._done.dropped + self._child.dropped
        return OutputInfo(output_id=self.output_id, url=self.masked_url, state=self._state,
                          bitrate_kbps=self._bitrate_kbps(), frames_sent=sent, frames_dropped=dropped,
                          retry_in_s=self._retry_in_s, reconnects=self._reconnects, error=self._error)

    def _bitrate_kbps(self) -> float | None:
        if self._state != "live" or len(self._rate) < 2:
            return None
        (t0, b0), (t1, b1) = self._rate[0], self._rate[-1]
        return round((b1 - b0) * 8 / (t1 - t0) / 1000, 1) if t1 - t0 >= 1.0 else None

    def _set_state(self, state: OutputState, message: str, *, error: str | None = None,
                   retry_in_s: float | None = None) -> None:
        self._state, self._error, self._retry_in_s = state, error, retry_in_s
        self._announce(message)

    def _announce(self, message: str) -> None:
        try:
            self._on_status({**self.info(), "message": message})
        except Exception:   # a broken listener must not stop the stream
            log.exception("output %s: on_status failed", self.output_id)

    def _down_state(self) -> OutputState:
        return "reconnecting" if self._ever_live else "connecting"

    def _on_event(self, event: SenderEvent) -> None:
        now = asyncio.get_running_loop().time()
        if not self._sender_ready.is_set():
            self._sender_ready.set()
        self._last_event_at = now
        if event.kind == "tick":
            self._child = _Counters(**{k: event.counters.get(k, 0) for k in ("sent", "dropped", "bytes")})
            self._rate.append((now, self._done.bytes + self._child.bytes))
            while len(self._rate) > 2 and now - self._rate[0][0] > RATE_WINDOW_S:
                self._rate.popleft()
        elif event.kind == "want_keyframe":
            try:
                self._request_keyframe()
            except Exception:
                log.exception("output %s: request_keyframe failed", self.output_id)
        elif event.kind == "live":
            if self._ever_live:
                self._reconnects += 1
            self._ever_live = True
            self._respawn.connected(now)
            self._rate.clear()
            self._set_state("live", f"live on {self.masked_url}")
        elif event.kind == "down":
            self._rate.clear()
            retry = event.retry_in_s
            self._set_state(self._down_state(), f"{event.error}; retrying in {retry:.1f} s" if retry is not None
                            else str(event.error), error=event.error, retry_in_s=retry)
        elif event.kind == "fatal":
            self._fatal = True
            self._set_state("failed", f"failed: {event.error}", error=event.error)

    # ------------------------------------------------------------------ sender process

    async def _supervise(self) -> None:
        try:
            await self._keep_sending()
        except Exception as e:   # a bug here must show as a failed output, not a silent one
            log.exception("output %s: supervisor crashed", self.output_id)
            self._set_state("failed", "failed: internal error", error=f"internal error ({type(e).__name__})")

    async def _keep_sending(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop_requested.is_set():
            try:
                reason = await self._run_sender()
            except OSError as e:   # no process could be started (out of memory, file descriptors)
                reason = f"could not start the sender process ({e.strerror or type(e).__name__})"
            if self._stop_requested.is_set() or self._fatal:
                return
            delay = self._respawn.next_delay(loop.time())
            self._rate.clear()
            self._set_state(self._down_state(), f"{reason}; retrying in {delay:.1f} s", error=reason,
                            retry_in_s=delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), delay)

    async def _run_sender(self) -> str:
        """Run one sender process until it exits or stalls; the reason it ended."""
        loop = asyncio.get_running_loop()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "live.broadcast.sender", cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            start_new_session=True,   # a Ctrl-C to the server's terminal is the server's to handle
        )
        self._proc, self._child, self._written = proc, _Counters(), 0
        self._last_event_at = 0.0
        self._sender_ready = asyncio.Event()
        started = loop.time()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(self._config.to_line())
        pump = loop.create_task(self._pump(proc.stdin))
        reader = loop.create_task(self._read_events(proc.stdout))
        reason: str | None = None
        stop_deadline: float | None = None
        try:
            while not reader.done():
                await asyncio.wait({reader}, timeout=0.5)
                now = loop.time()
                if self._stop_requested.is_set() and stop_deadline is None:
                    stop_deadline = now + STOP_GRACE_S
                    pump.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pump
                    proc.stdin.close()          # end of input: the sender flushes and exits
                if stop_deadline is not None:
                    if now > stop_deadline:
                        break
                elif self._stalled(now, started):
                    reason = f"the ingest stopped responding (no progress for {self.stall_s:.0f} s)"
                    break
        finally:
            pump.cancel()
            reader.cancel()
            await asyncio.gather(pump, reader, return_exceptions=True)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            code = await proc.wait()
            self._retire_sender()
        return reason or f"the sender process ended unexpectedly (exit code {code})"

    def _stalled(self, now: float, started: float) -> bool:
        if self._last_event_at == 0.0:
            return now - started > SENDER_START_S
        pending = self._written - (self._child.sent + self._child.dropped)
        return pending > 0 and now - self._last_event_at > self.stall_s

    def _retire_sender(self) -> None:
        # Frames written but never acknowledged died with the sender.
        lost = max(0, self._written - self._child.sent - self._child.dropped)
        self._done.add(self._child)
        self._done.dropped += lost
        self._child, self._written, self._proc = _Counters(), 0, None

    async def _pump(self, stdin: asyncio.StreamWriter) -> None:
        # What piled up while the process started is stale: a connection that began with it would
        # put the whole broadcast that far behind.  The sender asks for a fresh keyframe instead.
        await self._sender_ready.wait()
        self._done.dropped += len(self._backlog)
        self._backlog.clear()
        try:
            while True:
                while not self._backlog:
                    self._wake.clear()
                    await self._wake.wait()
                stdin.write(encode_frame(self._backlog.popleft()))
                self._written += 1
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass   # the sender died; the supervisor sees it

    async def _read_events(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            try:
                event = SenderEvent.from_line(line)
            except (ValueError, KeyError, TypeError):
                log.warning("output %s: unreadable sender line %r", self.output_id, line[:200])
                continue
            self._on_event(event)
