"""Real-time video encoding inside a session's worker process.

aiortc would encode every session's frames in the server process's thread pool,
where encoder threads and the event loop fight over the GIL: with four sessions
the loop ran 50-100 ms late and ICE consent checks started to time out.  So each
worker encodes its own frames (VP8, or H.264 for clients without VP8) and the
server only packetises the bitstream (aiortc sends an ``av.Packet`` from a track
as it is).  Encoding then runs in parallel on all cores, next to the renderer
that produced the frame, and the server's loop stays free for networking.

The bitrate follows the receiver's bandwidth estimate (the server forwards
aiortc's REMB figure) downwards only: the size's own rate (``default_bitrate``) is
the ceiling.  On a good link REMB climbs to 1.5 Mbps, which for a 512² talking head
buys nothing visible (luma PSNR 40.4 dB at 800 kbps) but nearly doubles the
packets that the server's and every viewer's RTP/SRTP code must handle.  A
keyframe is produced when the receiver asks for one (PLI), so a lost packet costs
one frame, not a frozen picture.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

VIDEO_TIME_BASE = Fraction(1, 90_000)
MIN_BITRATE = 200_000
MAX_BITRATE = 3_000_000


def default_bitrate(width: int, height: int) -> int:
    """~0.12 bit per pixel at 25 fps: 800 kbps for 512x512, 2.8 Mbps for 720p."""
    return int(min(MAX_BITRATE, max(MIN_BITRATE, width * height * 25 * 0.12)))


class VideoEncoder:
    def __init__(
        self,
        codec: str,
        width: int,
        height: int,
        fps: float,
        bitrate: int | None = None,
        keyframe_s: float = 10.0,
        constant_bitrate: bool = False,
    ) -> None:
        self.codec_name = codec.lower()
        if self.codec_name not in ("vp8", "h264"):
            raise ValueError(f"unsupported video codec {codec!r} (vp8 or h264)")
        self.width, self.height, self.fps = width, height, fps
        self.keyframe_s = keyframe_s
        # Broadcast: ingest servers and players budget for a steady rate; a talking head
        # idling at 50 kbps and bursting at speech confuses their bandwidth estimates.
        self.constant_bitrate = constant_bitrate
        self.ceiling = bitrate or default_bitrate(width, height)
        self.bitrate = self.ceiling
        self._ctx: av.VideoCodecContext | None = None
        self._force_keyframe = True
        self.last_was_keyframe = False   # what the encoder made of the last frame (a forced or a periodic keyframe)

    def request_keyframe(self) -> None:
        self._force_keyframe = True

    @property
    def will_send_keyframe(self) -> bool:
        return self._force_keyframe or self._ctx is None

    def set_bitrate(self, bitrate: int) -> None:
        bitrate = int(min(self.ceiling, max(MIN_BITRATE, bitrate)))
        # Reopening the encoder costs a keyframe; only do it for a real change.
        if abs(bitrate - self.bitrate) > 0.15 * self.bitrate:
            self.bitrate = bitrate
            self._ctx = None

    def encode(self, i420: np.ndarray, pts: int) -> bytes:
        """One (height*3/2, width) I420 frame -> its bitstream (may be empty for a skipped frame)."""
        if self._ctx is None:
            self._ctx = self._open()
            self._force_keyframe = True
        # Wrapped, not copied (1-2 ms at 1080×1920): both encoders copy their input in encode().
        frame = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(i420), format="yuv420p")
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        if self._force_keyframe:
            frame.pict_type = av.video.frame.PictureType.I
            self._force_keyframe = False
        packets = self._ctx.encode(frame)
        self.last_was_keyframe = any(p.is_keyframe for p in packets)
        return b"".join(bytes(p) for p in packets)

    def _open(self) -> av.VideoCodecContext:
        if self.codec_name == "vp8":
            ctx = av.CodecContext.create("libvpx", "w")
            ctx.options = {
                "deadline": "realtime",
                "cpu-used": "16",         # the fastest real-time preset (half the CPU of 8): sessions share cores
                "lag-in-frames": "0",     # never hold frames back
                "error-resilient": "1",
                "static-thresh": "100",   # the idle avatar's static background costs ~nothing
                "minrate": str(self.bitrate),
                "maxrate": str(self.bitrate),
                "bufsize": str(self.bitrate),
                "undershoot-pct": "95",
                "overshoot-pct": "15",
            }
        else:
            ctx = av.CodecContext.create("libx264", "w")
            ctx.profile = "Constrained Baseline"
            ctx.options = {
                "preset": "ultrafast",
                "tune": "zerolatency",
                "maxrate": str(self.bitrate),
                "bufsize": str(self.bitrate // 2),
            }
            if self.constant_bitrate:
                # Fixed keyframe spacing (no scene-cut keyframes) and HRD-signalled CBR,
                # which RTMP platforms check for.
                ctx.options.update({"minrate": str(self.bitrate), "bufsize": str(self.bitrate),
                                    "x264-params": "nal-hrd=cbr:force-cfr=1:scenecut=0"})
        ctx.width, ctx.height = self.width, self.height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = VIDEO_TIME_BASE
        ctx.framerate = Fraction(self.fps).limit_denominator(1001)
        ctx.bit_rate = self.bitrate
        ctx.gop_size = max(1, round(self.fps * self.keyframe_s))   # PLI asks for more
        ctx.max_b_frames = 0
        ctx.thread_count = 1
        ctx.open()
        return ctx
