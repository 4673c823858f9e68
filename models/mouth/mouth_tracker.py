"""Streaming audio → one mouth shape per video frame.

The tracker owns the feature side of the engine: it turns pushed 16 kHz samples
into log-mel frames as they arrive, keeps just the mel history the model's window
needs, asks the model about each video frame once its look-ahead has arrived, and
applies voice activity and smoothing.  Live sessions and offline renders both use
it, so a rendered file shows exactly what a live viewer would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.audio.mel_stream import HOP, MAX_ABS_VALUE, N_MELS, MelStream
from models.audio.pcm import SAMPLE_RATE
from models.audio.vad import VoiceActivity
from models.mouth.feature_window import LOOKAHEAD_SAMPLES, WINDOW_FRAMES, last_frame_for, window_for
from models.mouth.mouth_model import MouthPredictor
from models.mouth.mouth_shape import MouthShape
from models.mouth.mouth_smoother import MouthSmoother
from models.mouth.timeline import Timeline


@dataclass
class _MelHistory:
    """Mel frames ``[first, first + n)`` of the stream, trimmed from the front as frames are used."""

    first: int = 0
    frames: np.ndarray = field(default_factory=lambda: np.zeros((N_MELS, 0), dtype=np.float32))

    @property
    def end(self) -> int:
        return self.first + self.frames.shape[1]

    def append(self, mel: np.ndarray) -> None:
        if mel.shape[1]:
            self.frames = np.concatenate([self.frames, mel], axis=1)

    def forget_before(self, frame: int) -> None:
        drop = min(max(0, frame - self.first), self.frames.shape[1])
        if drop:
            self.frames = self.frames[:, drop:]
            self.first += drop

    def truncate(self, end: int) -> None:
        keep = max(0, end - self.first)
        self.frames = self.frames[:, :keep]


@dataclass
class MouthTracker:
    predictor: MouthPredictor
    timeline: Timeline = field(default_factory=Timeline)
    next_frame: int = 0
    n_samples: int = 0
    _mel: MelStream = field(default_factory=MelStream)
    _history: _MelHistory = field(default_factory=_MelHistory)
    # Decisions must outlive the audio queued ahead of playback (a TTS burst can
    # be minutes long), or frames far behind the newest audio would read as silence.
    vad_history_s: float = 30.0
    _vad: VoiceActivity = field(init=False)
    _vad_origin: int = 0      # stream sample where the current VAD started (moves on interrupt)
    _smoother: MouthSmoother = field(default_factory=MouthSmoother)

    def __post_init__(self) -> None:
        self._vad = VoiceActivity(history_s=self.vad_history_s)

    def push(self, samples: np.ndarray) -> None:
        """Append 16 kHz mono float32 samples to the stream."""
        x = np.asarray(samples, dtype=np.float32)
        if not len(x):
            return
        self._history.append(self._mel.push(x))
        self._vad.push(x)
        self.n_samples += len(x)

    def ready_frames(self) -> int:
        """How many frames can be computed now without padding.

        Called for every frame, with up to minutes of TTS audio queued, so the first
        frame that is not ready is found from an estimate (samples_needed grows by one
        frame of audio per frame) and corrected for rounding, not by counting up.
        """
        tl, have = self.timeline, self.n_samples
        i = max(self.next_frame, int((have - LOOKAHEAD_SAMPLES) * tl.fps / SAMPLE_RATE))
        while i > self.next_frame and tl.samples_needed(i - 1) > have:
            i -= 1
        while tl.samples_needed(i) <= have:
            i += 1
        return i - self.next_frame

    def take(self, n: int) -> list[MouthShape]:
        """Mouth shapes for the next ``n`` frames (all must be ready), batched through the model."""
        if n <= 0:
            return []
        if self.timeline.samples_needed(self.next_frame + n - 1) > self.n_samples:
            raise ValueError(f"{n} frames requested but only {self.ready_frames()} are ready")
        frames = range(self.next_frame, self.next_frame + n)
        moments = [self.timeline.moment(i) for i in frames]
        windows = np.stack([window_for(self._history.frames, t, self._history.first, -MAX_ABS_VALUE) for t in moments])
        posteriors, shapes = self.predictor.predict_arrays(windows)
        out = []
        for t, post, shape in zip(moments, posteriors, shapes):
            speech = self._vad.is_speech_at(int(t * 16_000) - self._vad_origin)
            out.append(self._smoother.step(post, shape, speech))
        self.next_frame += n
        # Keep the mel frames the next window still reaches back to.
        self._history.forget_before(last_frame_for(self.timeline.moment(self.next_frame)) + 1 - WINDOW_FRAMES)
        return out

    def rewind(self, cut: int, samples_before_cut: np.ndarray) -> None:
        """Forget every sample from stream index ``cut`` on (an interrupt).

        ``samples_before_cut`` are the stream samples just before ``cut`` (at least
        ``WIN`` of them, or all if the stream is shorter); mel frames that reached
        past the cut are recomputed from them when new audio arrives.
        """
        cut = min(cut, self.n_samples)
        first_dirty = max(0, -(-(cut - 800 + 1) // HOP))  # first frame containing a sample >= cut
        first_dirty = min(first_dirty, self._mel.frames_emitted)
        start = first_dirty * HOP
        have_from = cut - len(samples_before_cut)
        if start < have_from:
            raise ValueError("not enough history to rewind the features")
        head = samples_before_cut[start - have_from :]
        previous = samples_before_cut[start - have_from - 1] if start - have_from >= 1 else 0.0
        self._mel = MelStream.starting_at(first_dirty, head, previous)
        self._history.truncate(first_dirty)
        # The voice-activity history after the cut is void; its hangover must not
        # keep a mouth open over the silence that follows an interrupt.
        self._vad = VoiceActivity(self._vad.config, history_s=self.vad_history_s)
        self._vad_origin = cut
        self.n_samples = cut
        self._smoother.close_now()
