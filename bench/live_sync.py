"""A/V offset at the receiver and its drift over a long live session.

    python -m bench.live_sync [--minutes 10] [--no-record]

One aiortc viewer sends real speech (with pauses) as its microphone for the whole
run and receives the avatar.  Three views of sync, all from what the viewer got:

* content: per 30 s window, the lag that best lines up the mouth opening seen in
  the decoded frames (each frame taken at the middle of its 40 ms on screen) with
  the energy of the decoded audio, both on the server's clock (RTCP sender
  reports) -- what a browser's lip sync does.  Positive: the sound comes later.
* reports: the A/V offset implied by each pair of video/audio sender reports for
  the same frame index, over time; its slope is the drift.
* wall clock: received RTP time against arrival time, per track (1.0 = no drift).

Targets (issue 3): |offset| ≤ 40 ms, no drift over 10 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.live_common import ServerProcess, load_average
from bench.report import record
from bench.speech import long_speech
from models.avatar.avatar import load_avatar
from testing.live_measure import MouthMeter, best_lag, envelope
from testing.webrtc_client import LipstreamClient

FPS = 25.0
WINDOW_S = 30.0


def report_offsets(client: LipstreamClient) -> tuple[np.ndarray, np.ndarray]:
    """(wall time, video-minus-audio offset in ms) from each video report and the nearest audio report.

    Frame i's video timestamp is i*3600 and its audio starts at i*1920 (48 kHz),
    counted from the first frame/packet the viewer received (frame 0 of both)."""
    o_v, o_a = client.rtp_origin("video"), client.rtp_origin("audio")
    audio = client.reports["audio"]
    times, offsets = [], []
    for v in client.reports["video"]:
        a = min(audio, key=lambda r: abs(r.ntp_unix - v.ntp_unix))
        if abs(a.ntp_unix - v.ntp_unix) > 2.0:
            continue
        media_v = ((v.rtp - o_v) % 2**32) / 90_000
        media_a = ((a.rtp - o_a) % 2**32) / 48_000
        # Wall time at which each track's media time 0 was sent, per its report:
        offsets.append(((v.ntp_unix - media_v) - (a.ntp_unix - media_a)) * 1000)
        times.append(v.ntp_unix)
    return np.array(times), np.array(offsets)


def wall_slope(pts: np.ndarray, arrivals: np.ndarray, rate: int) -> float:
    """Media seconds per wall second (least squares)."""
    if len(pts) < 10:
        return float("nan")
    return float(np.polyfit(arrivals - arrivals[0], (pts - pts[0]) / rate, 1)[0])


async def run(url: str, minutes: float, meter: MouthMeter) -> dict:
    seconds = minutes * 60
    speech = long_speech(seconds)
    client = LipstreamClient(url, frame_fn=lambda f: meter.score(f.to_ndarray(format="gray")))
    await client.connect(mic=speech)
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds + 1.0:
        await asyncio.sleep(1.0)
    stats = await client.stats()
    await client.close()

    v_pts = np.array([v.pts for v in client.video])
    scores = np.array([v.data for v in client.video], dtype=float)
    t_v = client.sender_time("video", v_pts) + 0.5 / FPS
    audio, start = client.audio_signal()
    t_rel, rms = envelope(audio, 48_000, 0.01)
    t_a = client.sender_time("audio", start + t_rel * 48_000)
    windows = []
    for w0 in np.arange(t_v[0], t_v[-1] - WINDOW_S / 2, WINDOW_S):
        sel = (t_v >= w0) & (t_v < w0 + WINDOW_S)
        lag, r = best_lag(t_v[sel], scores[sel], t_a, rms, max_lag=0.2, step=0.005)
        windows.append((w0 - t_v[0], lag * 1000, r))
    rt, ro = report_offsets(client)
    slope = float(np.polyfit(rt - rt[0], ro, 1)[0]) * 600 if len(rt) > 2 else float("nan")  # ms per 10 min
    span = min(60.0, (rt[-1] - rt[0]) / 3) if len(rt) > 2 else 0.0
    first_min = float(np.median(ro[rt <= rt[0] + span])) if span else float("nan")
    last_min = float(np.median(ro[rt >= rt[-1] - span])) if span else float("nan")
    arr_v = np.array([v.arrival for v in client.video])
    arr_a = np.array([a.arrival for a in client.audio])
    a_pts = np.array([a.pts for a in client.audio])
    return {
        "windows": windows,
        "report_offsets": ro,
        "report_slope": slope,
        "report_first_last": (first_min, last_min, span),
        "video_rate": wall_slope(v_pts, arr_v, 90_000),
        "audio_rate": wall_slope(a_pts, arr_a, 48_000),
        "frames": len(client.video),
        "expected_frames": int(seconds * FPS),
        "stats": stats,
    }


async def main_async(args) -> list[str]:
    data = Path(tempfile.mkdtemp(prefix="lipstream-bench-")) / "data"
    data.mkdir(parents=True)
    server = await ServerProcess.start(data)
    try:
        meter = MouthMeter(load_avatar("default", data / "avatars"))
        load0 = load_average()
        res = await run(server.url, args.minutes, meter)
        load1 = load_average()
    finally:
        server.stop()
    lags = np.array([w[1] for w in res["windows"] if w[2] > 0.3])
    ro = res["report_offsets"]
    st = res["stats"]
    lines = [
        f"{args.minutes:g} min session, mic = real speech with pauses (pocketsphinx/alsa recordings), default avatar, "
        f"one aiortc viewer in the benchmark process. Load average {load0:.1f} → {load1:.1f} (shared machine).",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| content A/V offset (mouth vs sound, {len(lags)} windows of {WINDOW_S:.0f} s): mean / min / max "
        f"| {lags.mean():+.0f} / {lags.min():+.0f} / {lags.max():+.0f} ms | \\|offset\\| ≤ 40 ms |",
        f"| content offset, first → last window | {lags[0]:+.0f} → {lags[-1]:+.0f} ms | no drift |",
        f"| sender-report A/V offset: median, spread (p5–p95) | {np.median(ro):+.1f} ms, "
        f"{np.percentile(ro, 5):+.1f}…{np.percentile(ro, 95):+.1f} ms | – |",
        f"| sender-report offset, median of the first / last {res['report_first_last'][2]:.0f} s "
        f"| {res['report_first_last'][0]:+.1f} / {res['report_first_last'][1]:+.1f} ms | no drift |",
        f"| sender-report offset trend (least squares) | {res['report_slope']:+.2f} ms per 10 min | ≈ 0 |",
        f"| media time per wall second, video / audio | {res['video_rate']:.6f} / {res['audio_rate']:.6f} | 1.0 |",
        f"| frames received / expected | {res['frames']} / {res['expected_frames']} | – |",
        f"| server: fps, late / skipped frames, latency p50/p95 | {st['fps']}, {st['late_frames']} / "
        f"{st['skipped_frames']}, {st['latency_session_ms']['p50']}/{st['latency_session_ms']['p95']} ms | – |",
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    lines = asyncio.run(main_async(args))
    print("\n".join(lines))
    if not args.no_record:
        record("bench/live_sync.py", lines)


if __name__ == "__main__":
    main()
