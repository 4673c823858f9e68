"""Live per-frame CPU at native HD: render + convert + encode, 1080×1920 and 720×1280.

    python -m bench.hd_live [--seconds 12] [--frames 300] [--no-record]

A generated portrait talking head (face 440 px wide at 1080×1920, 293 px at 720×1280)
is prepared like an upload (too long for the raw store: frames come from JPEG, the
worst case), then a live session renders real speech over it.  Per frame, one core
(process CPU time, OpenCV on one thread, as in a worker):

* region path (what the worker does): ``compose`` returns the source frame plus the
  mouth region; ``Picture.i420()`` converts only that region onto the source frame's
  kept I420; the encoder (VP8 and H.264, worker settings) takes it;
* full-frame path (before): the renderer pastes into a full BGR copy, the whole frame
  is converted to I420, same encoder.

Both run in the same process over the same frames.  The full-frame path re-renders a
frame the region path has just rendered (its decoded source frame and library pick are
warm), so compare their convert columns; render is charged to the region path.  Targets: region path ≤ 30 ms at 1080×1920, ≤ 15 ms at 720×1280.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.report import record
from bench.speech import long_speech
from live.engine.session import EngineConfig, LipSyncSession
from live.rtc.video_encoder import VideoEncoder
from models.avatar.avatar import Avatar, load_avatar, prepare_avatar
from models.mouth.mouth_model import MouthPredictor
from models.render.picture import bgr_to_i420
from testing.hd_media import talking_head_video

ROOT = Path(__file__).resolve().parent.parent
SIZES = (((1080, 1920), 440.0, 30.0), ((720, 1280), 293.0, 15.0))


def hd_avatar(cache: Path, size: tuple[int, int], face_px: float, seconds: float) -> Avatar:
    w, h = size
    src = cache / f"talking_{w}x{h}_{seconds:g}s.mp4"
    if not src.exists():
        print(f"generating {src.name} ...", flush=True)
        talking_head_video(src, cache, width=w, height=h, face_px=face_px, seconds=seconds)
    info = prepare_avatar(src, cache)
    assert (info.width, info.height) == size, (info.width, info.height)
    return load_avatar(info.avatar_id, cache)


def _cpu_ms(fn) -> tuple[object, float]:
    t = time.process_time()
    out = fn()
    return out, (time.process_time() - t) * 1000.0


def measure(avatar: Avatar, predictor: MouthPredictor, audio: np.ndarray, frames: int) -> dict[str, dict[str, float]]:
    w, h = avatar.info.width, avatar.info.height
    session = LipSyncSession(avatar, predictor, EngineConfig(fps=25.0))
    session.push_audio(audio)
    session.end_of_stream()
    enc = {c: VideoEncoder(c, w, h, 25.0) for c in ("vp8", "h264")}
    old = {c: VideoEncoder(c, w, h, 25.0) for c in ("vp8", "h264")}
    renderer = session.compositor.renderer
    rows: dict[str, list[list[float]]] = {k: [] for k in ("region vp8", "region h264", "full vp8", "full h264")}
    edited = 0
    for k in range(frames):
        # The mouth state advances once; both paths then draw the same frame.
        t = time.process_time()
        frame = session.next_frame(pad_silence=True)
        render = (time.process_time() - t) * 1000.0          # features + model + region render
        picture = frame.picture
        edited += picture.edit is not None
        i420, convert = _cpu_ms(picture.i420)
        for codec in ("vp8", "h264"):
            _, encode = _cpu_ms(lambda: enc[codec].encode(i420, k * 3600))
            rows[f"region {codec}"].append([render, convert, encode])
        full, render_full = _cpu_ms(lambda: renderer.render(picture.source_index, frame.shape))
        full_i420, convert_full = _cpu_ms(lambda: bgr_to_i420(full))
        assert np.array_equal(full_i420, i420)   # the region path changes no pixel
        for codec in ("vp8", "h264"):
            _, encode = _cpu_ms(lambda: old[codec].encode(full_i420, k * 3600))
            rows[f"full {codec}"].append([render_full, convert_full, encode])
    out = {}
    for name, values in rows.items():
        a = np.array(values)
        total = a.sum(axis=1)
        out[name] = {"render": a[:, 0].mean(), "convert": a[:, 1].mean(), "encode": a[:, 2].mean(),
                     "total": total.mean(), "p95": float(np.percentile(total, 95))}
    out["edited"] = {"share": edited / frames}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=12.0, help="length of the generated avatar videos")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "bench_hd")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    args.cache.mkdir(parents=True, exist_ok=True)
    predictor = MouthPredictor.load()
    audio = long_speech(args.frames / 25.0 + 1.0)
    lines = [
        f"Live session frames on one core (process CPU ms per frame, cv2 and torch on one thread), "
        f"{args.frames} frames of real speech; avatar: a generated {args.seconds:g} s portrait talking head, "
        "frames from JPEG (too long for the raw store: the worst case). Region = what the worker does now "
        "(mouth region composited and converted, source frame's I420 kept); full = paste into a full BGR copy "
        "and convert the whole frame (before). Render includes features + model (~0.2 ms) and the frame fetch.",
        "",
        "| size | face px | path | render | convert | encode | total mean | total p95 | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, face_px, target in SIZES:
        avatar = hd_avatar(args.cache, size, face_px, args.seconds)
        face = float(np.median(np.linalg.norm(avatar.landmarks[:, 454] - avatar.landmarks[:, 234], axis=1)))
        r = measure(avatar, predictor, audio, args.frames)
        for name in ("region vp8", "region h264", "full vp8", "full h264"):
            v = r[name]
            verdict = ""
            if name.startswith("region"):
                verdict = f"≤ {target:g} ms: {'met' if v['total'] <= target else 'MISSED'}"
            lines.append(f"| {size[0]}×{size[1]} | {face:.0f} | {name} | {v['render']:.2f} | {v['convert']:.2f} | "
                         f"{v['encode']:.2f} | **{v['total']:.2f}** | {v['p95']:.2f} | {verdict} |")
        lines.append(f"| {size[0]}×{size[1]} | | mouth edited in | {100 * r['edited']['share']:.0f}% of frames | | | | | |")
    print("\n".join(lines))
    if not args.no_record:
        record("bench/hd_live.py", lines)


if __name__ == "__main__":
    main()
