"""Mouth renderer cost per frame: photo avatar at 512×512, video avatars at 720p and 1080p.

    .venv/bin/python bench/render.py [--frames 200] [--no-record]

The video avatars are generated: the default astronaut with its mouth moved by the
photo renderer (syllables of varying openness, width and rounding, lips closed in
the pauses), scaled onto a 720p / 1080p canvas, encoded, and prepared with
``prepare_avatar`` like any user video; a fourth avatar is a 512² video whose lips
never meet (a smile that keeps them parted), so closing needs the closing warp.
The render then replays a different shape sequence over them, so the library path
(retrieve, align, colour match, feather) and the open/close warps all run.

Figures are milliseconds per frame on one core for ``MouthRenderer.render``, which
fetches the avatar frame itself: the steady state (second pass over the sequence)
and the first pass, which also cuts the library crops it borrows mouths from.  The
frame fetch alone (raw memory-mapped store) and a JPEG decode alone (what a fetch
cost before) are printed beside it.  Times are the process's CPU time
(``time.process_time`` with OpenCV on one thread): on a machine shared with other
jobs, wall-clock time mostly measures the neighbours.  Also writes the contact
sheet ``reports/renderer_sheet.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from datetime import date
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from bench.report import cpu_model, replace_section

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.avatar.avatar import Avatar, default_avatar, load_avatar, prepare_avatar  # noqa: E402
from models.mouth.mouth_shape import MouthShape  # noqa: E402
from models.render.mouth_renderer import MouthRenderer  # noqa: E402

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
                  fps: float = 25.0, seed: int = 1, min_openness: float = 0.0,
                  max_openness: float = 1.0) -> Path:
    """A video of the astronaut speaking (mouth moved by the photo renderer), ``size`` = (w, h).

    ``min_openness`` above the photo's own (~0.32) gives a person whose lips never meet;
    ``max_openness`` below 1 one who never opens the mouth wide."""
    avatar = default_avatar(cache_root, fps=fps)
    renderer = MouthRenderer(avatar)
    n = int(round(seconds * fps))
    w, h = size
    scale = min(w, h) / 512.0
    m = np.float32([[scale, 0, (w - 512 * scale) / 2], [0, scale, (h - 512 * scale) / 2]])

    def frames():
        for k, shape in enumerate(speech_like_shapes(n, fps, seed)):
            shape = dataclasses.replace(shape, openness=float(np.clip(shape.openness, min_openness, max_openness)))
            img = renderer.render(avatar.loop_frame(k), shape)
            if (w, h) != (512, 512):
                img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
            yield img

    return write_video(path, frames(), fps)


def time_renderer(avatar: Avatar, shapes: list[MouthShape]) -> dict[str, float]:
    """ms per render (the frame fetch included): a first pass (library crops still to be
    cut) and a second; plus a frame fetch alone and a JPEG decode alone for comparison."""
    renderer = MouthRenderer(avatar)
    idx = [avatar.loop_frame(k) for k in range(len(shapes))]
    store = avatar._frames  # noqa: SLF001 — the bench times the store's two paths
    fetch, decode = [], []
    for i in idx[:60]:
        t = time.process_time()
        avatar.frame(i)
        fetch.append(time.process_time() - t)
        t = time.process_time()
        store.decode(i)
        decode.append(time.process_time() - t)
    passes = []
    for _ in range(2):
        renderer.reset()
        times, edited = [], []
        for i, shape in zip(idx, shapes):
            t = time.process_time()
            out = renderer.render(i, shape)
            times.append(time.process_time() - t)
            edited.append(not np.array_equal(out, avatar.frame_readonly(i)))
        passes.append((np.array(times) * 1000, np.array(edited)))
    (first, _), (warm, edited) = passes
    return {"first": float(first.mean()), "mean": float(warm.mean()), "median": float(np.median(warm)),
            "p95": float(np.percentile(warm, 95)), "fetch": float(np.median(fetch) * 1000),
            "decode": float(np.median(decode) * 1000), "raw": float(store.is_raw),
            "edited": float(edited.mean() * 100), "edited_mean": float(warm[edited].mean())}


def sheet_shapes(rest: float) -> list[tuple[str, MouthShape]]:
    """Contact-sheet columns; ``rest`` is the target that shows the frame's own mouth."""
    return [
        ("closed 0", MouthShape()), ("open 0.1", MouthShape(0.1)), ("open 0.2", MouthShape(0.2)),
        (f"own r={rest:.2f}", MouthShape(rest)), ("open 0.5", MouthShape(0.5)),
        ("open 0.7", MouthShape(0.7)), ("open 1.0", MouthShape(1.0)),
        ("spread 0.5/+1", MouthShape(0.5, 1.0)), ("narrow 0.5/-1", MouthShape(0.5, -1.0)),
        ("round 0.4/r1", MouthShape(0.4, -0.5, 1.0)), ("round shut 0.05/r1", MouthShape(0.05, -0.5, 1.0)),
    ]


def contact_sheet(avatars: list[tuple[str, Avatar, int]], path: Path, tile: int = 260) -> Path:
    """One row per avatar, one column per shape; each tile a crop around the mouth."""
    rows = []
    for label, avatar, i in avatars:
        renderer = MouthRenderer(avatar)
        library = renderer._library  # noqa: SLF001 — to name the frame's own openness target
        rest = float(library.target_for(i)[0]) if library is not None else float(avatar.mouth_features[i, 0])
        rest = min(max(rest, 0.0), 1.0)
        lm = avatar.landmarks[i]
        span = float(np.linalg.norm(lm[263] - lm[33]))
        cx, cy = lm[[61, 291, 152, 2]].mean(axis=0)
        half = 0.95 * span
        tiles = []
        for name, shape in sheet_shapes(rest):
            renderer.reset()
            img = renderer.render(i, shape)
            m = np.float32([[tile / (2 * half), 0, tile / 2 - cx * tile / (2 * half)],
                            [0, tile / (2 * half), tile / 2 - cy * tile / (2 * half)]])
            crop = cv2.warpAffine(img, m, (tile, tile), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
            for colour, thick in (((255, 255, 255), 2), ((20, 20, 20), 1)):
                cv2.putText(crop, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, thick)
                cv2.putText(crop, name, (6, 34), cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, thick)
            tiles.append(crop)
        rows.append(np.hstack(tiles))
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack(rows))
    return path


def prepared_video(cache: Path, name: str, size: tuple[int, int], seconds: float, **kwargs) -> Avatar:
    src = cache / name
    if not src.exists():
        print(f"generating {src.name} ...", flush=True)
        talking_video(src, cache, seconds=seconds, size=size, **kwargs)
    info = prepare_avatar(src, cache, max_side=max(size))
    return load_avatar(info.avatar_id, cache)


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
        avatar = prepared_video(args.cache, f"talking_{size[1]}p.mp4", size, 6.0)
        rows.append((label, avatar, time_renderer(avatar, shapes)))
    parted = prepared_video(args.cache, "talking_parted_512.mp4", (512, 512), 4.0, min_openness=0.4)
    rows.append(("video 512×512, lips never meet", parted, time_renderer(parted, shapes)))
    lines = [
        f"Machine: {os.cpu_count()} cores, {cpu_model()}; {date.today().isoformat()}; CPU ms per frame "
        f"(process time, cv2 threads = 1, load average {os.getloadavg()[0]:.1f}); "
        f"{args.frames} frames of a speech-like shape sequence (silences included: closed lips are a warp too).",
        "",
        "| avatar | face (eye span px) | render mean ms | median | p95 | edited frames | mean ms of edited | "
        "first pass mean | frame fetch ms (store) | JPEG decode ms (old fetch) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, avatar, r in rows:
        span = float(np.median(np.linalg.norm(avatar.landmarks[:, 263] - avatar.landmarks[:, 33], axis=1)))
        store = "raw mmap" if r["raw"] else "JPEG"
        lines.append(f"| {label} | {span:.0f} | {r['mean']:.2f} | {r['median']:.2f} | {r['p95']:.2f} | "
                     f"{r['edited']:.0f}% | {r['edited_mean']:.2f} | {r['first']:.2f} | "
                     f"{r['fetch']:.2f} ({store}) | {r['decode']:.2f} |")
    lines += [
        "",
        "Render times include fetching the avatar frame (a copy out of the memory-mapped raw "
        "store, shared by all sessions through the page cache); the last column is what that "
        "fetch cost when every frame was JPEG-decoded.",
    ]
    print("\n".join(lines))
    if not args.no_record:
        replace_section(SECTION, lines)
    video = rows[1][1]
    sheet = contact_sheet([
        ("photo", photo, 0),
        ("video, closed frame", video, int(np.argmin(video.mouth_features[:, 0]))),
        ("video, open frame", video, int(np.argmax(video.mouth_features[:, 0]))),
        ("video, lips never meet", parted, int(np.argmin(parted.mouth_features[:, 0]))),
    ], ROOT / "reports" / "renderer_sheet.png")
    print(f"contact sheet: {sheet.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
