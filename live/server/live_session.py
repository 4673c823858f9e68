"""One viewer's live session: peer connection, engine worker, tracks, speech, events.

Data flow::

    mic track ──resample──► worker (AudioFeed → LipSyncSession → renderer)
    say/audio ──TTS──────►    │
                              ▼  one request per frame tick (the frame pump)
                         FrameReady ──► video track (image) + audio track (its audio)
                                                     │ when aiortc takes the frame
                                                     ▼
                                     speech_start / speech_end events, latency stats

The frame pump asks for frame ``i`` at ``start + i/fps`` of the media clock and
puts the answer into both tracks together; that and the index-derived timestamps
are the whole of the A/V sync story.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from live.engine.audio_feed import Clip, FeedConfig
from live.rtc import aiortc_hooks
from live.rtc.audio_codec import silence_packet
from live.rtc.media_clock import MediaClock
from live.rtc.signaling import Offer, answer, negotiate
from live.rtc.tracks import AvatarAudioTrack, AvatarVideoTrack
from live.server.config import ServerConfig
from live.server.events import EventHub
from live.server.speech_queue import SpeechQueue, SpeechRequest
from live.server.tts_service import TtsError, TtsService
from live.worker.catch_up import CatchUpPolicy
from live.worker.client import EngineWorker, WorkerDied
from live.worker.protocol import FrameReady, WorkerSpec
from models.audio.audio_io import StreamResampler

log = logging.getLogger(__name__)

_DISCONNECT_GRACE_S = 5.0
_MAX_AUDIO_DELAY_S = 0.06
_EARLY_S = 0.020
_WINDOW = 250           # frames / latency samples kept for statistics
_TIMING_NAMES = ("decode_ms", "features_ms", "model_ms", "render_ms", "convert_ms", "encode_ms", "waited_ms", "cpu_ms")


@dataclass
class Utterance:
    id: str
    text: str
    source: str
    requested: float                 # monotonic time of the HTTP request
    state: str = "queued"            # queued -> speaking -> done


@dataclass
class _Window:
    """Recent values of one statistic."""

    values: deque = field(default_factory=lambda: deque(maxlen=_WINDOW))

    def add(self, v: float) -> None:
        self.values.append(v)

    def pct(self, q: float) -> float | None:
        return float(np.percentile(np.fromiter(self.values, float), q)) if self.values else None

    def mean(self) -> float | None:
        return float(np.mean(np.fromiter(self.values, float))) if self.values else None


@dataclass
class _Histogram:
    """Whole-session distribution in 1 ms bins (the window above forgets; this doesn't)."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(2001, dtype=np.int64))

    def add(self, ms: float) -> None:
        self.counts[min(max(int(ms), 0), len(self.counts) - 1)] += 1

    def pct(self, q: float) -> float | None:
        total = int(self.counts.sum())
        if total == 0:
            return None
        return float(np.searchsorted(np.cumsum(self.counts), q / 100.0 * total))


def _r(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(v, nd)


class LiveSession:
    def __init__(
        self,
        session_id: str,
        avatar_id: str,
        config: ServerConfig,
        tts: TtsService,
        on_closed: Callable[["LiveSession"], None] | None = None,
    ) -> None:
        self.id = session_id
        self.avatar_id = avatar_id
        self.config = config
        self.on_closed = on_closed
        self.created = time.time()
        self.clock = MediaClock(config.fps)
        self.events = EventHub()
        self.speech = SpeechQueue(tts, self._send_clip, self._on_speech_error)
        self.worker: EngineWorker | None = None   # started once the peer's ICE connects
        self._worker_spec: WorkerSpec | None = None
        self._worker_start: asyncio.Task | None = None
        self._early_clips: list[Clip] = []          # speech queued before the worker was up
        self.connected = False
        self._media_started = False
        self._background: set[asyncio.Task] = set()  # fire-and-forget tasks, kept referenced
        self.video = AvatarVideoTrack(self.clock, on_leave=self._on_frame_leaving, on_overflow=self._request_keyframe)
        self.audio: AvatarAudioTrack | None = AvatarAudioTrack(self.clock)
        self.pc = None
        self.epoch = 0
        self.closed = False
        self.close_reason: str | None = None
        self.last_activity = time.monotonic()
        self._mic_track: MediaStreamTrack | None = None
        self._mic_tapped = False
        self.mic_packets = 0                 # hook counters (tests/test_rtc_hooks.py)
        self.keyframe_requests = 0
        self.keyframes_sent = 0
        self._tasks: list[asyncio.Task] = []
        self._pending: deque[FrameReady] = deque()
        self._utterances: dict[str, Utterance] = {}
        self._close_lock = asyncio.Lock()
        self._disconnect_timer: asyncio.TimerHandle | None = None
        # statistics
        self._leave_times: deque[float] = deque(maxlen=_WINDOW)
        self._latency = _Window()          # mic sample arrival -> its frame leaving, ms
        self._latency_all = _Histogram()
        self._lateness = _Window()         # frame leaving - frame due, ms
        self._timings = {name: _Window() for name in _TIMING_NAMES}   # worker stage means, ms
        self._last: FrameReady | None = None
        self.frames_sent = 0
        self.late_frames = 0
        self.catch_up = CatchUpPolicy()
        self.mic_chunks = 0
        self._speaking = False
        self._bitrate_hint: int | None = None

    # -- life cycle ----------------------------------------------------------

    async def open(self, offer: Offer, peer: str | None = None) -> RTCSessionDescription:
        """Negotiate and attach the tracks; returns the answer.

        ``peer`` is the HTTP client's address (ICE checks go only to it, see
        ``live.rtc.ice_guard``).  The worker process starts only once the peer's
        ICE connects: an offer that never connects costs no process and no avatar
        in memory, and is dropped after ``connect_timeout_s``."""
        neg = await negotiate(offer, self.config.ice_servers, self.config.video_codec,
                              on_track=self._on_track, peer=peer)
        self.pc = neg.pc
        try:
            self.pc.on("connectionstatechange", self._on_connection_state)
            self.pc.on("iceconnectionstatechange", self._on_ice_state)
            if neg.mic_expected and neg.audio_transceiver is not None:
                self._mic_tapped = aiortc_hooks.install_mic_tap(neg.audio_transceiver.receiver, self._on_mic_packet)
            self._worker_spec = WorkerSpec(
                self.avatar_id, self.config.avatar_dir, self.config.fps, self.config.mouth_checkpoint,
                FeedConfig(), neg.video_codec,
            )
            self._video_sender = neg.video.sender
            aiortc_hooks.forward_keyframe_requests(neg.video.sender, self._on_keyframe_request)
            neg.video.sender.replaceTrack(self.video)
            if neg.audio is not None:
                neg.audio.sender.replaceTrack(self.audio)
            else:
                self.audio = None  # the client can't receive audio; nobody would drain the track
            desc = await answer(self.pc)
        except BaseException:
            await self.close("failed to start")
            raise
        self.speech.start()
        self._spawn(self._watchdog(), "watchdog")
        return desc

    async def close(self, reason: str = "closed") -> None:
        """End everything this session holds (idempotent, safe from any task)."""
        async with self._close_lock:
            if self.closed:
                return
            self.closed = True
            self.close_reason = reason
        log.info("session %s closing: %s", self.id, reason)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self._disconnect_timer is not None:
            self._disconnect_timer.cancel()
        await self.speech.close()
        self.video.stop()
        if self.audio is not None:
            self.audio.stop()
        if self.pc is not None:
            try:
                await asyncio.wait_for(self.pc.close(), 5.0)
            except (asyncio.TimeoutError, Exception):
                log.warning("session %s: peer connection did not close cleanly", self.id)
        if self._worker_start is not None:
            await asyncio.gather(self._worker_start, return_exceptions=True)
        if self.worker is not None:
            await self.worker.stop()
        for u in self._utterances.values():
            if u.state == "speaking":
                self.events.publish("speech_end", utterance_id=u.id, text=u.text, interrupted=True)
        self.events.publish("closed", reason=reason)
        self.events.close()
        if self.on_closed is not None:
            self.on_closed(self)

    def _spawn(self, coro, name: str) -> asyncio.Task:
        """A task that lives as long as the session (cancelled by ``close``)."""
        task = asyncio.create_task(coro, name=f"{name}-{self.id}")
        self._tasks.append(task)
        return task

    def _close_soon(self, reason: str) -> None:
        """Close from a callback that can't await: the task is kept referenced until
        done, and an exception in it is logged rather than lost."""
        task = asyncio.create_task(self.close(reason), name=f"close-{self.id}")
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session %s: %s failed", self.id, task.get_name(), exc_info=task.exception())

    def _on_ice_state(self) -> None:
        # ICE is through: the peer is real.  Start the worker now, while DTLS runs.
        if self.pc is not None and self.pc.iceConnectionState == "completed":
            self._ensure_worker()

    def _ensure_worker(self) -> None:
        if self._worker_start is None and not self.closed:
            self._worker_start = self._spawn(self._start_worker(), "worker-start")

    async def _start_worker(self) -> None:
        assert self._worker_spec is not None
        self.worker = EngineWorker(self._worker_spec)
        try:
            await self.worker.start()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("session %s: the engine did not start", self.id)
            self.events.publish("error", message=f"engine failed to start: {e}")
            self._close_soon("engine failed to start")
            raise
        if self.epoch:
            # Interrupts that came before the worker existed: its frames must carry the session's epoch,
            # or every one of them would read as stale and play as silence.
            self.worker.send_interrupt(self.epoch)
        for clip in self._early_clips:
            self.worker.send_clip(clip)
        self._early_clips.clear()

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState if self.pc else "closed"
        if state == "connected":
            self.connected = True
            if self._disconnect_timer is not None:
                self._disconnect_timer.cancel()
                self._disconnect_timer = None
            self._ensure_worker()
            if not self._media_started:
                self._media_started = True
                self._spawn(self._start_media(), "media")
        elif state in ("failed", "closed"):
            ice = self.pc.iceConnectionState if self.pc else "?"
            self._close_soon(f"connection {state} (ICE {ice})")
        elif state == "disconnected" and self._disconnect_timer is None:
            loop = asyncio.get_running_loop()
            self._disconnect_timer = loop.call_later(_DISCONNECT_GRACE_S, self._close_soon, "peer disconnected")

    async def _start_media(self) -> None:
        """Once the worker is up: start the media clock, the frame pump and (untapped) mic reading."""
        assert self._worker_start is not None
        try:
            await asyncio.shield(self._worker_start)
        except Exception:
            return   # _start_worker reported it and is closing the session
        if self.closed:
            return
        self.clock.begin()
        self._spawn(self._pump(), "pump")
        if self._mic_track is not None and not self._mic_tapped:
            self._spawn(self._read_mic(self._mic_track), "mic")

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._mic_track is None:
            self._mic_track = track

    # -- speech --------------------------------------------------------------

    def say(self, text: str, voice: str | None = None, interrupt: bool = False) -> Utterance:
        """Queue text (raises TtsError for bad input before anything is interrupted)."""
        clean, resolved = self.speech.check(text, voice)
        if interrupt:
            self.interrupt()
        return self._track_utterance(self.speech.say_checked(clean, resolved))

    def play_audio(self, samples: np.ndarray, label: str, interrupt: bool = False) -> Utterance:
        if not len(samples):
            raise TtsError("audio is empty")
        if interrupt:
            self.interrupt()
        return self._track_utterance(self.speech.play(samples, label))

    def interrupt(self) -> dict:
        """Stop speaking now: text queue, synthesis, engine audio, queued track audio."""
        self.last_activity = time.monotonic()
        self.epoch += 1
        self._early_clips.clear()   # speech asked for before the peer connected is cancelled too
        dropped = self.speech.interrupt()
        silenced = self.audio.silence_pending(silence_packet()) if self.audio is not None else 0
        if self.worker is not None and self.worker.alive:
            try:
                self.worker.send_interrupt(self.epoch)
            except WorkerDied:
                pass
        ended = []
        for u in self._utterances.values():
            if u.state == "speaking":
                u.state = "done"
                ended.append(u.id)
                self.events.publish("speech_end", utterance_id=u.id, text=u.text, interrupted=True)
            elif u.state == "queued":
                u.state = "done"
                self.events.publish("speech_cancelled", utterance_id=u.id, text=u.text)
        self._forget_done()
        return {"interrupted": ended, "cancelled": [r.utterance_id for r in dropped], "silenced_packets": silenced}

    def _track_utterance(self, req: SpeechRequest) -> Utterance:
        self.last_activity = time.monotonic()
        u = Utterance(req.utterance_id, req.text, req.source, time.monotonic())
        self._utterances[u.id] = u
        self.events.publish("speech_queued", utterance_id=u.id, text=u.text, source=u.source)
        return u

    def _send_clip(self, clip: Clip) -> None:
        if self.closed:
            return
        if self.worker is None or self.worker.ready is None:
            self._early_clips.append(clip)   # speech asked for before the peer connected
        elif self.worker.alive:
            self.worker.send_clip(clip)

    def _on_keyframe_request(self) -> None:
        """The viewer sent a PLI/FIR (aiortc_hooks.forward_keyframe_requests)."""
        self.keyframe_requests += 1
        self._request_keyframe()

    def _request_keyframe(self) -> None:
        if not self.closed and self.worker is not None and self.worker.alive:
            self.worker.request_keyframe()

    def _on_speech_error(self, utterance_id: str, message: str) -> None:
        self.events.publish("error", utterance_id=utterance_id, message=message)
        u = self._utterances.get(utterance_id)
        if u is not None and u.state == "queued":
            u.state = "done"

    def _forget_done(self) -> None:
        if len(self._utterances) > 200:
            for k in [k for k, u in self._utterances.items() if u.state == "done"][:-100]:
                del self._utterances[k]

    # -- media ---------------------------------------------------------------

    async def _pump(self) -> None:
        """Frames in order: two requests in flight, the worker renders each at its moment.

        Every frame goes into both tracks at once.  If the machine falls behind,
        ``self.catch_up`` (live.worker.catch_up) has frames advanced without a
        picture until the pump is back on time.
        """
        margin = self.config.jitter_margin_s
        next_request = 0

        def request(index: int, draw: bool) -> None:
            due = self.clock.time_of_frame(index)
            # One audio packet early: with a microphone the worker starts the frame the
            # moment its audio is complete (up to ``margin`` after its moment).
            self.worker.request(index, due - _EARLY_S, due + margin, self.epoch, image=draw)

        try:
            for _ in range(2):
                request(next_request, True)
                next_request += 1
            while not self.closed:
                frame = await self.worker.next_frame()
                self._deliver(frame)
                behind = time.monotonic() - self.clock.time_of_frame(frame.index)
                request(next_request, self.catch_up.draw(behind, self.clock.fps))
                next_request += 1
        except WorkerDied as e:
            self.events.publish("error", message=f"engine stopped: {e}")
            self._close_soon(f"engine failed: {e}")
        except asyncio.CancelledError:
            pass

    def _deliver(self, frame: FrameReady) -> None:
        stale = frame.epoch != self.epoch   # rendered before an interrupt: its sound must not play
        audio = frame.audio_packets
        if stale:
            audio = tuple(silence_packet() for _ in audio)
            frame = _without_markers(frame)
        if frame.has_image and frame.video:
            self.video.put(frame.index, av.Packet(frame.video))
            self.keyframes_sent += frame.keyframe
        if self.audio is not None:
            self.audio.put(frame.index, audio)
        self._pending.append(frame)
        self._last = frame
        t = frame.timings
        for name, window in self._timings.items():
            window.add(getattr(t, name))

    def _on_frame_leaving(self, index: int, now: float) -> None:
        """aiortc took frame ``index`` for encoding: the viewer sees (and hears) it now."""
        while self._pending and self._pending[0].index <= index:
            frame = self._pending.popleft()
            for m in frame.markers:
                u = self._utterances.get(m.utterance_id)
                if u is None or u.state == "done":
                    continue
                if m.kind == "start" and u.state == "queued":
                    u.state = "speaking"
                    self.events.publish(
                        "speech_start", utterance_id=u.id, text=u.text, source=u.source,
                        latency_ms=round((now - u.requested) * 1000.0, 1), frame=frame.index,
                    )
                elif m.kind == "end":
                    u.state = "done"
                    self.events.publish("speech_end", utterance_id=u.id, text=u.text, interrupted=False, frame=frame.index)
            for arrival in frame.mic_arrivals:
                self._latency.add((now - arrival) * 1000.0)
                self._latency_all.add((now - arrival) * 1000.0)
            self.mic_chunks += len(frame.mic_arrivals)
            if frame.speaking != self._speaking:
                self._speaking = frame.speaking
                self.events.publish("voice_activity", speaking=frame.speaking, frame=frame.index)
                if frame.speaking:
                    self.last_activity = now
        lateness = now - self.clock.time_of_frame(index)
        self._lateness.add(lateness * 1000.0)
        if self.audio is not None:
            # Follow the video's typical send delay (bounded), so both tracks' RTCP
            # sender reports agree and the viewer's lip sync lines them up.
            target = min(max(lateness, -_EARLY_S), _MAX_AUDIO_DELAY_S)
            self.audio.send_delay_s += 0.05 * (target - self.audio.send_delay_s)
        if lateness > 1.0 / self.clock.fps:
            self.late_frames += 1
        self._leave_times.append(now)
        self.frames_sent += 1

    def _on_mic_packet(self, payload: bytes, arrival: float) -> None:
        """A microphone packet, in order: on to the worker, still encoded."""
        self.mic_packets += 1
        if self.closed:
            return
        # Packets before the worker is up precede the stream's first frame: dropped, as
        # keeping them would only add their age to every later frame's latency.
        if self.worker is not None and self.worker.ready is not None and self.worker.alive:
            try:
                self.worker.send_mic_packet(payload, arrival)
            except WorkerDied:
                pass

    async def _read_mic(self, track: MediaStreamTrack) -> None:
        """Fallback when the packets can't be tapped: aiortc decodes, we resample."""
        resampler = StreamResampler()
        try:
            while not self.closed:
                frame = await track.recv()
                arrival = time.monotonic()
                samples = resampler.push(frame)
                if len(samples):
                    self.worker.send_mic(samples, arrival)
        except (MediaStreamError, WorkerDied, asyncio.CancelledError):
            pass

    # -- supervision ---------------------------------------------------------

    async def _watchdog(self) -> None:
        cfg = self.config
        opened = time.monotonic()
        try:
            while not self.closed:
                await asyncio.sleep(cfg.stats_interval_s)
                now = time.monotonic()
                if not self.connected and now - opened > cfg.connect_timeout_s:
                    await self.close(f"peer never connected ({cfg.connect_timeout_s:.0f} s)")
                    return
                if cfg.idle_timeout_s > 0 and now - self.last_activity > cfg.idle_timeout_s:
                    self.events.publish("error", message=f"idle for {cfg.idle_timeout_s:.0f} s: session ended")
                    await self.close("idle timeout")
                    return
                if self.clock.started:
                    self._follow_bandwidth()
                    self.events.publish("stats", **self.stats())
        except asyncio.CancelledError:
            pass

    def _follow_bandwidth(self) -> None:
        """Pass the receiver's bandwidth estimate (REMB) on to the worker's encoder."""
        bitrate = aiortc_hooks.receiver_bitrate_estimate(getattr(self, "_video_sender", None))
        if bitrate and bitrate != self._bitrate_hint and self.worker is not None and self.worker.alive:
            self._bitrate_hint = bitrate
            self.worker.hint_bitrate(bitrate)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def fps(self) -> float:
        times = [t for t in self._leave_times if t > time.monotonic() - 2.0]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0]) if times[-1] > times[0] else 0.0

    def stats(self) -> dict:
        last = self._last
        timings = {k: _r(w.mean(), 2) for k, w in self._timings.items() if w.values}
        return {
            "session_id": self.id,
            "avatar": self.avatar_id,
            "state": self.pc.connectionState if self.pc else "new",
            "fps": round(self.fps(), 2),
            "frames_sent": self.frames_sent,
            "frames_dropped": self.video.frames_dropped,
            "late_frames": self.late_frames,
            "skipped_frames": self.catch_up.skipped,
            "audio_send_delay_ms": round(self.audio.send_delay_s * 1000.0, 1) if self.audio else None,
            "latency_ms": {"p50": _r(self._latency.pct(50)), "p95": _r(self._latency.pct(95))},
            "latency_session_ms": {"p50": _r(self._latency_all.pct(50)), "p95": _r(self._latency_all.pct(95)),
                                   "n": int(self._latency_all.counts.sum())},
            "frame_lateness_ms": {"p50": _r(self._lateness.pct(50)), "p95": _r(self._lateness.pct(95))},
            "buffered_s": round(last.buffered_s, 3) if last else 0.0,
            "speaking": self._speaking,
            "mic": self._mic_track is not None,
            "mic_packets": self.mic_packets,
            "mic_tapped": self._mic_tapped,
            "mic_packets_decoded": last.mic_packets if last else 0,
            "keyframe_requests": self.keyframe_requests,
            "keyframe_requests_in_worker": last.keyframes_requested if last else 0,
            "keyframes_sent": self.keyframes_sent,
            "mic_underruns": last.underruns if last else 0,
            "mic_skipped_s": round(last.skipped_s, 3) if last else 0.0,
            "queued_speech": self.speech.queued,
            "tts_first_sentence_ms": _r(float(np.median(self.speech.synthesis_s)) * 1000.0 if self.speech.synthesis_s else None),
            "timings_ms": timings,
            "worker_pid": self.worker.pid if self.worker else None,
            "video_codec": self._worker_spec.video_codec if self._worker_spec else None,
            "uptime_s": round(time.time() - self.created, 1),
        }


def _without_markers(frame: FrameReady) -> FrameReady:
    from dataclasses import replace

    return replace(frame, markers=(), mic_arrivals=())
