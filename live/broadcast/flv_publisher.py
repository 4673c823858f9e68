"""One RTMP publishing connection: the channel's H.264 as it is, plus AAC audio, in FLV.

FFmpeg (through PyAV) does the RTMP/RTMPS protocol and the FLV muxing; the video
packets are the channel encoder's own bitstream, never decoded or re-encoded.
The stream's parameters (size, profile, SPS/PPS for the FLV sequence header) are
read from the connection's first keyframe by FFmpeg's own H.264 parser, so they
match the bitstream exactly; FLV then converts each Annex-B access unit to
length-prefixed NAL units.

Every timestamp is computed from the frame index, not counted up: video at
``(index - first) / fps``, audio at the 16 kHz sample that frame ``index`` starts
on.  A missing frame leaves a hole in the video and silence in the audio, and
audio that arrives longer or shorter than its frame is trimmed or padded back
onto the grid, so picture and sound stay locked however long a connection lasts.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

from live.broadcast.frames import BroadcastFrame
from live.broadcast.sender_protocol import SenderConfig
from live.broadcast.urls import redact
from models.audio.pcm import SAMPLE_RATE

AUDIO_RATE = 48_000          # what streaming platforms ask for (44.1 kHz also accepted; 48k is 3 x 16k)
AUDIO_BITRATE = 128_000
FLV_TIME_BASE = Fraction(1, 1000)
PCM_TIME_BASE = Fraction(1, SAMPLE_RATE)
MAX_GAP_S = 10.0             # a longer hole restarts the connection instead of sending seconds of silence
# Audio is never held back for longer than this waiting for a video packet to interleave with
# (FFmpeg's default is 10 s), so frames without a new picture do not delay the sound.
MAX_INTERLEAVE_DELTA_US = 1_000_000


class PublishError(Exception):
    """The ingest refused or dropped the connection: worth retrying."""


class StreamError(Exception):
    """The stream cannot be sent as it is (retrying cannot help)."""


def describe_error(e: BaseException, url: str) -> str:
    """A short, secret-free reason: FFmpeg's message (and its last log line), never the URL."""
    if isinstance(e, av.error.FFmpegError):
        text = e.strerror or type(e).__name__
        log = getattr(e, "log", None)
        if log and len(log) >= 3 and log[2]:
            text = f"{text} ({str(log[2]).strip()})"
    else:
        text = str(e) or type(e).__name__
    return redact(text, url)[:300]


def _probe(keyframe: bytes, width: int, height: int) -> tuple[av.container.InputContainer, av.VideoStream]:
    try:
        probe = av.open(io.BytesIO(keyframe), format="h264")
        stream = probe.streams.video[0]
    except (av.error.FFmpegError, IndexError) as e:
        raise StreamError(f"the first keyframe is not a readable H.264 access unit: {e}") from None
    ctx = stream.codec_context
    if not ctx.extradata:
        probe.close()
        raise StreamError("the keyframe carries no SPS/PPS (they must be in-band at keyframes)")
    if (ctx.width, ctx.height) != (width, height):
        probe.close()
        raise StreamError(f"the stream is {ctx.width}x{ctx.height}, not the expected {width}x{height}")
    return probe, stream


class FlvPublisher:
    """Connects on construction and sends ``first`` (a keyframe); ``write`` the frames that follow."""

    def __init__(self, config: SenderConfig, first: BroadcastFrame) -> None:
        if not first.keyframe or not first.video:
            raise ValueError("a connection starts at a keyframe")
        self.config = config
        self.first_index = first.index
        self.bytes_sent = 0
        self._next_index = first.index
        self._samples = 0       # 16 kHz samples given to the AAC encoder so far
        probe, template = _probe(first.video, config.width, config.height)
        try:
            self._out = av.open(config.url, "w", format="flv", container_options={
                "flvflags": "no_duration_filesize",     # a live stream has no seekable header to fix up
                "max_interleave_delta": str(MAX_INTERLEAVE_DELTA_US),
            })
            self._video = self._out.add_stream_from_template(template)
        finally:
            probe.close()
        self._video.time_base = FLV_TIME_BASE
        self._audio = self._out.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
        self._audio.bit_rate = AUDIO_BITRATE
        try:
            self.write(first)   # the first packet opens the connection and writes the FLV header
        except BaseException:
            self.close()
            raise

    def write(self, frame: BroadcastFrame) -> None:
        if frame.index < self._next_index:
            return   # stale or repeated: its time has been sent already
        if (frame.index - self._next_index) / self.config.fps > MAX_GAP_S:
            raise PublishError(f"no frames for more than {MAX_GAP_S:.0f} s; restarting the stream")
        try:
            if frame.video:
                self._mux_video(frame)
            self._mux_audio(frame)
        except av.error.ProtocolNotFoundError as e:
            raise StreamError(describe_error(e, self.config.url)) from None
        except (av.error.FFmpegError, OSError) as e:
            raise PublishError(describe_error(e, self.config.url)) from None
        self._next_index = frame.index + 1

    def close(self) -> None:
        """Flush the audio encoder and close the connection; a dead ingest's errors are ignored."""
        try:
            for packet in self._audio.encode(None):
                self._out.mux(packet)
        except (av.error.FFmpegError, OSError, ValueError):
            pass
        try:
            self._out.close()
        except (av.error.FFmpegError, OSError, ValueError):
            pass

    def _mux_video(self, frame: BroadcastFrame) -> None:
        packet = av.Packet(frame.video)
        packet.stream = self._video
        packet.time_base = FLV_TIME_BASE
        packet.pts = packet.dts = round((frame.index - self.first_index) * 1000 / self.config.fps)
        packet.is_keyframe = frame.keyframe
        self._out.mux(packet)
        self.bytes_sent += len(frame.video)

    def _mux_audio(self, frame: BroadcastFrame) -> None:
        start = round((frame.index - self.first_index) * SAMPLE_RATE / self.config.fps)
        pcm = np.frombuffer(frame.pcm, dtype="<i2")
        if self._samples < start:       # a hole: silence up to this frame's first sample
            pcm = np.concatenate([np.zeros(start - self._samples, np.int16), pcm])
        elif self._samples > start:     # earlier frames ran long: back onto the grid
            pcm = pcm[self._samples - start:]
        if not len(pcm):
            return
        audio = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm, dtype=np.int16)[None, :], format="s16",
                                           layout="mono")
        audio.sample_rate = SAMPLE_RATE
        audio.time_base = PCM_TIME_BASE
        audio.pts = self._samples
        self._samples += len(pcm)
        for packet in self._audio.encode(audio):
            self._out.mux(packet)
            self.bytes_sent += packet.size
