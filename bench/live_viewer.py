"""One benchmark viewer in a process of its own (used by bench/live_concurrency.py).

    python -m bench.live_viewer URL --seconds 30 [--offset-s 0]

Connects with real speech as its microphone and counts the video frames it
receives.  It stands in for a browser on another machine, so it spends as little
of the shared cores as it can: the microphone is Opus-encoded once up front and
sent packet by packet at its real-time pace (what a browser's encoder produces,
without paying for the encoder here), and what comes back is reassembled from RTP
but not decoded (the benchmark measures the server).
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
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.speech import long_speech
from testing.webrtc_client import LipstreamClient

OPUS_RATE = 48_000
PIECE = 960  # 20 ms


class EncodedMicTrack(MediaStreamTrack):
    """A looping microphone whose 20 ms Opus packets were encoded before the call
    (aiortc sends a track's ``av.Packet`` as it is)."""

    kind = "audio"

    def __init__(self, speech16k: np.ndarray) -> None:
        super().__init__()
        self.packets = encode_opus(speech16k)
        self._start: float | None = None
        self._k = 0

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._k * PIECE / OPUS_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self.packets[self._k % len(self.packets)])
        packet.pts = self._k * PIECE
        packet.time_base = Fraction(1, OPUS_RATE)
        self._k += 1
        return packet


def encode_opus(speech16k: np.ndarray) -> list[bytes]:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = 16_000, "mono", "s16"
    codec.bit_rate, codec.time_base = 32_000, Fraction(1, 16_000)
    pcm = (np.clip(speech16k, -1, 1) * 32767).astype(np.int16)
    out: list[bytes] = []
    for k in range(len(pcm) // 320):
        frame = av.AudioFrame.from_ndarray(pcm[None, k * 320 : (k + 1) * 320].copy(), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16_000, k * 320
        out += [bytes(p) for p in codec.encode(frame)]
    return out


class _CountingVideoDecoder:
    """Stands in for VP8 decoding: one tiny frame per encoded frame."""

    def decode(self, encoded_frame) -> list[av.VideoFrame]:
        frame = av.VideoFrame(16, 16, "yuv420p")
        frame.pts = encoded_frame.timestamp
        frame.time_base = Fraction(1, 90_000)
        return [frame]


class _CountingAudioDecoder:
    """Stands in for Opus decoding: one tiny silent frame per packet."""

    def decode(self, encoded_frame) -> list[av.AudioFrame]:
        frame = av.AudioFrame(format="s16", layout="mono", samples=1)
        frame.planes[0].update(bytes(2))
        frame.sample_rate = OPUS_RATE
        frame.pts = encoded_frame.timestamp
        frame.time_base = Fraction(1, OPUS_RATE)
        return [frame]


def count_instead_of_decoding() -> None:
    import aiortc.rtcrtpreceiver as receiver

    receiver.get_decoder = lambda codec: (
        _CountingVideoDecoder() if codec.mimeType.startswith("video/") else _CountingAudioDecoder()
    )


async def run(url: str, seconds: float, offset_s: float) -> None:
    count_instead_of_decoding()
    speech = np.roll(long_speech(60.0), int(offset_s * 16_000))
    client = LipstreamClient(url, frame_fn=lambda f: None)
    await client.connect(mic_track=EncodedMicTrack(speech))
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
