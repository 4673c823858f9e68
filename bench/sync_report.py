"""Sync report for a rendered talking video: is the mouth where the sound is?

    python -m bench.sync_report OUT.mp4 AUDIO [--text "what is said"] [--png report.png]

The mouth opening is *measured* on the decoded video with FaceMesh (not read from
the engine), the audio envelope and speech/silence come from the audio file, and
the report prints the figures the engine is held to:

- lag between audio envelope and mouth opening (cross-correlation peak), in frames;
- fraction of frames inside silent gaps with the lips together;
- whether the mouth clearly opens in every spoken phrase.

A PNG shows waveform, phones (force-aligned with pocketsphinx when ``--text`` is
given) and mouth opening on one time axis, so a person can see the sync.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from models.audio.audio_io import load_audio
from models.audio.pcm import SAMPLE_RATE
from models.audio.vad import speech_mask

# Measured openness under which lips count as together.  Calibrated by eye on rendered
# closed lips of the default avatar: FaceMesh reads them at 0.04-0.07 on most head poses
# of the idle loop and up to 0.10 on a few (about 2 px of landmark noise at 512 px).
CLOSED_BELOW = 0.10
# A phrase "clearly opens" the mouth if it peaks above this: three times the level
# FaceMesh reads on rendered closed lips (~0.05), a gap of several pixels at 512 px.
OPEN_ABOVE = 0.15
MIN_GAP_S = 0.30         # silences shorter than this are co-articulation, not gaps
GAP_MARGIN_S = 0.08      # the mouth may still be closing just after speech ends


@dataclass(frozen=True)
class SyncFigures:
    fps: float
    lag_frames: int              # positive: mouth lags the audio
    lag_correlation: float
    closed_in_silence: float     # fraction of frames in silent gaps with lips together
    silent_frames: int
    phrases: int
    phrases_opened: int
    openness: np.ndarray
    envelope: np.ndarray
    speech: np.ndarray

    @property
    def all_phrases_open(self) -> bool:
        return self.phrases_opened == self.phrases


def measure_openness(video: Path) -> tuple[float, np.ndarray]:
    """Per-frame mouth openness measured on the decoded video (NaN where no face)."""
    import mediapipe as mp

    from models.avatar.face_landmarks import mouth_features

    values: list[float] = []
    with av.open(str(video)) as container, mp.solutions.face_mesh.FaceMesh(
        static_image_mode=False, max_num_faces=1, refine_landmarks=False
    ) as mesh:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            found = mesh.process(rgb).multi_face_landmarks
            if not found:
                values.append(np.nan)
                continue
            h, w = rgb.shape[:2]
            pts = np.array([(p.x * w, p.y * h) for p in found[0].landmark], dtype=np.float32)
            values.append(float(mouth_features(pts)[0]))
    return fps, np.array(values, dtype=np.float32)


def frame_envelope(audio: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """RMS level (dB) of the audio played with each frame."""
    edges = np.round(np.arange(n_frames + 1) * SAMPLE_RATE / fps).astype(int)
    out = np.full(n_frames, -100.0, dtype=np.float32)
    for i in range(n_frames):
        chunk = audio[edges[i] : edges[i + 1]]
        if len(chunk):
            out[i] = 10 * np.log10(np.mean(chunk.astype(np.float64) ** 2) + 1e-10)
    return out


def frame_speech(audio: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    hop = 160
    mask = speech_mask(audio, hop)
    centers = ((np.arange(n_frames) + 0.5) * SAMPLE_RATE / fps / hop).astype(int)
    return mask[np.clip(centers, 0, len(mask) - 1)] if len(mask) else np.zeros(n_frames, bool)


def estimate_lag(envelope: np.ndarray, openness: np.ndarray, max_lag: int = 6) -> tuple[int, float]:
    """Lag (frames) maximising the correlation of mouth opening with the audio envelope."""
    ok = ~np.isnan(openness)
    env = np.where(ok, envelope, np.nan)
    best = (0, -2.0)
    for lag in range(-max_lag, max_lag + 1):
        a = env[: len(env) - lag] if lag >= 0 else env[-lag:]
        b = openness[lag:] if lag >= 0 else openness[: len(openness) + lag]
        valid = ~(np.isnan(a) | np.isnan(b))
        if valid.sum() < 10 or np.std(a[valid]) == 0 or np.std(b[valid]) == 0:
            continue
        r = float(np.corrcoef(a[valid], b[valid])[0, 1])
        if r > best[1]:
            best = (lag, r)
    return best


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, v in enumerate(list(mask) + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i))
            start = None
    return runs


def sync_figures(video: Path, audio: np.ndarray) -> SyncFigures:
    fps, openness = measure_openness(video)
    n = len(openness)
    envelope = frame_envelope(audio, fps, n)
    speech = frame_speech(audio, fps, n)
    lag, r = estimate_lag(envelope, openness)
    margin = int(np.ceil(GAP_MARGIN_S * fps))
    gap_frames = []
    for a, b in _runs(~speech):
        if (b - a) / fps >= MIN_GAP_S:
            gap_frames.extend(range(a + margin, b - margin))
    gap = np.array(gap_frames, dtype=int)
    measured = openness[gap][~np.isnan(openness[gap])] if len(gap) else np.zeros(0)
    closed = float(np.mean(measured < CLOSED_BELOW)) if len(measured) else 1.0
    phrases = [(a, b) for a, b in _runs(speech) if (b - a) / fps >= 0.2]
    opened = sum(1 for a, b in phrases if np.nanmax(openness[a:b], initial=0.0) >= OPEN_ABOVE)
    return SyncFigures(fps, lag, r, closed, len(measured), len(phrases), opened, openness, envelope, speech)


def draw(figures: SyncFigures, audio: np.ndarray, png: Path, phones: list | None = None, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_audio = np.arange(len(audio)) / SAMPLE_RATE
    t_frames = (np.arange(len(figures.openness)) + 0.5) / figures.fps
    fig, (ax_wave, ax_mouth) = plt.subplots(2, 1, figsize=(14, 6), sharex=True,
                                            gridspec_kw={"height_ratios": [1, 1.3]})
    ax_wave.plot(t_audio, audio, lw=0.4, color="#456")
    for a, b in _runs(figures.speech):
        ax_wave.axvspan(a / figures.fps, b / figures.fps, color="#9c6", alpha=0.15, lw=0)
    ax_wave.set_ylabel("audio")
    if phones:
        for p in phones:
            if p.phone and p.phone.upper() not in ("SIL", "PAU", "+SPN+", "+NSN+"):
                ax_wave.axvline(p.start, color="#bbb", lw=0.5)
                ax_wave.text((p.start + p.end) / 2, 0.9 * np.max(np.abs(audio) + 1e-9), p.phone,
                             ha="center", fontsize=7)
    ax_mouth.plot(t_frames, figures.openness, color="#c33", lw=1.4, label="mouth opening (measured on video)")
    env = figures.envelope
    env_n = (env - env.min()) / max(1e-6, env.max() - env.min())
    ax_mouth.plot(t_frames, env_n, color="#36c", lw=0.8, alpha=0.7, label="audio level (normalised)")
    ax_mouth.axhline(CLOSED_BELOW, color="#888", ls=":", lw=0.8)
    ax_mouth.set_ylim(-0.05, 1.05)
    ax_mouth.set_xlabel("seconds")
    ax_mouth.legend(loc="upper right", fontsize=8)
    fig.suptitle(title or (f"lag {figures.lag_frames:+d} frames (r={figures.lag_correlation:.2f}) · "
                           f"lips together in {100 * figures.closed_in_silence:.0f}% of silent-gap frames · "
                           f"{figures.phrases_opened}/{figures.phrases} phrases open the mouth"))
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_report", description=__doc__.split("\n")[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("audio", type=Path)
    parser.add_argument("--text", help="transcript, to force-align phones onto the plot")
    parser.add_argument("--png", type=Path, help="output image (default: VIDEO.sync.png)")
    args = parser.parse_args(argv)
    try:
        audio = load_audio(args.audio)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.video.is_file():
        print(f"error: no such video: {args.video}", file=sys.stderr)
        return 2
    figures = sync_figures(args.video, audio)
    phones = None
    if args.text:
        from models.training.real_speech import Aligner, RealSpeechError

        try:
            phones = Aligner().align(audio, args.text)
        except RealSpeechError as exc:
            print(f"warning: no phones on the plot: {exc}", file=sys.stderr)
    png = args.png or args.video.with_suffix(".sync.png")
    draw(figures, audio, png, phones)
    print(f"lag (mouth after audio): {figures.lag_frames:+d} frames (r = {figures.lag_correlation:.2f})")
    print(f"lips together in silent gaps: {100 * figures.closed_in_silence:.1f}% of {figures.silent_frames} frames")
    print(f"phrases that open the mouth: {figures.phrases_opened}/{figures.phrases}")
    print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
