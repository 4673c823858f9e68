"""Agent sockets: how soon streamed words and streamed audio are on air.

    python -m bench.agent_latency [--turns 10] [--no-record]

The server runs as ``run_live.py``; one WHEP viewer watches the channel.

* Text socket: an LLM's deltas arrive word by word, 30 ms apart.  Measured: from
  sending the delta that completes the first sentence (for a "." that is the next
  word's delta: only then is it known not to be "3.14" or "Mr.") to the
  ``speech_start`` event (sent when the frame carrying the first audio leaves for
  the viewer).  English with piper joe, Chinese with espeak cmn.
* Audio socket: 24 kHz PCM in 40 ms chunks at real time.  Measured: the server's own
  figure, first chunk received → the frame carrying it leaving (``latency_ms`` of
  ``speech_start``).  A stream at real time plays after the engine's idle padding
  (its look-ahead, up to 60 ms), which then serves as its jitter buffer; a first chunk
  that covers a whole frame's need (40 ms + the look-ahead) starts with the next frame.

Targets (issue 11): text p95 ≤ 400 ms; audio p95 ≤ 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from bench.live_common import ServerProcess, load_average, pct
from bench.report import record
from testing.media import speech_sample
from testing.webrtc_client import LipstreamClient

ENGLISH = ["Hello there! How can I help you today?", "Good morning. What would you like to know?",
           "Sure, I can do that. It takes a minute.", "Thanks for waiting! Here is your answer.",
           "Yes. The shop opens at nine."]
CHINESE = ["你好！我能帮你什么？", "早上好。今天想了解什么？", "可以的，我来处理。请稍等。", "谢谢等待！这是你的答案。", "是的。商店九点开门。"]


def deltas(text: str, chinese: bool) -> tuple[list[str], int]:
    """The turn as deltas, and the index of the delta that completes its first sentence."""
    if chinese:
        parts = list(text)
        end = next(i for i, c in enumerate(parts) if c in "。！？")
        return parts, end
    words = text.split(" ")
    parts = [w if i == 0 else " " + w for i, w in enumerate(words)]
    end = next(i for i, w in enumerate(words) if w[-1] in ".!?")
    # "!" and "?" end a sentence at once; "." only with the next word.
    return parts, end + (1 if words[end].endswith(".") else 0)


async def text_turn(ws, text: str, voice: str, chinese: bool) -> float:
    parts, complete = deltas(text, chinese)
    await ws.send_json({"type": "voice", "voice": voice})
    sent_at = None
    for i, part in enumerate(parts):
        await ws.send_json({"type": "text", "text": part})
        if i == complete:
            sent_at = time.monotonic()
        await asyncio.sleep(0.03)
    await ws.send_json({"type": "flush"})
    start = None
    while True:
        msg = await asyncio.wait_for(ws.receive_json(), 60)
        if msg["type"] == "speech_start" and start is None:
            start = time.monotonic()
        if msg["type"] == "speech_end" and msg["text"].strip() and text.endswith(msg["text"].strip()):
            break   # the turn's last sentence has been heard
    return (start - sent_at) * 1000.0


async def audio_turn(ws, pcm: bytes) -> float:
    await ws.send_json({"sample_rate": 24_000, "channels": 1, "format": "s16le"})
    chunk = 24_000 * 2 // 25
    t0 = time.monotonic()
    latency = None
    for k, i in enumerate(range(0, len(pcm), chunk)):
        await ws.send_bytes(pcm[i:i + chunk])
        await asyncio.sleep(max(0.0, t0 + (k + 1) * 0.04 - time.monotonic()))
    await ws.send_json({"type": "end"})
    while True:
        msg = await asyncio.wait_for(ws.receive_json(), 60)
        if msg["type"] == "speech_start":
            latency = msg["latency_ms"]
        if msg["type"] == "speech_end":
            return latency


async def run(turns: int) -> dict:
    speech = speech_sample("Front_Center")
    pcm24 = np.interp(np.arange(int(len(speech) * 1.5)) / 1.5, np.arange(len(speech)), speech)
    pcm = (np.clip(pcm24, -1, 1) * 32767).astype("<i2").tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        server = await ServerProcess.start(Path(tmp) / "data")
        viewer = LipstreamClient(server.url, frame_fn=lambda f: 0.0)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(server.url + "/channels", json={}) as resp:
                    cid = (await resp.json())["channel_id"]
                await viewer.connect(whep=f"/channels/{cid}/whep")
                out = {"en": [], "zh": [], "audio": []}
                async with http.ws_connect(server.url + f"/channels/{cid}/text") as ws:
                    for k in range(turns):
                        out["en"].append(await text_turn(ws, ENGLISH[k % len(ENGLISH)], "piper:joe", False))
                        out["zh"].append(await text_turn(ws, CHINESE[k % len(CHINESE)], "espeak:cmn", True))
                async with http.ws_connect(server.url + f"/channels/{cid}/audio-stream") as ws:
                    for _ in range(turns):
                        out["audio"].append(await audio_turn(ws, pcm))
            out["load"] = load_average()
            return out
        finally:
            await viewer.close()
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    r = asyncio.run(run(args.turns))

    def row(name: str, values: list[float], target: str) -> str:
        return f"| {name} | {len(values)} | {pct(values, 50):.0f} | {pct(values, 95):.0f} | {target} |"

    lines = [
        "One channel, one WHEP viewer; the server runs as `run_live.py`.",
        "",
        "| | turns | p50 ms | p95 ms | target |",
        "|---|---|---|---|---|",
        row("text socket, English (piper joe): completing delta → speech_start", r["en"], "p95 ≤ 400"),
        row("text socket, Chinese (espeak cmn): completing delta → speech_start", r["zh"], "p95 ≤ 400"),
        row("audio socket: first PCM chunk → its frame leaving (server)", r["audio"], "p95 ≤ 150"),
        "",
        f"Load average {r['load']:.1f}.",
    ]
    print("\n".join(lines))
    if not args.no_record:
        record("bench/agent_latency.py", lines)


if __name__ == "__main__":
    main()
