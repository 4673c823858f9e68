"""Mouth renderer cost per frame: photo avatar at 512×512, video avatars at 720p and 1080p.

    .venv/bin/python bench/render.py [--frames 200] [--no-record]

The video avatars are generated: the default astronaut with its mouth moved by the
photo renderer (syllables of varying openness, width and rounding), scaled onto a
720p / 1080p canvas, encoded, and prepared with ``prepare_avatar`` like any user
video.  The render then replays a different shape sequence over it, so the library
path (retrieve, align, colour match, feather) and the warp fallback both run.

Figures are milliseconds per frame on one core for ``MouthRenderer.render`` alone
(frame decode excluded; its cost is printed separately: it belongs to the avatar
store and is shared by everything that shows frames).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from datetime import date
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.avatar import Avatar, default_avatar, load_avatar, prepare_avatar  # noqa: E402
from models.mouth_renderer import MouthRenderer  # noqa: E402
from models.mouth_shape import MouthShape  # noqa: E402

SECTION = "## bench/render.py — mouth renderer"


def speech_like_shapes(n: int, fps: float = 25.0, seed: int = 0) -> list[MouthShape]:
    """Syllables at ~4 Hz with varying peaks, spread and rounding, and pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fps
    shapes = []
    peaks = rng.uniform(0.25, 0.95, size=int(t[-1] * 5) + 2)
    widths = rng.uniform(-0.6, 0.8, size=len(peaks))
    rounds = np.where(rng.uniform(size=len(peaks)) < 0.25, rng.uniform(0.4, 1.0, size=len(peaks)), 0.0)
    for k, tk in enumerate(t):
        syl = int(tk * 4.2)
        phase = (tk * 4.2) % 1.0
        pause = (tk % 3.0) > 2.4
        o = 0.0 if pause else peaks[syl] * np.sin(np.pi * phase) ** 1.5
        shapes.append(MouthShape(openness=float(o), width=float(widths[syl] * min(1.0, o * 4)),
                                 rounding=float(rounds[syl] * min(1.0, o * 4)), speech=not pause))
    return shapes


def write_video(path: Path, frames, fps: float = 25.0) -> Path:
    with av.open(str(path), "w") as out:
        stream = None
        for frame in frames:
            if stream is None:
                stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height = frame.shape[1], frame.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = {"preset": "veryfast", "crf": "16"}
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        if stream is not None:
            out.mux(stream.encode())
    return path


def talking_video(path: Path, cache_root: Path, *, seconds: float = 4.0, size: tuple[int, int] = (512, 512),
                  fps: float = 25.0, seed: int = 1) -> Path:
    """A video of the astronaut speaking (mouth moved by the photo renderer), ``size`` = (w, h)."""
    avatar = default_avatar(cache_root, fps=fps)
    renderer = MouthRenderer(avatar)
    n = int(round(seconds * fps))
    w, h = size
    scale = min(w, h) / 512.0
    m = np.float32([[scale, 0, (w - 512 * scale) / 2], [0, scale, (h - 512 * scale) / 2]])

    def frames():
        for k, shape in enumerate(speech_like_shapes(n, fps, seed)):
            img = renderer.render(avatar.loop_frame(k), shape)
            if (w, h) != (512, 512):
                img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
            yield img

    return write_video(path, frames(), fps)


def time_renderer(avatar: Avatar, shapes: list[MouthShape]) -> dict[str, float]:
    renderer = MouthRenderer(avatar)
    idx = [avatar.loop_frame(k) for k in range(len(shapes))]
    for i in set(idx):          # decode outside the timed loop
        avatar.frame_readonly(i)
    decode = []
    for i in idx[:40]:
        t = time.perf_counter()
        avatar._frames._lru.pop(i, None)  # noqa: SLF001 — force a real decode
        avatar.frame_readonly(i)
        decode.append(time.perf_counter() - t)
    renderer.render(idx[0], shapes[0])   # palettes and first plans
    times = []
    for i, shape in zip(idx, shapes):
        avatar.frame_readonly(i)          # keep the decode out of the render timing
        t = time.perf_counter()
        renderer.render(i, shape)
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1000
    return {"mean": float(ms.mean()), "median": float(np.median(ms)), "p95": float(np.percentile(ms, 95)),
            "decode": float(np.median(decode) * 1000)}


def record(lines: list[str]) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = SECTION + "\n\n" + "\n".join(lines) + "\n"
    pattern = re.compile(re.escape(SECTION) + r"\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(block.rstrip("\n"), text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    path.write_text(text if text.endswith("\n") else text + "\n")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "bench_render")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    cv2.setNumThreads(1)   # the budget is one core per session
    args.cache.mkdir(parents=True, exist_ok=True)
    shapes = speech_like_shapes(args.frames, seed=7)
    rows = []
    photo = default_avatar(args.cache)
    rows.append(("photo 512×512 (default)", photo, time_renderer(photo, shapes)))
    for label, size in (("video 1280×720", (1280, 720)), ("video 1920×1080", (1920, 1080))):
        src = args.cache / f"talking_{size[1]}p.mp4"
        if not src.exists():
            print(f"generating {src.name} ...", flush=True)
            talking_video(src, args.cache, seconds=6.0, size=size)
        info = prepare_avatar(src, args.cache)
        avatar = load_avatar(info.avatar_id, args.cache)
        rows.append((label, avatar, time_renderer(avatar, shapes)))
    lines = [
        f"Machine: {os.cpu_count()} cores, {cpu_model()}; {date.today().isoformat()}; cv2 threads = 1; "
        f"{args.frames} frames of a speech-like shape sequence.",
        "",
        "| avatar | face (eye span px) | render mean ms | median | p95 | JPEG decode ms (not included) |",
        "|---|---|---|---|---|---|",
    ]
    for label, avatar, r in rows:
        span = float(np.median(np.linalg.norm(avatar.landmarks[:, 263] - avatar.landmarks[:, 33], axis=1)))
        lines.append(f"| {label} | {span:.0f} | {r['mean']:.2f} | {r['median']:.2f} | {r['p95']:.2f} | "
                     f"{r['decode']:.2f} |")
    print("\n".join(lines))
    if not args.no_record:
        record(lines)


if __name__ == "__main__":
    main()
