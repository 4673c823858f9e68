"""A live session's engine, running in a process of its own.

Features, the mouth model and the renderer are CPU work; on the server's event
loop they would stall every other session (and the GIL would serialise them even
in threads).  So each session gets one worker process that loads its avatar and
the model once and then answers "render frame i" requests from the session's
frame pump.  Audio goes in as small messages; each frame comes back already
encoded (``live.rtc.video_encoder``: a few kB of VP8 instead of 384 kB of pixels),
with its audio and timings, so the server process only does networking.

Protocol (pickled dataclasses over a socket pair, framed like
``multiprocessing.connection``): the worker starts with ``Ready`` (or
``Failed``), then answers each ``RenderRequest`` with a ``FrameReady`` (in
order, each at its time) and ``Interrupt`` with ``Interrupted``; ``MicAudio``,
``ClipAudio``, ``KeyframeRequest`` and ``BitrateHint`` are fire-and-forget.

Processes come from a ``forkserver`` that has already imported torch, numpy and
the engine, so a new session's worker is up in tens of milliseconds instead of
the seconds a fresh interpreter takes.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import pickle
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from live.rtc.audio_codec import MicDecoder, SpeechEncoder
from live.engine.audio_feed import AudioFeed, Clip, FeedConfig, Marker
from live.rtc.video_encoder import VideoEncoder

log = logging.getLogger(__name__)

_PRELOAD = ["numpy", "cv2", "torch", "av", "live.engine.session", "live.worker.engine_worker", "models.avatar.avatar", "live.worker.engine_preload"]


# -- messages -------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    avatar_id: str
    avatar_dir: Path
    fps: float = 25.0
    checkpoint: Path | None = None
    feed: FeedConfig = field(default_factory=FeedConfig)
    video_codec: str = "vp8"          # what the peer negotiated: vp8 or h264


@dataclass(frozen=True)
class Ready:
    width: int
    height: int
    fps: float
    load_s: float


@dataclass(frozen=True)
class Failed:
    error: str


@dataclass(frozen=True)
class KeyframeRequest:
    pass                  # the viewer lost a picture (PLI): send a full frame next


@dataclass(frozen=True)
class BitrateHint:
    bitrate: int          # the receiver's bandwidth estimate (REMB), bits per second


@dataclass(frozen=True)
class MicPacket:
    payload: bytes        # one Opus packet from the viewer's microphone (decoded in the worker)
    arrival: float        # time.monotonic() when the server received it


@dataclass(frozen=True)
class MicAudio:
    samples: np.ndarray   # float32 16 kHz mono (fallback when packets can't be tapped)
    arrival: float


@dataclass(frozen=True)
class ClipAudio:
    clip: Clip


@dataclass(frozen=True)
class RenderRequest:
    index: int
    start_at: float       # monotonic: not before (the frame's moment, minus one audio packet)
    deadline: float       # monotonic: render by then even if mic audio is missing
    epoch: int
    image: bool = True    # False: the server is behind; advance the stream without drawing


@dataclass(frozen=True)
class Interrupt:
    epoch: int


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class FrameTimings:
    decode_ms: float      # microphone Opus decoding + resampling since the previous frame
    features_ms: float    # mel + voice activity on the pushed audio
    model_ms: float       # mouth network
    render_ms: float      # mouth renderer + compositor
    convert_ms: float     # BGR -> I420
    encode_ms: float      # VP8 / H.264 + Opus
    waited_ms: float      # waiting for late microphone audio
    cpu_ms: float         # process CPU time spent on this frame


@dataclass(frozen=True)
class FrameReady:
    index: int
    epoch: int
    has_image: bool                         # False when skipped to catch up (no new picture)
    video: bytes                            # the encoded picture (empty: nothing to send)
    keyframe: bool
    audio_packets: tuple[bytes, ...]        # Opus packets completed by this frame's audio
    openness: float
    speaking: bool
    markers: tuple[Marker, ...]             # utterance starts/ends heard in this frame
    mic_arrivals: tuple[float, ...]         # arrival times of the mic chunks shown in this frame
    padded: int                             # silence samples the engine had to insert
    buffered_s: float                       # audio queued beyond this frame (engine + feed)
    underruns: int
    skipped_s: float
    timings: FrameTimings


@dataclass(frozen=True)
class Interrupted:
    epoch: int
    dropped: tuple[str, ...]                # utterance ids whose audio was discarded


@dataclass(frozen=True)
class WorkerError:
    error: str


# -- the worker process -----------------------------------------------------------


class _Timer:
    """Accumulates wall time spent inside a wrapped method.

    With ``skippable``, setting ``skip`` makes the method return its previous
    result instead of running: a frame the server has no time to draw repeats
    the last picture while the engine still advances its audio and mouth state.
    """

    def __init__(self, obj: object, name: str, skippable: bool = False) -> None:
        self.total = 0.0
        self.skip = False
        self._last = None
        inner = getattr(obj, name)

        def timed(*args, **kwargs):
            if self.skip and skippable and self._last is not None:
                return self._last
            t0 = time.perf_counter()
            try:
                self._last = inner(*args, **kwargs)
                return self._last
            finally:
                self.total += time.perf_counter() - t0

        setattr(obj, name, timed)

    def take(self) -> float:
        value, self.total = self.total, 0.0
        return value * 1000.0


class _WorkerLoop:
    """Everything the worker process does, one message at a time (no threads)."""

    def __init__(self, conn: Connection, spec: WorkerSpec) -> None:
        import cv2
        import torch

        from live.worker import engine_preload
        from live.engine.session import EngineConfig, LipSyncSession
        from models.avatar.avatar import default_avatar, load_avatar

        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        t0 = time.perf_counter()
        self.conn = conn
        if spec.avatar_id == "default":
            avatar = default_avatar(spec.avatar_dir)
        else:
            avatar = load_avatar(spec.avatar_id, spec.avatar_dir)
        predictor = engine_preload.predictor(spec.checkpoint)
        self.session = LipSyncSession(avatar, predictor, EngineConfig(fps=spec.fps))
        self.timeline = self.session.timeline
        self.feed = AudioFeed(spec.feed)
        self.model_timer = _Timer(predictor, "predict_arrays")
        self.render_timer = _Timer(self.session.compositor, "compose", skippable=True)
        self.width, self.height = avatar.info.width, avatar.info.height
        self.encoder = VideoEncoder(spec.video_codec, self.width, self.height, spec.fps)
        self.speech_encoder = SpeechEncoder()
        self.mic_decoder = MicDecoder()
        self.load_s = time.perf_counter() - t0
        self.requests: deque[RenderRequest] = deque()
        self.epoch = 0
        self.real_end = 0                      # stream position after the last real (not padded) sample
        self.pending_markers: list[Marker] = []
        self.pending_mic: list[tuple[int, float]] = []
        self.features_s = 0.0
        self.decode_s = 0.0
        self.last_openness = 0.0
        self._cv2 = cv2

    # -- messages ------------------------------------------------------------

    def run(self) -> None:
        """Serve messages; render each requested frame at its time.

        The server sends requests ahead (two in flight), so the worker itself
        keeps the frame rhythm: a frame starts at ``start_at`` -- or as soon as a
        flowing microphone has delivered its audio, up to ``deadline`` -- with no
        process round trip on the critical path.
        """
        self.conn.send(Ready(self.width, self.height, self.timeline.fps, self.load_s))
        while True:
            timeout = None
            if self.requests:
                req = self.requests[0]
                now = time.monotonic()
                if now >= req.start_at:
                    if self._drain():
                        return
                    self._feed_engine(self.timeline.samples_needed(self.session.frames_out), now)
                    if self._audio_complete() or now >= req.deadline:
                        self.conn.send(self._render(self.requests.popleft()))
                        continue
                    timeout = req.deadline - now
                else:
                    timeout = req.start_at - now
            if timeout is None or self.conn.poll(max(0.0, timeout)):
                msg = self.conn.recv()
                if isinstance(msg, Stop):
                    return
                self.handle(msg)

    def _drain(self) -> bool:
        """Handle every message already here (an interrupt must beat the next render).
        Returns True on Stop."""
        while self.conn.poll(0):
            msg = self.conn.recv()
            if isinstance(msg, Stop):
                return True
            self.handle(msg)
        return False

    def handle(self, msg: object) -> None:
        if isinstance(msg, MicPacket):
            t0 = time.perf_counter()
            samples = self.mic_decoder.decode(msg.payload)
            self.decode_s += time.perf_counter() - t0
            self.feed.add_mic(samples, msg.arrival)
        elif isinstance(msg, MicAudio):
            self.feed.add_mic(msg.samples, msg.arrival)
        elif isinstance(msg, ClipAudio):
            self._start_clip(msg.clip)
        elif isinstance(msg, RenderRequest):
            self.requests.append(msg)
        elif isinstance(msg, Interrupt):
            self.conn.send(self._interrupt(msg.epoch))
        elif isinstance(msg, KeyframeRequest):
            self.encoder.request_keyframe()
        elif isinstance(msg, BitrateHint):
            self.encoder.set_bitrate(msg.bitrate)
        else:
            raise TypeError(f"unexpected message {type(msg).__name__}")

    def _audio_complete(self) -> bool:
        """The next frame's audio is all in, or nothing is coming that we should wait for."""
        need_end = self.timeline.samples_needed(self.session.frames_out)
        return self.feed.position >= need_end or not self.feed.mic_flowing

    def _start_clip(self, clip: Clip) -> None:
        cut = self.timeline.frame_start_sample(self.session.frames_out)
        idle = not self.feed.mic_flowing and self.feed.clip_backlog == 0 and self.last_openness == 0.0
        if idle and self.real_end <= cut < self.feed.position:
            # Only padding lies between the next frame and the stream's end: drop it so
            # the speech starts with the very next frame instead of one look-ahead later.
            self.session.interrupt()
            self.feed.rewind(cut)
        self.feed.add_clip(clip)

    def _video_pts(self, index: int) -> int:
        return int(round(index * 90_000 / self.timeline.fps))

    def _interrupt(self, epoch: int) -> Interrupted:
        self.epoch = epoch
        cut = self.timeline.frame_start_sample(self.session.frames_out)
        self.session.interrupt()
        dropped = self.feed.interrupt(cut)
        ids = {c.utterance_id for c in dropped}
        ids.update(m.utterance_id for m in self.pending_markers if m.position >= cut)
        self.pending_markers = [m for m in self.pending_markers if m.position < cut]
        self.pending_mic = [c for c in self.pending_mic if c[0] < cut]
        self.real_end = min(self.real_end, cut)
        return Interrupted(epoch, tuple(sorted(ids)))

    # -- rendering -----------------------------------------------------------

    def _feed_engine(self, need_end: int, now: float) -> None:
        n = need_end - self.feed.position
        if n <= 0:
            return
        taken = self.feed.take(n, now)
        if len(taken.samples):
            t0 = time.perf_counter()
            self.session.push_audio(taken.samples)
            self.features_s += time.perf_counter() - t0
            self.real_end = self.feed.position
        self.pending_markers.extend(taken.markers)
        self.pending_mic.extend(taken.mic_chunks)

    def _render(self, req: RenderRequest) -> FrameReady | WorkerError:
        cpu0 = time.process_time()
        index = self.session.frames_out
        if req.index != index:
            return WorkerError(f"frame {req.index} requested but the engine is at frame {index}")
        need_end = self.timeline.samples_needed(index)
        self._feed_engine(need_end, time.monotonic())
        waited = max(0.0, time.monotonic() - req.start_at)
        padded = max(0, need_end - self.feed.position)
        self.feed.note_padding(padded)   # next_frame pads exactly this much

        self.render_timer.skip = not req.image
        try:
            frame = self.session.next_frame(pad_silence=True)
        finally:
            self.render_timer.skip = False
        assert frame is not None
        video, keyframe, convert_ms, encode_ms = b"", False, 0.0, 0.0
        if req.image:
            t0 = time.perf_counter()
            i420 = self._cv2.cvtColor(frame.image, self._cv2.COLOR_BGR2YUV_I420)
            t1 = time.perf_counter()
            keyframe = self.encoder.will_send_keyframe
            video = self.encoder.encode(i420, self._video_pts(index))
            convert_ms, encode_ms = (t1 - t0) * 1000.0, (time.perf_counter() - t1) * 1000.0
        t0 = time.perf_counter()
        audio_packets = tuple(self.speech_encoder.encode(frame.audio))
        encode_ms += (time.perf_counter() - t0) * 1000.0

        end = self.timeline.frame_start_sample(index + 1)
        markers = tuple(m for m in self.pending_markers if m.position < end)
        self.pending_markers = [m for m in self.pending_markers if m.position >= end]
        mic = tuple(a for pos, a in self.pending_mic if pos < end)
        self.pending_mic = [c for c in self.pending_mic if c[0] >= end]
        self.last_openness = frame.shape.openness
        features_ms, self.features_s = self.features_s * 1000.0, 0.0
        decode_ms, self.decode_s = self.decode_s * 1000.0, 0.0
        buffered = self.session.buffered_seconds + (self.feed.mic_backlog + self.feed.clip_backlog) / 16000
        return FrameReady(
            index=index,
            epoch=self.epoch,
            has_image=req.image,
            video=video,
            keyframe=keyframe,
            audio_packets=audio_packets,
            openness=frame.shape.openness,
            speaking=frame.speaking,
            markers=markers,
            mic_arrivals=mic,
            padded=padded,
            buffered_s=buffered,
            underruns=self.feed.underruns,
            skipped_s=self.feed.skipped_samples / 16000,
            timings=FrameTimings(
                decode_ms=decode_ms,
                features_ms=features_ms,
                model_ms=self.model_timer.take(),
                render_ms=self.render_timer.take(),
                convert_ms=convert_ms,
                encode_ms=encode_ms,
                waited_ms=waited * 1000.0,
                cpu_ms=(time.process_time() - cpu0) * 1000.0,
            ),
        )


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """Entry point of the worker process."""
    try:
        loop = _WorkerLoop(conn, spec)
    except Exception as e:  # avatar or model unusable: tell the server why, then exit
        conn.send(Failed(f"{type(e).__name__}: {e}"))
        return
    try:
        loop.run()
    except (EOFError, ConnectionError, KeyboardInterrupt):
        pass  # the server went away
    except Exception as e:
        log.exception("engine worker failed")
        try:
            conn.send(WorkerError(f"{type(e).__name__}: {e}"))
        except OSError:
            pass


# -- the server side --------------------------------------------------------------


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
        self.on_interrupted: Callable[[Interrupted], None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self._dead is None and self.process is not None and self.process.is_alive()

    async def start(self, timeout: float = 60.0) -> Ready:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        child_conn = Connection(theirs.detach())
        ctx = process_context()
        self.process = ctx.Process(target=worker_main, args=(child_conn, self.spec), daemon=True, name="lipstream-engine")
        # start() talks to the forkserver (which may still be importing torch): keep it off the loop.
        await loop.run_in_executor(None, self.process.start)
        child_conn.close()
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        self._read_task = asyncio.create_task(self._read_loop(), name="engine-worker-read")
        reply = await asyncio.wait_for(self._next_reply(), timeout)
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

    def request_keyframe(self) -> None:
        self._send(KeyframeRequest())

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
        """Tell the worker to flush; it acknowledges through ``on_interrupted``."""
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
        payload = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        # Same framing as multiprocessing.connection, so the worker can use Connection.recv().
        self._writer.write(struct.pack("!i", len(payload)) + payload)

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
                header = await self._reader.readexactly(4)
                (size,) = struct.unpack("!i", header)
                if size == -1:
                    (size,) = struct.unpack("!Q", await self._reader.readexactly(8))
                msg = pickle.loads(await self._reader.readexactly(size))
                if isinstance(msg, Interrupted):
                    if self.on_interrupted is not None:
                        self.on_interrupted(msg)
                    continue
                self._replies.put_nowait(msg)
        except (asyncio.IncompleteReadError, ConnectionError):
            code = self.process.exitcode if self.process else None
            self._dead = self._dead or f"engine process exited (code {code})"
            self._replies.put_nowait(WorkerDied(self._dead))
