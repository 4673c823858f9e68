"""Opus in and out of a session's worker process.

The server process only moves packets: the viewer's microphone packets go to the
worker as they arrive, and the worker hands back each frame's speech already
Opus-encoded.  Decoding, resampling and encoding (and aiortc's per-packet thread
hops and Python audio-level loop) thus run in the worker, in parallel with other
sessions, instead of contending for the server's GIL.

* ``MicDecoder``: one Opus payload (10 or 20 ms, any channel count) -> 16 kHz mono float32;
  an empty payload (a packet the jitter buffer gave up on) -> silence as long as the packet before.
* ``SpeechEncoder``: a frame's 16 kHz int16 audio -> the 20 ms Opus packets it
  completes.  libopus takes the 16 kHz samples as they are (the packets decode at
  48 kHz like any others; RTP timestamps come from ``live.rtc.media_clock``), so no
  resampler runs and no packet is held back waiting for future samples.
* ``silence_packet()``: what replaces queued packets when an interrupt silences them.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import av
import numpy as np

from models.audio.audio_io import StreamResampler
from models.audio.pcm import SAMPLE_RATE, float_to_int16

OPUS_RATE = 48_000                  # what a decoder outputs, whatever the encoder was fed
SPEECH_RATE = SAMPLE_RATE           # what the encoder is fed: the engine's own rate
PACKET_SAMPLES = SPEECH_RATE // 50  # 20 ms
SPEECH_TIME_BASE = Fraction(1, SPEECH_RATE)
SPEECH_BITRATE = 32_000             # plenty for one voice; keeps the stream small
FEC_LOSS_PCT = 5                    # the loss libopus plans its in-band redundancy for


class MicDecoder:
    def __init__(self) -> None:
        self._codec = av.CodecContext.create("libopus", "r")
        self._codec.sample_rate = OPUS_RATE
        self._codec.layout = "stereo"
        self._codec.format = "s16"
        self._resampler = StreamResampler()
        self._last_len = 0           # 16 kHz samples the last packet gave

    def decode(self, payload: bytes) -> np.ndarray:
        if not payload:
            # Lost: keep the stream's length (the engine's headroom against jitter depends
            # on it).  ffmpeg's decoder offers no packet-loss concealment, so this is silence.
            return np.zeros(self._last_len, np.float32)
        try:
            frames = self._codec.decode(av.Packet(payload))
        except av.FFmpegError:
            return np.zeros(0, np.float32)  # one corrupt packet: skip it, the engine pads
        parts = [self._resampler.push(f) for f in frames]
        out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if len(out):
            self._last_len = len(out)
        return out


def _opus_encoder() -> av.AudioCodecContext:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = SPEECH_RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = SPEECH_BITRATE
    codec.time_base = SPEECH_TIME_BASE
    # Complexity 5 of 10: half the encoder's CPU, speech quality still transparent at 32 kbps.
    # In-band FEC: each packet also carries a coarse copy of the one before, which a browser's
    # jitter buffer decodes when that one was lost, instead of concealing it (a lossy link, #13).
    codec.options = {"application": "voip", "compression_level": "5", "fec": "1", "packet_loss": str(FEC_LOSS_PCT)}
    return codec


def _frame(pcm: np.ndarray) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
    frame.sample_rate = SPEECH_RATE
    return frame


class SpeechEncoder:
    def __init__(self) -> None:
        self._codec = _opus_encoder()
        self._pending = np.zeros(0, np.int16)
        self.packets_out = 0

    def encode(self, audio16k: np.ndarray) -> list[bytes]:
        """int16 (or float) 16 kHz samples -> the Opus packets they complete (in order)."""
        x = np.asarray(audio16k).reshape(-1)
        if x.dtype != np.int16:
            x = float_to_int16(x)
        self._pending = np.concatenate([self._pending, x])
        out = []
        while len(self._pending) >= PACKET_SAMPLES:
            pcm, self._pending = self._pending[:PACKET_SAMPLES], self._pending[PACKET_SAMPLES:]
            frame = _frame(np.ascontiguousarray(pcm))
            frame.pts = self.packets_out * PACKET_SAMPLES
            out += [bytes(p) for p in self._codec.encode(frame)]
            self.packets_out += 1
        return out


@lru_cache(maxsize=1)
def silence_packet() -> bytes:
    """A 20 ms Opus packet of digital silence (any decoder plays it as silence)."""
    codec = _opus_encoder()
    packets: list[bytes] = []
    for k in range(3):
        frame = _frame(np.zeros(PACKET_SAMPLES, np.int16))
        frame.pts = k * PACKET_SAMPLES
        packets += [bytes(p) for p in codec.encode(frame)]
    return packets[-1]

