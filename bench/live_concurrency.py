"""Several speaking sessions at once on one server: fps, CPU per session, where time goes.

    python -m bench.live_concurrency [--sessions 4] [--seconds 30] [--no-record]

Each session is a real aiortc viewer whose microphone plays real speech (so the
mouth model and renderer work all the time, not just the idle loop) at the
default avatar's 512×512, 25 fps.  Figures:

* fps each viewer actually received, and the server's late/skipped frames;
* CPU per session: each engine worker process (features, model, render) from
  /proc, plus the server process (WebRTC, VP8/Opus encoding, mic decoding)
  divided by the number of sessions;
* where the time goes, per session-second: decode and encode measured on the
  same media in this process, features/model/render from the workers' own
  timers.

The viewers run on the same two cores.  So that they don't eat the CPU being
measured, they count video frames as they arrive (RTP reassembled, not decoded --
the test suite's viewers decode and check every frame); audio is decoded.  Their
CPU is reported too; a real deployment has them elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bench.live_common import ServerProcess, cpu_seconds, load_average
from bench.report import record
from bench.speech import long_speech
from tests.webrtc_client import LipstreamClient

FPS = 25.0


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def codec_costs(n: int = 100) -> dict[str, float]:
    """ms per item: VP8 encode of a 512x512 frame, Opus encode/decode of 20 ms, mic resampling."""
    from aiortc.codecs.opus import OpusDecoder, OpusEncoder
    from aiortc.codecs.vpx import Vp8Encoder
    from aiortc.jitterbuffer import JitterFrame

    from live.audio_io import StreamResampler
    from models.avatar import default_avatar

    avatar = default_avatar(Path(tempfile.gettempdir()) / "lipstream-bench-avatars")
    frames = [avatar.frame(int(i)) for i in avatar.loop_order[:n]]
    enc = Vp8Encoder()
    vf = [av.VideoFrame.from_ndarray(f, format="bgr24").reformat(format="yuv420p") for f in frames]
    for k, f in enumerate(vf):
        f.pts, f.time_base = k * 3600, Fraction(1, 90_000)
    t0 = time.perf_counter()
    for f in vf:
        enc.encode(f)
    vp8 = (time.perf_counter() - t0) / len(vf) * 1000

    speech = long_speech(4.0)
    pcm48 = np.repeat(speech, 3)
    opus_enc, opus_dec, resampler = OpusEncoder(), OpusDecoder(), StreamResampler()
    packets, t_enc = [], 0.0
    for k in range(len(pcm48) // 960):
        chunk = (pcm48[k * 960 : (k + 1) * 960] * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48_000, k * 960
        t0 = time.perf_counter()
        payloads, ts = opus_enc.encode(frame)
        t_enc += time.perf_counter() - t0
        packets += [(p, ts) for p in payloads]
    t0 = time.perf_counter()
    decoded = [opus_dec.decode(JitterFrame(p, ts)) for p, ts in packets]
    t_dec = time.perf_counter() - t0
    t0 = time.perf_counter()
    for frames_ in decoded:
        for f in frames_:
            resampler.push(f)
    t_res = time.perf_counter() - t0
    n_pk = max(1, len(packets))
    return {"vp8_encode": vp8, "opus_encode": t_enc / n_pk * 1000, "opus_decode": t_dec / n_pk * 1000,
            "resample": t_res / n_pk * 1000}


class _CountingVideoDecoder:
    """Stands in for VP8 decoding in the benchmark's viewers: one tiny frame per encoded frame."""

    def decode(self, encoded_frame) -> list[av.VideoFrame]:
        frame = av.VideoFrame(16, 16, "yuv420p")
        frame.pts = encoded_frame.timestamp
        frame.time_base = Fraction(1, 90_000)
        return [frame]


def _count_video_instead_of_decoding() -> None:
    import aiortc.rtcrtpreceiver as receiver

    real = receiver.get_decoder
    receiver.get_decoder = lambda codec: _CountingVideoDecoder() if codec.mimeType.startswith("video/") else real(codec)


async def run(url: str, server_pid: int, n: int, seconds: float) -> dict:
    _count_video_instead_of_decoding()
    speech = long_speech(seconds + 10)
    clients = [LipstreamClient(url, frame_fn=lambda f: None) for _ in range(n)]
    for k, c in enumerate(clients):
        # Different starting points, so the sessions don't speak in unison.
        await c.connect(mic=np.roll(speech, k * 16_000 * 3))
    await asyncio.sleep(3.0)  # settle
    stats0 = [await c.stats() for c in clients]
    pids = [s["worker_pid"] for s in stats0]
    cpu0 = [cpu_seconds(p) for p in pids]
    srv0, own0 = cpu_seconds(server_pid), _own_cpu()
    counts0 = [len(c.video) for c in clients]
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    counts1 = [len(c.video) for c in clients]
    cpu1 = [cpu_seconds(p) for p in pids]
    srv1, own1 = cpu_seconds(server_pid), _own_cpu()
    stats1 = [await c.stats() for c in clients]
    _, listing = await clients[0].request("GET", "/sessions")
    for c in clients:
        await c.close()
    return {
        "wall": wall,
        "fps": [(b - a) / wall for a, b in zip(counts0, counts1)],
        "worker_cpu": [(b - a) / wall for a, b in zip(cpu0, cpu1)],
        "server_cpu": (srv1 - srv0) / wall,
        "client_cpu": (own1 - own0) / wall,
        "late": [b["late_frames"] - a["late_frames"] for a, b in zip(stats0, stats1)],
        "skipped": [b["skipped_frames"] - a["skipped_frames"] for a, b in zip(stats0, stats1)],
        "stats": stats1,
        "loop_lag": listing.get("event_loop_lag_ms"),
    }


async def main_async(args) -> list[str]:
    data = Path(tempfile.mkdtemp(prefix="lipstream-bench-")) / "data"
    data.mkdir(parents=True)
    server = await ServerProcess.start(data, max_sessions=args.sessions)
    try:
        load0 = load_average()
        res = await run(server.url, server.proc.pid, args.sessions, args.seconds)
        load1 = load_average()
    finally:
        server.stop()
    costs = codec_costs()
    n = args.sessions
    t = {k: np.mean([s["timings_ms"].get(k) or 0.0 for s in res["stats"]]) for k in
         ("features_ms", "model_ms", "render_ms", "convert_ms", "cpu_ms")}
    lat = [s["latency_session_ms"] for s in res["stats"]]
    per_s = lambda ms_per_item, items: ms_per_item * items  # noqa: E731  (ms of CPU per session-second)
    lines = [
        f"{n} sessions speaking at once (each viewer's mic plays real speech), default avatar 512×512 at 25 fps, "
        f"VP8 + Opus, {res['wall']:.0f} s measured after 3 s of settling. `nproc` = {os.cpu_count()}; load average "
        f"{load0:.1f} → {load1:.1f} (shared machine, other jobs running).",
        "",
        "| session | fps received | late / skipped frames | mic latency p50 / p95 | worker CPU |",
        "|---|---|---|---|---|",
    ]
    for k in range(n):
        lines.append(f"| {k + 1} | {res['fps'][k]:.1f} | {res['late'][k]} / {res['skipped'][k]} | "
                     f"{lat[k]['p50']} / {lat[k]['p95']} ms | {res['worker_cpu'][k] * 100:.0f} % of a core |")
    server_share = res["server_cpu"] / n
    lines += [
        "",
        f"CPU per session: worker {np.mean(res['worker_cpu']) * 100:.0f} % + server process share "
        f"{server_share * 100:.0f} % = **{(np.mean(res['worker_cpu']) + server_share) * 100:.0f} % of one core**; "
        f"server process total {res['server_cpu'] * 100:.0f} %; the {n} viewers (VP8/Opus decoding, same machine) "
        f"{res['client_cpu'] * 100:.0f} %. Server event-loop lag (last minute, ms): {res['loop_lag']}.",
        "",
        "Where the time goes, per session, in ms of CPU per second of video (25 frames, 50 audio packets):",
        "",
        "| stage | ms per item | ms per session-second | measured by |",
        "|---|---|---|---|",
        f"| mic decode (Opus) + resample to 16 kHz | {costs['opus_decode'] + costs['resample']:.2f} per 20 ms | "
        f"{per_s(costs['opus_decode'] + costs['resample'], 50):.0f} | this script, same media |",
        f"| features (log-mel + VAD) | {t['features_ms']:.2f} per frame | {per_s(t['features_ms'], FPS):.0f} | worker timers |",
        f"| mouth model | {t['model_ms']:.2f} per frame | {per_s(t['model_ms'], FPS):.0f} | worker timers |",
        f"| render (mouth + composite) | {t['render_ms']:.2f} per frame | {per_s(t['render_ms'], FPS):.0f} | worker timers |",
        f"| BGR → I420 into shared memory | {t['convert_ms']:.2f} per frame | {per_s(t['convert_ms'], FPS):.0f} | worker timers |",
        f"| VP8 encode 512×512 | {costs['vp8_encode']:.2f} per frame | {per_s(costs['vp8_encode'], FPS):.0f} | this script, avatar frames |",
        f"| Opus encode | {costs['opus_encode']:.2f} per 20 ms | {per_s(costs['opus_encode'], 50):.0f} | this script |",
        f"| worker process CPU per frame (all of the above in the worker) | {t['cpu_ms']:.2f} | "
        f"{per_s(t['cpu_ms'], FPS):.0f} | worker timers |",
        "",
        "Worker timers are wall time inside the worker (they include waiting for a core when the machine is busy); "
        "the worker CPU column above is the honest CPU figure.",
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    lines = asyncio.run(main_async(args))
    print("\n".join(lines))
    if not args.no_record:
        record("bench/live_concurrency.py", lines)


if __name__ == "__main__":
    main()
