"""Render a whole audio file onto an avatar, as fast as the machine allows.

Two steps, so a batch can share the first: ``analyze_audio`` runs the audio
through the same streaming tracker a live session uses (features, model, voice
activity, smoothing) and yields a ``MouthTrack``; ``render_video`` composites that
track onto an avatar and encodes H.264 + AAC.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from live.engine.compositor import Compositor
from live.engine.mp4_writer import Mp4Writer
from models.audio.pcm import SAMPLE_RATE, float_to_int16
from models.avatar.avatar import Avatar
from models.mouth.mouth_model import MouthPredictor
from models.mouth.mouth_shape import N_VISEMES, MouthShape
from models.mouth.mouth_tracker import MouthTracker
from models.mouth.timeline import Timeline

_BATCH = 256


class RenderCancelled(RuntimeError):
    pass


@dataclass(frozen=True)
class MouthTrack:
    """One mouth shape per video frame for a whole audio clip."""

    fps: float
    shapes: np.ndarray       # (n, 3) openness, width, rounding
    posteriors: np.ndarray   # (n, N_VISEMES)
    speech: np.ndarray       # (n,) bool
    n_samples: int           # length of the audio the track was made from

    @property
    def n_frames(self) -> int:
        return len(self.shapes)

    def shape(self, i: int) -> MouthShape:
        o, w, r = (float(v) for v in self.shapes[i])
        return MouthShape(o, w, r, self.posteriors[i], bool(self.speech[i]))

    def save(self, path: Path) -> None:
        np.savez(path, fps=self.fps, shapes=self.shapes, posteriors=self.posteriors,
                 speech=self.speech, n_samples=self.n_samples)

    @classmethod
    def load(cls, path: Path) -> "MouthTrack":
        with np.load(path) as z:
            return cls(float(z["fps"]), z["shapes"], z["posteriors"], z["speech"], int(z["n_samples"]))


@dataclass(frozen=True)
class RenderStats:
    out_path: Path
    frames: int
    audio_seconds: float
    wall_seconds: float
    render_seconds: float
    encode_seconds: float

    @property
    def speed(self) -> float:
        """Multiple of real time."""
        return self.audio_seconds / max(self.wall_seconds, 1e-9)


def analyze_audio(audio: np.ndarray, predictor: MouthPredictor, fps: float = 25.0) -> MouthTrack:
    timeline = Timeline(fps)
    tracker = MouthTracker(predictor, timeline)
    audio = np.asarray(audio, dtype=np.float32)
    n_frames = max(1, timeline.frames_covering(len(audio)))
    shapes: list[MouthShape] = []
    # Fed a few seconds at a time, as a live stream would be, so the tracker's
    # memory stays bounded however long the file is.
    step = 10 * SAMPLE_RATE
    for start in range(0, len(audio), step):
        tracker.push(audio[start : start + step])
        shapes += tracker.take(min(tracker.ready_frames(), n_frames - len(shapes)))
    # The last frames look past the end of the audio: that future is silence.
    tracker.push(np.zeros(max(0, timeline.samples_needed(n_frames - 1) - len(audio)), dtype=np.float32))
    while len(shapes) < n_frames:
        shapes += tracker.take(min(_BATCH, n_frames - len(shapes)))
    return MouthTrack(
        fps=fps,
        shapes=np.array([s.as_vector() for s in shapes], dtype=np.float32).reshape(-1, 3),
        posteriors=np.array([s.visemes for s in shapes], dtype=np.float32).reshape(-1, N_VISEMES),
        speech=np.array([s.speech for s in shapes], dtype=bool),
        n_samples=len(audio),
    )


def frame_audio(audio: np.ndarray, timeline: Timeline, i: int) -> np.ndarray:
    """int16 samples played with frame ``i`` (zero-padded past the end of the clip)."""
    start, end = timeline.audio_range(i)
    chunk = audio[start:end]
    if len(chunk) < end - start:
        chunk = np.concatenate([chunk, np.zeros(end - start - len(chunk), dtype=np.float32)])
    return float_to_int16(chunk)


def render_video(
    avatar: Avatar,
    track: MouthTrack,
    audio: np.ndarray,
    out_path: Path,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    encoder_threads: int = 0,
) -> RenderStats:
    """Composite ``track`` onto ``avatar`` and write ``out_path`` (H.264 + AAC).

    The file appears under its final name only when complete.  ``cancel`` is polled
    every frame; returning True stops the render (RenderCancelled) and leaves no file.
    """
    timeline = Timeline(track.fps)
    compositor = Compositor(avatar)
    width, height = compositor.size
    audio = np.asarray(audio, dtype=np.float32)
    render_times: list[float] = []

    # The writer takes I420: the source frame's conversion is kept and only the mouth
    # region is converted (models.render.picture), on the render thread.
    as_i420 = width % 2 == 0 and height % 2 == 0

    def compose(i: int) -> np.ndarray:
        t = time.perf_counter()
        picture = compositor.compose(i, track.shape(i))
        image = picture.i420() if as_i420 else picture.bgr()
        render_times.append(time.perf_counter() - t)
        return image

    t0 = time.perf_counter()
    encode_s = 0.0
    # Rendering frame i+1 overlaps encoding frame i: both spend their time in C code
    # that releases the GIL, so two cores are used without a second process.  One
    # render is in flight at a time, so the renderer's temporal state stays ordered.
    with ThreadPoolExecutor(max_workers=1) as pool, \
            Mp4Writer(Path(out_path), track.fps, width, height, threads=encoder_threads) as writer:
        pending = pool.submit(compose, 0)
        for i in range(track.n_frames):
            if cancel is not None and cancel():
                pending.cancel()
                raise RenderCancelled("render cancelled")
            image = pending.result()
            if i + 1 < track.n_frames:
                pending = pool.submit(compose, i + 1)
            t = time.perf_counter()
            (writer.write_i420 if as_i420 else writer.write)(image, frame_audio(audio, timeline, i))
            encode_s += time.perf_counter() - t
            if progress is not None:
                progress(i + 1, track.n_frames)
        t = time.perf_counter()
    encode_s += time.perf_counter() - t  # the encoder's final flush happens on close
    return RenderStats(Path(out_path), track.n_frames, len(audio) / SAMPLE_RATE,
                       time.perf_counter() - t0, sum(render_times), encode_s)
