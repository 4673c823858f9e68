"""A channel: one avatar stream, rendered once, watched by many.

Data flow::

    viewer's mic ─────────────┐
    say/audio ──TTS───────────┤
                              ▼
            worker (AudioFeed → LipSyncSession → renderer → one encoder per variant)
                              │  one request per frame tick (the frame pump)
                              ▼
                         FrameReady ──► every connected viewer (its variant's picture + the Opus packets)
                                    └─► every RTMP output (the H.264 picture + the PCM)
                              │ when the first of them takes the frame
                              ▼
              speech_start / speech_end events, latency statistics

The frame pump asks for frame ``i`` at ``start + i/fps`` of the channel's one
media clock and hands the answer to every sink together; that and the
index-derived timestamps are the whole of the A/V sync story, for one viewer or
for an hours-long broadcast.

A *private* channel is what ``POST /offer`` makes: one viewer, whose ICE success
starts the worker, whose bandwidth estimate the encoder follows, and whose end
ends it.  A *public* channel (``POST /channels``) starts at once, keeps running
with nobody watching, and ends when it is deleted.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from live.engine.audio_feed import Clip, FeedConfig
from live.rtc.audio_codec import silence_packet
from live.rtc.media_clock import MediaClock
from live.server.config import ServerConfig
from live.server.events import EventHub
from live.server.speech_queue import SpeechQueue, SpeechRequest, new_utterance_id
from live.server.stream_stats import Histogram, Window, rounded
from live.server.tts_service import TtsError, TtsService
from live.server.viewer import Viewer
from live.worker.catch_up import CatchUpPolicy
from live.worker.client import EngineWorker, WorkerDied
from live.worker.protocol import EncoderSettings, FrameReady, VideoVariant, WorkerSpec
from models.audio.pcm import SAMPLE_RATE

log = logging.getLogger(__name__)

_EARLY_S = 0.020
_TIMING_NAMES = ("decode_ms", "features_ms", "model_ms", "render_ms", "convert_ms", "encode_ms", "waited_ms", "cpu_ms")
BROADCAST_VARIANT = VideoVariant("h264")     # RTMP, OBS's WHEP source and most players take H.264


@dataclass(frozen=True)
class ChannelSpec:
    channel_id: str
    avatar_id: str = "default"
    name: str = ""
    voice: str | None = None           # the default voice of /say (None: chosen by the text's script)
    private: bool = False              # a POST /offer session (see the module docstring)
    encoder: EncoderSettings = EncoderSettings()


@dataclass
class Utterance:
    id: str
    text: str
    source: str
    requested: float                 # monotonic time of the HTTP request
    state: str = "queued"            # queued -> speaking -> done


class FrameSink(Protocol):
    """What an output (RTMP) looks like to the channel: it takes each frame as it is made."""

    variant: VideoVariant

    def deliver(self, frame: FrameReady) -> None: ...

    def info(self) -> dict: ...

    async def stop(self) -> None: ...


class Channel:
    def __init__(
        self,
        spec: ChannelSpec,
        config: ServerConfig,
        tts: TtsService,
        on_closed: Callable[["Channel"], None] | None = None,
    ) -> None:
        self.spec = spec
        self.id = spec.channel_id
        self.avatar_id = spec.avatar_id
        self.name = spec.name
        self.voice = spec.voice
        self.private = spec.private
        self.view_key = secrets.token_urlsafe(16)
        self.config = config
        self.on_closed = on_closed
        self.created = time.time()
        self.clock = MediaClock(config.fps)
        self.events = EventHub()
        self.speech = SpeechQueue(tts, self._send_clip, self._on_speech_error)
        self.speech.start()   # speech may be queued before the worker is up (sent when it is)
        self.viewers: dict[str, Viewer] = {}
        self.outputs: dict[str, FrameSink] = {}
        self.worker: EngineWorker | None = None
        self.ready_size: tuple[int, int] | None = None
        self._worker_start: asyncio.Task | None = None
        self._early_clips: list[Clip] = []          # speech queued before the worker was up
        self._media_gate = asyncio.Event()          # private: opened by the viewer's connection
        self._on_air = asyncio.Event()              # the clock runs and frames flow
        if not self.private:
            self._media_gate.set()
        self._variants: tuple[VideoVariant, ...] = ()
        self._mic_viewer: Viewer | None = None
        self.epoch = 0
        self.closed = False
        self.close_reason: str | None = None
        self.last_activity = time.monotonic()
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self._pending: deque[FrameReady] = deque()
        self._utterances: dict[str, Utterance] = {}
        self._close_lock = asyncio.Lock()
        # statistics
        self._leave_times: deque[float] = deque(maxlen=250)
        self._latency = Window()          # mic sample arrival -> its frame leaving, ms
        self._latency_all = Histogram()
        self._lateness = Window()         # frame leaving - frame due, ms
        self._timings = {name: Window() for name in _TIMING_NAMES}
        self._last: FrameReady | None = None
        self._last_left = -1
        self.frames_sent = 0
        self.late_frames = 0
        self.catch_up = CatchUpPolicy()
        self.mic_chunks = 0
        self._speaking = False
        self._bitrate_hint: int | None = None
        self._streamed_samples = 0     # streamed audio sent since the last frame (see audio_backlog_s)

    # -- life cycle ----------------------------------------------------------

    @property
    def state(self) -> str:
        if self.closed:
            return "ended"
        return "live" if self.clock.started else "starting"

    def start(self) -> None:
        """Start the worker (once); the pump follows when it is ready and the media gate is open."""
        if self._worker_start is None and not self.closed:
            self._worker_start = self._spawn(self._start_worker(), "worker-start")
            self._spawn(self._start_media(), "media")
            self._spawn(self._watchdog(), "watchdog")

    async def wait_live(self) -> None:
        """Until frames flow (a public channel; raises if the worker failed)."""
        self.start()
        assert self._worker_start is not None
        await asyncio.shield(self._worker_start)
        await self._on_air.wait()

    async def close(self, reason: str = "closed") -> None:
        """End everything this channel holds (idempotent, safe from any task)."""
        async with self._close_lock:
            if self.closed:
                return
            self.closed = True
            self.close_reason = reason
        log.info("channel %s closing: %s", self.id, reason)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await self.speech.close()
        await asyncio.gather(*(v.close() for v in self.viewers.values()), return_exceptions=True)
        await asyncio.gather(*(o.stop() for o in self.outputs.values()), return_exceptions=True)
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
        """A task that lives as long as the channel (cancelled by ``close``)."""
        task = asyncio.create_task(coro, name=f"{name}-{self.id}")
        self._tasks.append(task)
        return task

    def _close_soon(self, reason: str) -> None:
        """Close from a callback that can't await (kept referenced; failures logged)."""
        self._background_task(self.close(reason), f"close-{self.id}")

    def _background_task(self, coro, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("channel %s: %s failed", self.id, task.get_name(), exc_info=task.exception())

    def _wanted_variants(self) -> tuple[VideoVariant, ...]:
        wanted = [] if self.private else [BROADCAST_VARIANT]
        wanted += [v.variant for v in self.viewers.values()]
        wanted += [o.variant for o in self.outputs.values()]
        return tuple(dict.fromkeys(wanted)) or (BROADCAST_VARIANT,)

    def _update_variants(self) -> None:
        variants = self._wanted_variants()
        if variants != self._variants:
            self._variants = variants
            if self.worker is not None and self.worker.ready is not None and self.worker.alive:
                self.worker.set_variants(variants)

    async def _start_worker(self) -> None:
        self._variants = self._wanted_variants()
        spec = WorkerSpec(self.avatar_id, self.config.avatar_dir, self.config.fps, self.config.mouth_checkpoint,
                          FeedConfig(), self._variants, self.spec.encoder)
        self.worker = EngineWorker(spec)
        try:
            ready = await self.worker.start()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("channel %s: the engine did not start", self.id)
            self.events.publish("error", message=f"engine failed to start: {e}")
            self._close_soon("engine failed to start")
            raise
        self.ready_size = (ready.width, ready.height)
        if self.epoch:
            # Interrupts that came before the worker existed: its frames must carry the channel's epoch,
            # or every one of them would read as stale and play as silence.
            self.worker.send_interrupt(self.epoch)
        self._update_variants()   # viewers that joined while it started
        for clip in self._early_clips:
            self.worker.send_clip(clip)
        self._early_clips.clear()

    async def _start_media(self) -> None:
        """Once the worker is up (and, private, the viewer connected): the clock and the frame pump."""
        assert self._worker_start is not None
        try:
            await asyncio.shield(self._worker_start)
        except Exception:
            return   # _start_worker reported it and is closing the channel
        await self._media_gate.wait()
        if self.closed:
            return
        self.clock.begin()
        self._spawn(self._pump(), "pump")
        self._on_air.set()
        for v in self.viewers.values():
            v.start_mic_reading()

    # -- viewers ---------------------------------------------------------------

    def new_viewer(self, *, mic_allowed: bool, background: str | None = None) -> Viewer:
        viewer = Viewer(secrets.token_urlsafe(9), self, mic_allowed=mic_allowed, background=background)
        self.viewers[viewer.id] = viewer
        self._background_task(self._drop_if_never_connected(viewer), f"viewer-timeout-{viewer.id}")
        return viewer

    async def remove_viewer(self, viewer: Viewer, reason: str = "left") -> None:
        if self.viewers.pop(viewer.id, None) is None:
            return
        if self._mic_viewer is viewer:
            self._mic_viewer = None
        await viewer.close()
        if self.private:
            await self.close(reason)
            return
        self._update_variants()
        self.events.publish("viewers", count=self.viewer_count(), left=viewer.id, reason=reason)

    def viewer_count(self) -> int:
        return sum(1 for v in self.viewers.values() if v.connected)

    def viewer_reachable(self, viewer: Viewer) -> None:
        # ICE is through: the peer is real.  A private channel starts its worker now, while DTLS runs.
        if self.private:
            self.start()

    def viewer_connected(self, viewer: Viewer) -> None:
        self.last_activity = time.monotonic()
        if viewer.sends_mic:
            self._mic_viewer = viewer     # the latest operator to connect a microphone drives the channel
        self._update_variants()
        self.request_keyframe(viewer.variant)
        if self.private:
            self.start()
            self._media_gate.set()
        elif self.clock.started:
            viewer.start_mic_reading()
        if not self.private:
            self.events.publish("viewers", count=self.viewer_count(), joined=viewer.id)

    def viewer_gone(self, viewer: Viewer, reason: str) -> None:
        self._background_task(self.remove_viewer(viewer, reason), f"viewer-gone-{viewer.id}")

    async def _drop_if_never_connected(self, viewer: Viewer) -> None:
        try:
            await asyncio.sleep(self.config.connect_timeout_s)
        except asyncio.CancelledError:
            return
        if not self.closed and not viewer.connected and viewer.id in self.viewers:
            await self.remove_viewer(viewer, f"peer never connected ({self.config.connect_timeout_s:.0f} s)")

    # -- outputs ---------------------------------------------------------------

    def add_output(self, output_id: str, sink: FrameSink) -> None:
        self.outputs[output_id] = sink
        self._update_variants()
        self.request_keyframe(sink.variant)

    async def remove_output(self, output_id: str) -> FrameSink | None:
        sink = self.outputs.pop(output_id, None)
        if sink is not None:
            await sink.stop()
            self._update_variants()
        return sink

    # -- speech --------------------------------------------------------------

    def say(self, text: str, voice: str | None = None, interrupt: bool = False) -> Utterance:
        """Queue text (raises TtsError for bad input before anything is interrupted)."""
        clean, resolved = self.speech.check(text, voice or self.voice)
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
        self._early_clips.clear()   # speech asked for before the worker was up is cancelled too
        dropped = self.speech.interrupt()
        silenced = sum(v.silence_pending(silence_packet()) for v in self.viewers.values())
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

    # -- streamed audio (an agent's own TTS, live.server.agent_sockets) ---------

    def begin_audio_stream(self, label: str) -> Utterance:
        """An utterance whose audio arrives in pieces (``stream_audio``), straight to the engine."""
        return self._track_utterance(SpeechRequest(new_utterance_id(), label, source="stream"))

    def stream_audio(self, utterance: Utterance, samples: np.ndarray, first: bool, last: bool) -> None:
        if utterance.state == "done":
            return     # interrupted: the rest of it is dropped
        self._streamed_samples += len(samples)
        self._send_clip(Clip(utterance.id, samples, utterance.text, first=first, last=last))

    def audio_backlog_s(self) -> float:
        """Speech handed to the engine and not yet played (what an audio socket's sender is ahead by)."""
        buffered = self._last.buffered_s if self._last is not None else 0.0
        return buffered + self._streamed_samples / SAMPLE_RATE

    def _track_utterance(self, req: SpeechRequest) -> Utterance:
        self.last_activity = time.monotonic()
        u = Utterance(req.utterance_id, req.text, req.source, time.monotonic())
        self._utterances[u.id] = u
        self._forget_done()     # a channel on air for days says thousands of things
        self.events.publish("speech_queued", utterance_id=u.id, text=u.text, source=u.source)
        return u

    def _send_clip(self, clip: Clip) -> None:
        if self.closed:
            return
        if self.worker is None or self.worker.ready is None:
            self._early_clips.append(clip)   # speech asked for before the worker was up
        elif self.worker.alive:
            self.worker.send_clip(clip)

    def _on_speech_error(self, utterance_id: str, message: str) -> None:
        self.events.publish("error", utterance_id=utterance_id, message=message)
        u = self._utterances.get(utterance_id)
        if u is not None and u.state == "queued":
            u.state = "done"

    def _forget_done(self) -> None:
        if len(self._utterances) > 200:
            for k in [k for k, u in self._utterances.items() if u.state == "done"][:-100]:
                del self._utterances[k]
        if len(self._utterances) > 400:
            # Utterances whose end never came (their audio failed before playing): the oldest go too.
            for k in list(self._utterances)[:-200]:
                del self._utterances[k]

    # -- microphone and keyframes ----------------------------------------------

    def _worker_up(self) -> bool:
        return self.worker is not None and self.worker.ready is not None and self.worker.alive

    def mic_packet(self, viewer: Viewer, payload: bytes, arrival: float) -> None:
        # Packets before the worker is up precede the stream's first frame: dropped, as
        # keeping them would only add their age to every later frame's latency.
        if self.closed or not self._worker_up():
            return
        if self._mic_viewer is None:
            self._mic_viewer = viewer
        elif viewer is not self._mic_viewer:
            return     # one voice drives the channel: the operator who connected last
        try:
            self.worker.send_mic_packet(payload, arrival)
        except WorkerDied:
            pass

    def mic_samples(self, samples: np.ndarray, arrival: float) -> None:
        if self._worker_up():
            self.worker.send_mic(samples, arrival)

    def request_keyframe(self, variant: VideoVariant | None = None) -> None:
        if not self.closed and self._worker_up():
            self.worker.request_keyframe(variant)

    # -- media ---------------------------------------------------------------

    async def _pump(self) -> None:
        """Frames in order: two requests in flight, the worker renders each at its moment.

        Every frame goes to every sink at once.  If the machine falls behind,
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
        if frame.epoch != self.epoch:   # rendered before an interrupt: its sound must not play
            silence = silence_packet()
            frame = replace(frame, markers=(), mic_arrivals=(),
                            audio_packets=tuple(silence for _ in frame.audio_packets), pcm=bytes(len(frame.pcm)))
        self._pending.append(frame)
        self._last = frame
        self._streamed_samples = 0     # now counted in the frame's buffered_s
        for name, window in self._timings.items():
            window.add(getattr(frame.timings, name))
        watched = False
        for viewer in self.viewers.values():
            if viewer.connected:
                viewer.deliver(frame, frame.audio_packets)
                watched = True
        for sink in self.outputs.values():
            sink.deliver(frame)
        if not watched:
            # Nobody's sender will report the frame leaving: it is on air now.
            self.frame_left(frame.index, time.monotonic())

    def frame_left(self, index: int, now: float) -> float:
        """A sender took frame ``index`` (the first one to do so counts).  Returns its lateness, s."""
        lateness = now - self.clock.time_of_frame(index)
        if index <= self._last_left:
            return lateness
        self._last_left = index
        while self._pending and self._pending[0].index <= index:
            self._publish_markers(self._pending.popleft(), now)
        self._lateness.add(lateness * 1000.0)
        if lateness > 1.0 / self.clock.fps:
            self.late_frames += 1
        self._leave_times.append(now)
        self.frames_sent += 1
        return lateness

    def _publish_markers(self, frame: FrameReady, now: float) -> None:
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

    # -- supervision ---------------------------------------------------------

    async def _watchdog(self) -> None:
        cfg = self.config
        try:
            while not self.closed:
                await asyncio.sleep(cfg.stats_interval_s)
                now = time.monotonic()
                if self.private and cfg.idle_timeout_s > 0 and now - self.last_activity > cfg.idle_timeout_s:
                    self.events.publish("error", message=f"idle for {cfg.idle_timeout_s:.0f} s: session ended")
                    await self.close("idle timeout")
                    return
                if self.clock.started:
                    if self.private:
                        self._follow_bandwidth()
                    self.events.publish("stats", **self.stats())
        except asyncio.CancelledError:
            pass

    def _follow_bandwidth(self) -> None:
        """Pass the viewer's bandwidth estimate (REMB) on to the worker's encoder."""
        viewer = next(iter(self.viewers.values()), None)
        bitrate = viewer.bandwidth_estimate() if viewer is not None else None
        if bitrate and bitrate != self._bitrate_hint and self._worker_up():
            self._bitrate_hint = bitrate
            self.worker.hint_bitrate(bitrate)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def typical_lateness_ms(self) -> float:
        """How late frames typically leave (p50; 0 if they leave early or none has left yet)."""
        return max(0.0, self._lateness.pct(50) or 0.0)

    def fps(self) -> float:
        times = [t for t in self._leave_times if t > time.monotonic() - 2.0]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0]) if times[-1] > times[0] else 0.0

    def stats(self) -> dict:
        """Engine and delivery figures (for a private session, with its viewer's merged in)."""
        last = self._last
        timings = {k: rounded(w.mean(), 2) for k, w in self._timings.items() if w.values}
        out = {
            "session_id": self.id,
            "avatar": self.avatar_id,
            "state": "new",
            "fps": round(self.fps(), 2),
            "frames_sent": self.frames_sent,
            "late_frames": self.late_frames,
            "skipped_frames": self.catch_up.skipped,
            "latency_ms": {"p50": rounded(self._latency.pct(50)), "p95": rounded(self._latency.pct(95))},
            "latency_session_ms": {"p50": rounded(self._latency_all.pct(50)), "p95": rounded(self._latency_all.pct(95)),
                                   "n": int(self._latency_all.counts.sum())},
            "frame_lateness_ms": {"p50": rounded(self._lateness.pct(50)), "p95": rounded(self._lateness.pct(95))},
            "buffered_s": round(last.buffered_s, 3) if last else 0.0,
            "speaking": self._speaking,
            "mic": self._mic_viewer is not None,
            "mic_packets_decoded": last.mic_packets if last else 0,
            "keyframe_requests_in_worker": last.keyframes_requested if last else 0,
            **self._mic_figures(),
            "queued_speech": self.speech.queued,
            "tts_first_sentence_ms": rounded(float(np.median(self.speech.synthesis_s)) * 1000.0
                                             if self.speech.synthesis_s else None),
            "timings_ms": timings,
            "worker_pid": self.worker.pid if self.worker else None,
            "variants": [{"codec": v.codec, "background": v.background} for v in self._variants],
            "uptime_s": round(time.time() - self.created, 1),
        }
        if self.private:
            viewer = next(iter(self.viewers.values()), None)
            if viewer is not None:
                v = viewer.stats()
                out.update({k: v[k] for k in ("state", "frames_dropped", "audio_send_delay_ms", "mic_packets",
                                               "mic_tapped", "keyframe_requests", "keyframes_sent", "video_codec")})
                out["mic"] = viewer.sends_mic
            else:
                out["state"] = "closed"
        return out

    def _mic_figures(self) -> dict:
        """How the microphone's audio fared: gaps the engine padded, silence dropped to keep the
        latency down, and the headroom its link's jitter calls for (live.engine.audio_feed)."""
        last = self._last
        return {
            "mic_underruns": last.underruns if last else 0,
            "mic_skipped_s": round(last.skipped_s, 3) if last else 0.0,
            "mic_headroom_ms": round(last.headroom_s * 1000.0, 1) if last else 0.0,
        }

    def info(self) -> dict:
        """What ``GET /channels/{id}`` shows."""
        width, height = self.ready_size or (None, None)
        return {
            "channel_id": self.id,
            "name": self.name,
            "avatar": self.avatar_id,
            "voice": self.voice,
            "state": self.state,
            "fps": round(self.fps(), 2),
            "width": width,
            "height": height,
            "viewers": self.viewer_count(),
            "outputs": [o.info() for o in self.outputs.values()],
            "speaking": self._speaking,
            "queued_speech": self.speech.queued,
            "latency_ms": {"p50": rounded(self._latency.pct(50)), "p95": rounded(self._latency.pct(95))},
            "frame_lateness_ms": {"p50": rounded(self._lateness.pct(50)), "p95": rounded(self._lateness.pct(95))},
            **self._mic_figures(),
            "uptime_s": round(time.time() - self.created, 1),
            "view_key": self.view_key,
            "links": {"whep": f"/channels/{self.id}/whep?key={self.view_key}",
                      "broadcast": f"/broadcast/{self.id}?key={self.view_key}"},
        }
