"""The server's side of a worker process: start it, talk to it from the event loop, stop it.

``EngineWorker`` is what ``LiveSession`` holds.  Its process runs
``live.worker.loop.worker_main``; messages are ``live.worker.protocol``'s.
Processes come from a ``forkserver`` that has already imported torch, numpy and
the engine (``_PRELOAD``) and loaded the default mouth model
(``live.worker.engine_preload``), so a new session's worker is up in tens of
milliseconds instead of the seconds a fresh interpreter takes.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import socket
import time
from multiprocessing.connection import Connection

import numpy as np

from live.engine.audio_feed import Clip
from live.worker.loop import worker_main
from live.worker.protocol import (
    BitrateHint,
    ClipAudio,
    Failed,
    FrameReady,
    Interrupt,
    Interrupted,
    KeyframeRequest,
    MicAudio,
    MicPacket,
    Ready,
    RenderRequest,
    SetVariants,
    Stop,
    VideoVariant,
    WorkerError,
    WorkerSpec,
    encode_message,
    read_message,
)

# Imported by the forkserver once, so that every forked worker starts with them loaded.
_PRELOAD = [
    "numpy", "cv2", "torch", "av",
    "live.engine.session", "live.worker.protocol", "live.worker.loop", "models.avatar.avatar",
    "live.worker.engine_preload",
]


class WorkerDied(RuntimeError):
    pass


_context: mp.context.BaseContext | None = None


def process_context() -> mp.context.BaseContext:
    """The forkserver context, preloaded with the engine's imports (started on first use)."""
    global _context
    if _context is None:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        _context = ctx
    return _context


def warm_up() -> None:
    """Start the forkserver now (seconds: it imports torch) rather than at the first offer."""
    ctx = process_context()
    p = ctx.Process(target=os.getpid, daemon=True)
    p.start()
    p.join()


class EngineWorker:
    """The server's handle on one worker process (all methods run on the event loop)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.process: mp.process.BaseProcess | None = None
        self.ready: Ready | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._replies: asyncio.Queue[object] = asyncio.Queue()
        self._read_task: asyncio.Task | None = None
        self._dead: str | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        # No Process.is_alive() here: it polls the process (a syscall) and this runs for every mic
        # packet.  The read loop learns of a death from the socket's EOF and sets _dead.
        return self._dead is None and self._writer is not None

    async def start(self, timeout: float = 60.0) -> Ready:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        child_conn = Connection(theirs.detach())
        ctx = process_context()
        self.process = ctx.Process(target=worker_main, args=(child_conn, self.spec), daemon=True, name="lipstream-engine")
        # start() talks to the forkserver (which may still be importing torch): keep it off the loop.
        # Shielded: a session closed meanwhile must not leave a process started behind its back.
        launch = loop.run_in_executor(None, self.process.start)
        try:
            await asyncio.shield(launch)
            self._reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        except BaseException:
            await asyncio.gather(launch, return_exceptions=True)
            if self._writer is None:
                ours.close()   # the child reads EOF and exits
            await self.stop()
            raise
        finally:
            child_conn.close()
        self._read_task = asyncio.create_task(self._read_loop(), name="engine-worker-read")
        try:
            reply = await asyncio.wait_for(self._next_reply(), timeout)
        except BaseException:
            await self.stop()
            raise
        if isinstance(reply, Failed):
            await self.stop()
            raise WorkerDied(reply.error)
        if not isinstance(reply, Ready):
            await self.stop()
            raise WorkerDied(f"unexpected first message from the worker: {reply}")
        self.ready = reply
        return reply

    # -- fire-and-forget -----------------------------------------------------

    def send_mic(self, samples: np.ndarray, arrival: float) -> None:
        self._send(MicAudio(np.ascontiguousarray(samples, dtype=np.float32), arrival))

    def send_mic_packet(self, payload: bytes, arrival: float) -> None:
        self._send(MicPacket(payload, arrival))

    def send_clip(self, clip: Clip) -> None:
        self._send(ClipAudio(clip))

    def request_keyframe(self, variant: VideoVariant | None = None) -> None:
        self._send(KeyframeRequest(variant))

    def set_variants(self, variants: tuple[VideoVariant, ...]) -> None:
        self._send(SetVariants(tuple(variants)))

    def hint_bitrate(self, bitrate: int) -> None:
        self._send(BitrateHint(int(bitrate)))

    # -- request/reply -------------------------------------------------------

    def request(self, index: int, start_at: float, deadline: float, epoch: int, image: bool = True) -> None:
        """Ask for frame ``index`` (requests are answered in order, by ``next_frame``)."""
        self._send(RenderRequest(index, start_at, deadline, epoch, image))

    async def next_frame(self) -> FrameReady:
        while True:
            reply = await self._next_reply()
            if isinstance(reply, FrameReady):
                return reply
            if isinstance(reply, WorkerError):
                raise WorkerDied(reply.error)

    def send_interrupt(self, epoch: int) -> None:
        """Tell the worker to flush (its ``Interrupted`` acknowledgement is not waited for:
        the session silences what is already queued itself, by epoch)."""
        self._send(Interrupt(epoch))

    async def stop(self, timeout: float = 3.0) -> None:
        """End the worker process and release everything (idempotent)."""
        if self._writer is not None and self._dead is None:
            try:
                self._send(Stop())
                await asyncio.wait_for(self._writer.drain(), 1.0)
            except (ConnectionError, asyncio.TimeoutError, RuntimeError):
                pass
        self._dead = self._dead or "stopped"
        if self.process is not None and self.process.pid is not None:
            await self._wait_exit(timeout)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._read_task is not None:
            self._read_task.cancel()
            self._read_task = None

    async def _wait_exit(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.process.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.process.is_alive():
            self.process.kill()
            while self.process.is_alive():
                await asyncio.sleep(0.02)
        self.process.join(0)

    # -- plumbing ------------------------------------------------------------

    def _send(self, msg: object) -> None:
        if self._dead is not None or self._writer is None:
            raise WorkerDied(f"engine worker is gone ({self._dead or 'not started'})")
        self._writer.write(encode_message(msg))

    async def _next_reply(self) -> object:
        reply = await self._replies.get()
        if isinstance(reply, WorkerDied):
            self._replies.put_nowait(reply)  # every later caller learns it too
            raise reply
        return reply

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                msg = await read_message(self._reader)
                if isinstance(msg, Interrupted):
                    continue
                self._replies.put_nowait(msg)
        except (asyncio.IncompleteReadError, ConnectionError):
            code = self.process.exitcode if self.process else None
            self._dead = self._dead or f"engine process exited (code {code})"
            self._replies.put_nowait(WorkerDied(self._dead))
