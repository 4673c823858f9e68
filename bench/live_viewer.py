"""One benchmark viewer in a process of its own (used by bench/live_concurrency.py).

    python -m bench.live_viewer URL --seconds 30 [--offset-s 0]

Connects with real speech as its microphone and counts the video frames it
receives (reassembled from RTP, not decoded: the benchmark measures the server).
Prints one JSON line when connected ({"session_id"}), then one per second
({"t": monotonic time, "frames": received so far}) until the time is up or it
is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from fractions import Fraction

import av
import numpy as np

from bench.speech import long_speech
from tests.webrtc_client import LipstreamClient


class _CountingVideoDecoder:
    """Stands in for VP8 decoding: one tiny frame per encoded frame."""

    def decode(self, encoded_frame) -> list[av.VideoFrame]:
        frame = av.VideoFrame(16, 16, "yuv420p")
        frame.pts = encoded_frame.timestamp
        frame.time_base = Fraction(1, 90_000)
        return [frame]


def count_video_instead_of_decoding() -> None:
    import aiortc.rtcrtpreceiver as receiver

    real = receiver.get_decoder
    receiver.get_decoder = lambda codec: _CountingVideoDecoder() if codec.mimeType.startswith("video/") else real(codec)


async def run(url: str, seconds: float, offset_s: float) -> None:
    count_video_instead_of_decoding()
    speech = np.roll(long_speech(60.0), int(offset_s * 16_000))
    client = LipstreamClient(url, frame_fn=lambda f: None)
    await client.connect(mic=speech, mic_loop=True)
    print(json.dumps({"session_id": client.session_id}), flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(1.0)
        print(json.dumps({"t": time.monotonic(), "frames": len(client.video)}), flush=True)
    await client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--offset-s", type=float, default=0.0)
    args = ap.parse_args()
    asyncio.run(run(args.url, args.seconds, args.offset_s))
    sys.exit(0)


if __name__ == "__main__":
    main()
