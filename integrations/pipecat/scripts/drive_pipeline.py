"""Run a real pipecat pipeline through ``LipstreamVideoService`` and record what comes out.

    python drive_pipeline.py --server http://127.0.0.1:8080 --wav speech.wav --out DIR
                             [--token T] [--turns 2] [--interrupt-after 1.2] [--viewer]

Used by lipstream's tests/test_pipecat.py and bench/pipecat_latency.py, in the
pipecat environment.  Each turn feeds the WAV (16-bit mono) as ``TTSAudioRawFrame``s
of 20 ms at real time between ``TTSStartedFrame`` and ``TTSStoppedFrame``, as a
streaming TTS would; with ``--interrupt-after S`` the last turn is cut off by an
``InterruptionFrame`` once S seconds of its speech have come out of the pipeline (as
a user barges in on what they hear; on a loaded machine that is later than S seconds
after the turn began), and the rest of its audio is never sent, as a TTS stops on an
interruption.  A collector at the end of the pipeline records every
image and audio frame the service pushes.  ``--viewer`` also watches the channel
with a plain WHEP client in the same process, to compare with.

Writes ``DIR/result.json`` (times are ``time.time()``) and ``DIR/images.npy`` (the green
channel of every image pushed, as its luma, uint8 N x H x W).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import wave
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipecat.frames import frames as pf  # noqa: E402
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402

try:   # pipecat >= 1.3 names them so
    from pipecat.pipeline.worker import PipelineWorker as _Worker
    from pipecat.workers.runner import WorkerRunner as PipelineRunner
except ImportError:
    from pipecat.pipeline.runner import PipelineRunner  # type: ignore[no-redef]
    from pipecat.pipeline.task import PipelineTask as _Worker  # type: ignore[no-redef]

from lipstream_pipecat import LipstreamVideoService  # noqa: E402
from lipstream_pipecat.channel import LipstreamServer  # noqa: E402
from lipstream_pipecat.service import INTERRUPTIONS  # noqa: E402
from lipstream_pipecat.whep import Received, WhepPlayer  # noqa: E402

CHUNK_S = 0.02
LOUD_RMS = 0.01       # an audio frame this loud carries speech (as testing/pipecat_measure.py counts it)


class Collector(FrameProcessor):
    """The end of the pipeline: what an output transport would receive."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict] = []
        self.lumas: list[np.ndarray] = []
        self.audio: list[dict] = []
        self.interrupts: list[float] = []
        self.errors: list[str] = []
        self.passed: list[str] = []
        self.first_image = asyncio.Event()
        self.audio_arrived = asyncio.Event()

    def speech_heard_s(self, since: float) -> float:
        """Seconds of loud audio pushed out of the pipeline since ``since`` (time.time())."""
        return sum(a["n"] / a["rate"] for a in self.audio if a["t"] >= since and a["rms"] > LOUD_RMS)

    async def process_frame(self, frame: pf.Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        now = time.time()
        meta = frame.metadata.get("lipstream", {}) if isinstance(frame.metadata, dict) else {}
        if isinstance(frame, pf.OutputImageRawFrame):
            w, h = frame.size
            # The green channel stands in for luma: a strided copy, so that measuring costs the
            # pipeline next to nothing (a full conversion would slow it on a loaded machine).
            self.lumas.append(np.frombuffer(frame.image, np.uint8)[1::3].reshape(h, w).copy())
            self.images.append({"t": now, "sender_time": meta.get("sender_time"),
                                "sync_with_audio": getattr(frame, "sync_with_audio", None)})
            self.first_image.set()
        elif isinstance(frame, pf.OutputAudioRawFrame):
            pcm = np.frombuffer(frame.audio, np.int16).astype(np.float32) / 32768.0
            self.audio.append({"t": now, "sender_time": meta.get("sender_time"), "rate": frame.sample_rate,
                               "n": len(pcm) // frame.num_channels, "rms": float(np.sqrt(np.mean(pcm ** 2)))
                               if len(pcm) else 0.0, "type": type(frame).__name__})
            self.audio_arrived.set()
        elif isinstance(frame, INTERRUPTIONS):
            self.interrupts.append(now)
        elif isinstance(frame, pf.ErrorFrame):
            self.errors.append(str(frame.error)[:300])
        elif type(frame).__name__ not in self.passed:
            self.passed.append(type(frame).__name__)
        await self.push_frame(frame, direction)


class Marker(pf.DataFrame if hasattr(pf, "DataFrame") else pf.Frame):
    """A frame of the driver's own, to check that unknown frames pass through."""


def read_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise SystemExit("the WAV must be 16-bit mono")
        return w.readframes(w.getnframes()), w.getframerate()


async def speak(worker, collector: Collector, pcm: bytes, rate: int, stop_after: float | None) -> dict:
    """One TTS turn at real time; returns when it started and (if cut) when it was interrupted."""
    step = int(rate * CHUNK_S) * 2
    await worker.queue_frame(pf.TTSStartedFrame())
    t0_wall, t0 = time.time(), time.monotonic()
    turn: dict = {"start": t0_wall, "interrupted": None}
    for k, i in enumerate(range(0, len(pcm), step)):
        if stop_after is not None and collector.speech_heard_s(t0_wall) >= stop_after:
            turn["interrupted"] = time.time()
            await worker.queue_frame(pf.InterruptionFrame() if hasattr(pf, "InterruptionFrame")
                                     else INTERRUPTIONS[0]())
            return turn
        await worker.queue_frame(pf.TTSAudioRawFrame(audio=pcm[i:i + step], sample_rate=rate, num_channels=1))
        await asyncio.sleep(max(0.0, t0 + (k + 1) * CHUNK_S - time.monotonic()))
    await worker.queue_frame(pf.TTSStoppedFrame())
    turn["end"] = time.time()
    return turn


async def run(args) -> dict:
    pcm, rate = read_wav(Path(args.wav))
    service = LipstreamVideoService(base_url=args.server, token=args.token)
    collector = Collector()
    worker = _Worker(Pipeline([service, collector]), idle_timeout_secs=None, check_dangling_tasks=False)
    errors: list[str] = []

    @worker.event_handler("on_pipeline_error")
    async def on_error(_worker, frame) -> None:   # errors travel upstream, past no collector
        errors.append(str(frame.error)[:500])

    runner = PipelineRunner(handle_sigint=False)
    if hasattr(runner, "add_workers"):
        await runner.add_workers(worker)
        running = asyncio.create_task(runner.run())
    else:
        running = asyncio.create_task(runner.run(worker))
    viewer_frames: list[Received] = []
    viewer = http = None
    turns: list[dict] = []
    try:
        shown = asyncio.create_task(collector.first_image.wait())
        await asyncio.wait([shown, running], timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
        if not shown.done():
            shown.cancel()
            raise SystemExit(f"no image from the service; pipeline errors: {errors}")
        if args.viewer:
            http = aiohttp.ClientSession()
            viewer = WhepPlayer(http, LipstreamServer(args.server, args.token), service.channel_id,
                                lambda r: viewer_frames.append(r) if r.kind == "video" else None)
            await viewer.connect()
        await worker.queue_frame(Marker())
        await asyncio.sleep(args.lead)
        for n in range(args.turns):
            last = n == args.turns - 1
            turns.append(await speak(worker, collector, pcm, rate, args.interrupt_after if last else None))
            await asyncio.sleep(args.gap)
    finally:
        if viewer is not None:
            await viewer.close()
        if http is not None:
            await http.close()
        if not running.done():
            await worker.queue_frame(pf.EndFrame())
            await asyncio.wait_for(running, 30)
    offset = time.time() - time.monotonic()   # the viewer's arrival is monotonic
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "images.npy", np.stack(collector.lumas) if collector.lumas else np.zeros((0, 1, 1), np.uint8))
    return {
        "channel_id": service.channel_id,
        "turns": turns,
        "images": collector.images,
        "audio": collector.audio,
        "interrupts": collector.interrupts,
        "errors": errors + collector.errors,
        "passed": collector.passed,
        "viewer_video": [{"t": r.arrival + offset, "sender_time": r.sender_time} for r in viewer_frames],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True)
    ap.add_argument("--token")
    ap.add_argument("--wav", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--turns", type=int, default=1)
    ap.add_argument("--interrupt-after", type=float, help="cut the last turn after this much of its speech is heard")
    ap.add_argument("--lead", type=float, default=1.0, help="idle seconds before the first turn")
    ap.add_argument("--gap", type=float, default=1.5, help="seconds after each turn")
    ap.add_argument("--viewer", action="store_true")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    result = asyncio.run(run(args))
    (Path(args.out) / "result.json").write_text(json.dumps(result))
    print(json.dumps({k: (len(v) if isinstance(v, list) else v) for k, v in result.items()}))


if __name__ == "__main__":
    main()
