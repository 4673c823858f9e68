"""The lip-sync session: push audio in, pull frames that carry their own audio.

One ``LipSyncSession`` serves one viewer (live) or one render (offline).  Audio of
any rate and chunk size goes in; frames come out in order, each with exactly the
stream audio that must play while it is shown.  Sending a frame's image and audio
together is therefore all a transport needs to do to stay in sync: the video is
delayed by the model's look-ahead, and so is the audio, by the same amount.

No wall clock lives here.  The caller decides when to pull: offline as fast as it
can, live on a 1/fps tick (padding silence when no audio has arrived, so the
avatar idles instead of freezing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from live.engine.audio_ring import AudioRing
from live.engine.compositor import Compositor
from models.audio.audio_io import StreamResampler
from models.audio.mel_stream import WIN
from models.audio.pcm import SAMPLE_RATE, float_to_int16
from models.avatar.avatar import Avatar
from models.mouth.mouth_model import MouthPredictor
from models.mouth.mouth_shape import MouthShape
from models.mouth.mouth_tracker import MouthTracker
from models.mouth.timeline import Timeline
from models.render.picture import Picture

# Raw audio kept behind the play position: enough to rewind the features after an
# interrupt (one mel window) with room to spare.
_HISTORY_SAMPLES = 4 * WIN


@dataclass(frozen=True)
class EngineConfig:
    fps: float = 25.0
    max_buffer_s: float = 120.0    # audio queued ahead of playback (TTS runs ahead of real time)


@dataclass(frozen=True)
class RenderedFrame:
    index: int               # position in the session timeline; pts = index / fps
    picture: Picture         # source frame + mouth region: .i420() for encoders, .bgr() = image
    audio: np.ndarray        # int16 mono 16 kHz: the samples to play while this frame shows
    shape: MouthShape
    speaking: bool
    # The avatar frame the image was drawn on (Compositor.source_index): its alpha matte
    # (models.avatar.matte) keys this image.  A repeated picture (draw=False) keeps the
    # source of the picture it repeats.  -1: not drawn from an avatar frame.
    source_index: int = -1

    @property
    def image(self) -> np.ndarray:
        """BGR uint8, avatar resolution, read-only (built on first use: encoders take
        ``picture.i420()`` and never need the full BGR frame)."""
        return self.picture.bgr()


class BufferFullError(RuntimeError):
    pass


class LipSyncSession:
    def __init__(self, avatar: Avatar, predictor: MouthPredictor, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.timeline = Timeline(self.config.fps)
        self.compositor = Compositor(avatar)
        self.tracker = MouthTracker(predictor, self.timeline, vad_history_s=self.config.max_buffer_s + 5)
        self._ring = AudioRing(int((self.config.max_buffer_s + 5) * SAMPLE_RATE))
        self._resamplers: dict[int, StreamResampler] = {}
        self._next = 0                 # next frame to hand out
        self._ended = False            # offline: no more audio will come
        self._audio_end = 0            # end of the pushed audio; padding lies beyond it
        self._last_image: Picture | None = None      # repeated by next_frame(draw=False)
        self._last_source = -1                       # the avatar frame _last_image was drawn on

    # -- audio in ---------------------------------------------------------------

    def push_audio(self, pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
        """Append audio of any rate and chunk size (int16 or float, mono or (n, channels))."""
        samples = self._to_16k(pcm, sample_rate)
        if not len(samples):
            return
        if self.buffered_seconds + len(samples) / SAMPLE_RATE > self.config.max_buffer_s:
            raise BufferFullError(f"more than {self.config.max_buffer_s:.0f} s of audio queued")
        self._ended = False
        self._write(samples)
        self._audio_end = self._ring.end

    def end_of_stream(self) -> None:
        """No more audio for now: the remaining frames are rendered with silence after it."""
        self._ended = True

    def interrupt(self) -> None:
        """Drop all audio not yet handed out with a frame; the mouth closes within two frames."""
        cut = self.timeline.frame_start_sample(self._next)
        if cut < self._ring.end:
            first = max(self._ring.start, cut - _HISTORY_SAMPLES)
            history = self._ring.read(first, cut - first)
            self._ring.clear_after(cut)
            self.tracker.rewind(cut, history)
        self._audio_end = min(self._audio_end, cut)
        for r in self._resamplers.values():
            r.flush()  # samples still inside the resampling filter belong to the dropped audio
        self.compositor.reset()

    # -- frames out -------------------------------------------------------------

    @property
    def buffered_seconds(self) -> float:
        """Audio pushed but not yet played (including the look-ahead)."""
        return max(0, self._ring.end - self.timeline.frame_start_sample(self._next)) / SAMPLE_RATE

    @property
    def frames_out(self) -> int:
        return self._next

    def ready(self) -> bool:
        return self.tracker.ready_frames() > 0

    def pending_frames(self) -> int:
        """Frames still to come for the audio pushed so far (offline: after end_of_stream)."""
        return max(0, self.timeline.frames_covering(self._audio_end) - self._next)

    def next_frame(self, pad_silence: bool = True, draw: bool = True) -> RenderedFrame | None:
        """The next frame, or None if its audio hasn't arrived and padding isn't allowed.

        ``draw=False`` advances audio and mouth state but repeats the last picture
        instead of compositing a new one (a live consumer catching up, see
        ``live.worker.catch_up``)."""
        needed = self.timeline.samples_needed(self._next)
        if self._ring.end < needed:
            if not (pad_silence or self._ended):
                return None
            self._pad_to(needed)
        shape = self.tracker.take(1)[0]
        return self._emit(shape, draw)

    # -- internals --------------------------------------------------------------

    def _emit(self, shape: MouthShape, draw: bool = True) -> RenderedFrame:
        i = self._next
        start, end = self.timeline.audio_range(i)
        audio = float_to_int16(self._ring.read(start, end - start))
        if draw or self._last_image is None:
            self._last_image = self.compositor.compose(i, shape)
            self._last_source = self.compositor.source_index(i)
        image = self._last_image
        self._next += 1
        self._ring.drop_until(start - _HISTORY_SAMPLES)
        return RenderedFrame(i, image, audio, shape, shape.speech, self._last_source)

    def _pad_to(self, n_samples: int) -> None:
        gap = n_samples - self._ring.end
        if gap > 0:
            self._write(np.zeros(gap, dtype=np.float32))

    def _write(self, samples: np.ndarray) -> None:
        self._ring.write(samples)
        self.tracker.push(samples)

    def _to_16k(self, pcm: np.ndarray, sample_rate: int) -> np.ndarray:
        pcm = np.asarray(pcm)
        if sample_rate == SAMPLE_RATE and pcm.ndim == 1 and pcm.dtype == np.float32:
            return pcm
        resampler = self._resamplers.get(sample_rate)
        if resampler is None:
            resampler = self._resamplers[sample_rate] = StreamResampler()
        return resampler.push(pcm, sample_rate)
