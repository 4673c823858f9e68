"""The worker process's side: load the avatar and model once, then serve messages.

Features, the mouth model and the renderer are CPU work; on the server's event
loop they would stall every other session (and the GIL would serialise them even
in threads).  So each live session gets one worker process (``live.worker.client``
starts it) that runs ``worker_main``: it loads its avatar and the model once and
then answers "render frame i" requests from the session's frame pump.  Audio goes
in as small messages; each frame comes back already encoded
(``live.rtc.video_encoder``: a few kB of VP8 instead of 384 kB of pixels), with its
audio and timings, so the server process only does networking.

The messages are in ``live.worker.protocol``.  Everything here runs one message at
a time on one thread; ``WorkerLoop`` needs nothing but a ``Connection`` (a socket
pair in tests).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from multiprocessing.connection import Connection

from live.engine.audio_feed import AudioFeed, Clip, Marker
from live.rtc.audio_codec import MicDecoder, SpeechEncoder
from live.worker.protocol import (
    BitrateHint,
    ClipAudio,
    Failed,
    FrameReady,
    FrameTimings,
    Interrupt,
    Interrupted,
    KeyframeRequest,
    MicAudio,
    MicPacket,
    Ready,
    RenderRequest,
    SetVariants,
    Stop,
    WorkerError,
    WorkerSpec,
)
from live.worker.keying import BackgroundKeyer
from live.worker.picture_encoders import EncodeCost, PictureEncoders
from models.audio.pcm import SAMPLE_RATE

log = logging.getLogger(__name__)


class _Timer:
    """Profiling only: accumulates the wall time spent inside a wrapped method."""

    def __init__(self, obj: object, name: str) -> None:
        self.total = 0.0
        inner = getattr(obj, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - t0

        setattr(obj, name, timed)

    def take(self) -> float:
        """Milliseconds since the last ``take``."""
        value, self.total = self.total, 0.0
        return value * 1000.0


class WorkerLoop:
    """Everything the worker process does, one message at a time (no threads)."""

    def __init__(self, conn: Connection, spec: WorkerSpec) -> None:
        import cv2
        import torch

        from live.engine.session import EngineConfig, LipSyncSession
        from live.worker import engine_preload
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
        self.render_timer = _Timer(self.session.compositor, "compose")
        self.width, self.height = avatar.info.width, avatar.info.height
        self.encoders = PictureEncoders(self.width, self.height, spec.fps, spec.encoder, BackgroundKeyer(avatar))
        self.encoders.set_variants(spec.variants)
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
        self.mic_packets = 0                   # hook counters, reported with every frame
        self.keyframes_requested = 0

    # -- messages ------------------------------------------------------------

    def run(self) -> None:
        """Serve messages; render each requested frame at its time.

        The server sends requests ahead (two in flight), so the worker itself
        keeps the frame rhythm: a frame starts at ``start_at`` -- or as soon as a
        flowing microphone has delivered its audio, up to ``deadline`` -- with no
        process round trip on the critical path.  A request already behind its
        time is rendered at once.
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
            self.mic_packets += bool(msg.payload)
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
            self.keyframes_requested += 1
            self.encoders.request_keyframe(msg.variant)
        elif isinstance(msg, SetVariants):
            self.encoders.set_variants(msg.variants)
        elif isinstance(msg, BitrateHint):
            self.encoders.set_bitrate(msg.bitrate)
        else:
            raise TypeError(f"unexpected message {type(msg).__name__}")

    def _audio_complete(self) -> bool:
        """The next frame's audio is all in, or nothing is coming that we should wait for."""
        need_end = self.timeline.samples_needed(self.session.frames_out)
        return self.feed.position >= need_end or not self.feed.mic_flowing

    def _start_clip(self, clip: Clip) -> None:
        cut = self.timeline.frame_start_sample(self.session.frames_out)
        idle = not self.feed.mic_flowing and self.feed.clip_backlog == 0 and self.last_openness == 0.0
        # Only an utterance's head may jump the queue, and only if it already holds the
        # next frame's whole need.  A streamed piece arriving at real time does not: with
        # the padding dropped it would be padded again at once, and dropping padding resets
        # voice activity, so a stream of 20 ms pieces kept the mouth shut for a whole
        # utterance.  Such a stream plays after the padding, which then serves as its
        # jitter buffer.
        covers_need = len(clip.samples) >= self.timeline.samples_needed(self.session.frames_out) - cut
        if clip.first and covers_need and idle and self.real_end <= cut < self.feed.position:
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

        frame = self.session.next_frame(pad_silence=True, draw=req.image)
        assert frame is not None
        cost = EncodeCost()
        pictures = ()
        if req.image:
            pictures = self.encoders.encode(frame.picture, self._video_pts(index), cost)
        t0 = time.perf_counter()
        audio_packets = tuple(self.speech_encoder.encode(frame.audio))
        cost.encode_ms += (time.perf_counter() - t0) * 1000.0

        end = self.timeline.frame_start_sample(index + 1)
        markers = tuple(m for m in self.pending_markers if m.position < end)
        self.pending_markers = [m for m in self.pending_markers if m.position >= end]
        mic = tuple(a for pos, a in self.pending_mic if pos < end)
        self.pending_mic = [c for c in self.pending_mic if c[0] >= end]
        self.last_openness = frame.shape.openness
        features_ms, self.features_s = self.features_s * 1000.0, 0.0
        decode_ms, self.decode_s = self.decode_s * 1000.0, 0.0
        buffered = self.session.buffered_seconds + (self.feed.mic_backlog + self.feed.clip_backlog) / SAMPLE_RATE
        return FrameReady(
            index=index,
            epoch=self.epoch,
            has_image=req.image,
            pictures=pictures,
            audio_packets=audio_packets,
            pcm=frame.audio.tobytes(),
            openness=frame.shape.openness,
            speaking=frame.speaking,
            markers=markers,
            mic_arrivals=mic,
            padded=padded,
            buffered_s=buffered,
            underruns=self.feed.underruns,
            skipped_s=self.feed.skipped_samples / SAMPLE_RATE,
            headroom_s=self.feed.headroom_s() if self.feed.mic_flowing else 0.0,
            timings=FrameTimings(
                decode_ms=decode_ms,
                features_ms=features_ms,
                model_ms=self.model_timer.take(),
                render_ms=self.render_timer.take(),
                convert_ms=cost.convert_ms,
                encode_ms=cost.encode_ms,
                waited_ms=waited * 1000.0,
                cpu_ms=(time.process_time() - cpu0) * 1000.0,
            ),
            mic_packets=self.mic_packets,
            keyframes_requested=self.keyframes_requested,
        )


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """Entry point of the worker process."""
    try:
        loop = WorkerLoop(conn, spec)
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
