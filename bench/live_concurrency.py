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

The viewers (``bench/live_viewer.py``, one process each) stand in for browsers
on other machines but run on the same two cores.  So that they take as little as
possible of the CPU being measured, they send a microphone Opus-encoded before the
call, count video frames and audio packets as they arrive (RTP reassembled, not
decoded -- the test suite's viewers decode and check every frame), and run at
``nice 10``, so the server gets the cores first when both want them.  Their CPU is
reported too, with the machine's total, so the headroom is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from bench.live_common import ROOT, ServerProcess, cpu_seconds, load_average
from bench.report import record
from testing.webrtc_client import LipstreamClient

FPS = 25.0


def pipeline_cpu_per_frame(seconds: float = 12.0) -> float:
    """CPU ms per frame of one session's whole worker pipeline (decode excluded), measured
    in this process on real speech: features, model, render, I420, VP8 and Opus encoding."""
    import cv2
    import torch

    from bench.speech import long_speech
    from live.engine.session import LipSyncSession
    from live.rtc.audio_codec import SpeechEncoder
    from live.rtc.video_encoder import VideoEncoder
    from models.avatar.avatar import default_avatar
    from models.mouth.mouth_model import MouthPredictor

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    avatar = default_avatar(Path(tempfile.gettempdir()) / "lipstream-bench-avatars")
    session = LipSyncSession(avatar, MouthPredictor.load())
    video = VideoEncoder("vp8", avatar.info.width, avatar.info.height, FPS)
    speech = SpeechEncoder()
    session.push_audio(long_speech(seconds))
    n, t0 = 0, time.process_time()
    while session.pending_frames() > 5:
        frame = session.next_frame()
        video.encode(cv2.cvtColor(frame.image, cv2.COLOR_BGR2YUV_I420), n * 3600)
        speech.encode(frame.audio)
        n += 1
    return (time.process_time() - t0) / n * 1000


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]   # idle + iowait
    return sum(fields) - idle, sum(fields)


class _Viewer:
    """A bench/live_viewer.py process and its latest report."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.latest: dict = {}
        self.session_id: str | None = None
        self._task: asyncio.Task | None = None

    @classmethod
    async def start(cls, url: str, offset_s: float, timeout: float = 120.0) -> "_Viewer":
        proc = await asyncio.create_subprocess_exec(
            "nice", "-n", "10", sys.executable, "-m", "bench.live_viewer", url, "--seconds", "3600", "--offset-s", str(offset_s),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        viewer = cls(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("a viewer could not connect")
        viewer.session_id = json.loads(line)["session_id"]
        viewer._task = asyncio.ensure_future(viewer._follow())
        return viewer

    async def _follow(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.latest = json.loads(line)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        if self._task is not None:
            self._task.cancel()


async def run(url: str, server_pid: int, n: int, seconds: float) -> dict:
    viewers: list[_Viewer] = []
    try:
        for k in range(n):
            # Different starting points in the speech, so the sessions don't speak in unison.
            viewers.append(await _Viewer.start(url, offset_s=3.0 * k))
        http = LipstreamClient(url)
        http.http = aiohttp.ClientSession()
        await asyncio.sleep(3.0)  # settle
        _, listing0 = await http.request("GET", "/sessions")
        stats0 = {s["session_id"]: s for s in listing0["sessions"]}
        cpu0 = {sid: cpu_seconds(s["worker_pid"]) for sid, s in stats0.items()}
        srv0, own0 = cpu_seconds(server_pid), sum(cpu_seconds(v.proc.pid) for v in viewers)
        got0 = [dict(v.latest) for v in viewers]
        busy0, total0 = machine_jiffies()
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - t0
        busy1, total1 = machine_jiffies()
        got1 = [dict(v.latest) for v in viewers]
        cpu1 = {sid: cpu_seconds(stats0[sid]["worker_pid"]) for sid in stats0}
        srv1, own1 = cpu_seconds(server_pid), sum(cpu_seconds(v.proc.pid) for v in viewers)
        _, listing1 = await http.request("GET", "/sessions")
        await http.http.close()
    finally:
        for v in viewers:
            await v.stop()
    stats1 = {s["session_id"]: s for s in listing1["sessions"]}
    ids = [v.session_id for v in viewers if v.session_id in stats1 and v.session_id in stats0]
    return {
        "wall": wall,
        "sessions": len(viewers),
        "survived": len(ids),
        "fps_received": [(b["frames"] - a["frames"]) / (b["t"] - a["t"]) for a, b in zip(got0, got1)
                         if a and b and b["t"] > a["t"]],
        "fps_sent": [(stats1[sid]["frames_sent"] - stats0[sid]["frames_sent"]) / wall for sid in ids],
        "worker_cpu": [(cpu1[sid] - cpu0[sid]) / wall for sid in ids],
        "server_cpu": (srv1 - srv0) / wall,
        "client_cpu": (own1 - own0) / wall,
        "machine_busy": (busy1 - busy0) / max(total1 - total0, 1),
        "late": [stats1[sid]["late_frames"] - stats0[sid]["late_frames"] for sid in ids],
        "skipped": [stats1[sid]["skipped_frames"] - stats0[sid]["skipped_frames"] for sid in ids],
        "stats": [stats1[sid] for sid in ids],
        "loop_lag": listing1.get("event_loop_lag_ms"),
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
    n = args.sessions
    pipeline_ms = pipeline_cpu_per_frame()
    t = {k: np.mean([s["timings_ms"].get(k) or 0.0 for s in res["stats"]]) for k in
         ("decode_ms", "features_ms", "model_ms", "render_ms", "convert_ms", "encode_ms", "cpu_ms")}
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
    for k in range(res["survived"]):
        lines.append(f"| {k + 1} | {res['fps_received'][k]:.1f} (sent {res['fps_sent'][k]:.1f}) | {res['late'][k]} / "
                     f"{res['skipped'][k]} | {lat[k]['p50']} / {lat[k]['p95']} ms | {res['worker_cpu'][k] * 100:.0f} % of a core |")
    if res["survived"] < res["sessions"]:
        lines.append(f"| ({res['sessions'] - res['survived']} session(s) ended during the run) | | | | |")
    server_share = res["server_cpu"] / n
    lines += [
        "",
        f"CPU per session: worker {np.mean(res['worker_cpu']) * 100:.0f} % + server process share "
        f"{server_share * 100:.0f} % = **{(np.mean(res['worker_cpu']) + server_share) * 100:.0f} % of one core**; "
        f"server process total {res['server_cpu'] * 100:.0f} %; the {n} viewer processes (same machine) "
        f"{res['client_cpu'] * 100:.0f} % (niced, microphone pre-encoded, nothing decoded). The whole machine was "
        f"busy {res['machine_busy'] * 100:.0f} % of the time on both cores. Server event-loop lag (last minute, ms): "
        f"{res['loop_lag']}.",
        "",
        f"Measured alone in one process (same machine, same speech), one session's pipeline -- features, model, "
        f"render, VP8 and Opus encoding -- costs **{pipeline_ms:.1f} ms of CPU per frame = {pipeline_ms * FPS / 10:.0f} % "
        f"of a core at 25 fps**; {n} sessions need {n * pipeline_ms * FPS / 10:.0f} % of one core plus the server "
        f"process's networking ({res['server_cpu'] * 100:.0f} % measured above), i.e. "
        f"{(n * pipeline_ms * FPS / 1000 + res['server_cpu']) / 2 * 100:.0f} % of the two cores. Whether the fps "
        "above reach 25 therefore depends on what else runs on the machine.",
        "",
        "Where the time goes, per session, in ms per second of video (25 frames); everything but networking runs "
        "in the session's worker process:",
        "",
        "| stage | ms per item | ms per session-second | measured by |",
        "|---|---|---|---|",
        f"| mic decode (Opus) + resample to 16 kHz | {t['decode_ms']:.2f} per frame | {per_s(t['decode_ms'], FPS):.0f} | worker timers |",
        f"| features (log-mel + VAD) | {t['features_ms']:.2f} per frame | {per_s(t['features_ms'], FPS):.0f} | worker timers |",
        f"| mouth model | {t['model_ms']:.2f} per frame | {per_s(t['model_ms'], FPS):.0f} | worker timers |",
        f"| render (mouth + composite) | {t['render_ms']:.2f} per frame | {per_s(t['render_ms'], FPS):.0f} | worker timers |",
        f"| BGR → I420 | {t['convert_ms']:.2f} per frame | {per_s(t['convert_ms'], FPS):.0f} | worker timers |",
        f"| VP8 (or H.264) encode + Opus encode | {t['encode_ms']:.2f} per frame | {per_s(t['encode_ms'], FPS):.0f} | worker timers |",
        f"| worker process CPU per frame (render/encode part) | {t['cpu_ms']:.2f} | "
        f"{per_s(t['cpu_ms'], FPS):.0f} | worker process_time |",
        "",
        "Worker timers are wall time inside the worker (they include waiting for a core when the machine is busy); "
        "the worker CPU column above (from /proc) is the honest CPU figure. The server process does only "
        "networking (RTP, SRTP, ICE) and pacing.",
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
