"""Audio front-end and MP4 writer costs, per real-time second and per frame.

    nice -n 10 .venv/bin/python -m bench.audio_frontend [--seconds 60] [--frames 100] [--no-record]

Live path (per 20 ms WebRTC frame / 40 ms video frame): StreamResampler on
aiortc-style 48 kHz stereo s16 frames, MelStream and VoiceActivity pushes.
Batch path: load_audio of MP3 and M4A files, offline speech_mask, and Mp4Writer
frames per second at 512x512 and 720x1280 with libx264 on 1 thread and on all.
Figures go to BENCHMARKS.md under this script's own section.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from bench.report import cpu_model, replace_section
from live.engine.mp4_writer import Mp4Writer
from models.audio.audio_io import StreamResampler, load_audio
from models.audio.mel_stream import MelStream
from models.audio.pcm import float_to_int16
from models.audio.vad import VoiceActivity, speech_mask
from testing.media import encode_audio, face_frames, speech_with_gaps

SECTION = "## bench/audio_frontend.py"
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="audio length for the audio figures")
    ap.add_argument("--frames", type=int, default=100, help="frames per MP4 encoding run")
    ap.add_argument("--no-record", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    lines = run(args.seconds, args.frames)
    print("\n".join(lines))
    if not args.no_record:
        replace_section(SECTION, lines)


def real_speech(seconds: float) -> np.ndarray:
    """Real recorded speech with pauses, repeated to ``seconds``."""
    one = speech_with_gaps(clips=("librivox:0", "Front_Center", "librivox:2"), gaps=(0.7, 0.5)).audio
    return np.resize(one, int(seconds * 16_000)).astype(np.float32)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(seconds: float, n_frames: int) -> list[str]:
    speech = real_speech(seconds)
    rows: list[tuple[str, str]] = []

    # -- live path ----------------------------------------------------------
    stereo48 = np.repeat(StreamResampler(48_000).push(speech, 16_000)[:, None], 2, axis=1)
    pcm = float_to_int16(stereo48)
    frames = []
    for i in range(0, len(pcm) - 959, 960):
        f = av.AudioFrame.from_ndarray(pcm[i : i + 960].reshape(1, -1), format="s16", layout="stereo")
        f.sample_rate, f.pts, f.time_base = 48_000, i, Fraction(1, 48_000)
        frames.append(f)
    resampler = StreamResampler()
    t = timed(lambda: [resampler.push(f) for f in frames])
    rows.append(("StreamResampler, 20 ms 48 kHz stereo s16 frame", f"{t / len(frames) * 1e6:.0f} µs ({seconds / t:.0f}× real time)"))

    chunks = [speech[i : i + 640] for i in range(0, len(speech), 640)]
    mel = MelStream()
    t = timed(lambda: [mel.push(c) for c in chunks])
    rows.append(("MelStream.push, 40 ms chunk", f"{t / len(chunks) * 1e6:.0f} µs ({seconds / t:.0f}× real time)"))

    vad = VoiceActivity()
    t = timed(lambda: [vad.push(c) for c in chunks])
    rows.append(("VoiceActivity.push, 40 ms chunk", f"{t / len(chunks) * 1e6:.0f} µs ({seconds / t:.0f}× real time)"))

    # -- batch path ---------------------------------------------------------
    t = timed(lambda: speech_mask(speech, 640))
    rows.append((f"speech_mask, {seconds:.0f} s offline", f"{t * 1000:.0f} ms ({seconds / t:.0f}× real time)"))
    with tempfile.TemporaryDirectory(prefix="audio_bench.") as tmp:
        stereo44 = np.repeat(StreamResampler(44_100).push(speech, 16_000)[:, None], 2, axis=1)
        for suffix in (".mp3", ".m4a"):
            path = encode_audio(Path(tmp) / f"speech{suffix}", stereo44, 44_100)
            t = timed(lambda: load_audio(path))
            rows.append((f"load_audio, {seconds:.0f} s 44.1 kHz stereo {suffix[1:]}", f"{t * 1000:.0f} ms ({seconds / t:.0f}× real time)"))
        rows += encode_rows(Path(tmp), n_frames)

    return [
        f"Machine: {os.cpu_count()} × {cpu_model()}, Python {platform.python_version()}, "
        f"PyAV {av.__version__}; {dt.date.today().isoformat()}. Shared machine: ratios are "
        "more trustworthy than absolute times.",
        "",
        "| what | cost |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
    ]


def encode_rows(tmp: Path, n_frames: int) -> list[tuple[str, str]]:
    rows = []
    audio = np.zeros(640, np.int16)
    for w, h in ((512, 512), (720, 1280)):
        base = face_frames(n_frames / 25, (w, h))
        for threads in (1, 0):
            path = tmp / f"enc_{w}x{h}_{threads}.mp4"
            t0 = time.perf_counter()
            with Mp4Writer(path, 25, w, h, threads=threads) as writer:
                for img in tqdm(base, desc=f"mp4 {w}x{h} threads={threads or 'auto'}", leave=False):
                    writer.write(img, audio)
            t = time.perf_counter() - t0
            label = "1 thread" if threads == 1 else f"threads=auto ({os.cpu_count()} cores)"
            rows.append((f"Mp4Writer {w}×{h} H.264 superfast crf 20 + AAC, {label}",
                         f"{n_frames / t:.0f} fps ({t / n_frames * 1000:.1f} ms/frame)"))
    return rows


if __name__ == "__main__":
    main()
