"""The encoders of one stream: one per video variant, each picture converted once.

A channel's viewers and outputs ask for a few kinds of picture -- H.264 for RTMP,
OBS and most players, VP8 for a browser that offers nothing else, the same with
the background keyed out for a chroma-key source -- and each kind is encoded
once per frame however many viewers share it.  Variants come and go while the
stream runs (``SetVariants``); a new one starts with a keyframe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from live.rtc.video_encoder import VideoEncoder
from live.worker.protocol import EncodedPicture, EncoderSettings, VideoVariant
from models.render.picture import Picture

# (BGR image, source frame index, "#rrggbb") -> the image with its background replaced
Keyer = Callable[[np.ndarray, int, str], np.ndarray]


@dataclass
class EncodeCost:
    convert_ms: float = 0.0
    encode_ms: float = 0.0


class PictureEncoders:
    def __init__(self, width: int, height: int, fps: float, settings: EncoderSettings,
                 keyer: Keyer | None = None) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.settings = settings
        self.keyer = keyer
        self._encoders: dict[VideoVariant, VideoEncoder] = {}

    @property
    def variants(self) -> tuple[VideoVariant, ...]:
        return tuple(self._encoders)

    def set_variants(self, variants: tuple[VideoVariant, ...]) -> None:
        for v in variants:
            if v.background is not None and self.keyer is None:
                raise ValueError("background keying is not available in this worker")
        self._encoders = {v: self._encoders.get(v) or self._new(v) for v in dict.fromkeys(variants)}

    def request_keyframe(self, variant: VideoVariant | None = None) -> None:
        for v, enc in self._encoders.items():
            if variant is None or v == variant:
                enc.request_keyframe()

    def set_bitrate(self, bitrate: int) -> None:
        """The viewer's bandwidth estimate (private sessions only: a channel keeps its rate)."""
        if not self.settings.constant_bitrate:
            for enc in self._encoders.values():
                enc.set_bitrate(bitrate)

    def encode(self, picture: Picture, pts: int, cost: EncodeCost) -> tuple[EncodedPicture, ...]:
        i420_of: dict[str | None, np.ndarray] = {}
        out = []
        for variant, enc in self._encoders.items():
            t0 = time.perf_counter()
            i420 = i420_of.get(variant.background)
            if i420 is None:
                i420 = i420_of[variant.background] = self._i420(picture, variant)
            t1 = time.perf_counter()
            data = enc.encode(i420, pts)
            cost.convert_ms += (t1 - t0) * 1000.0
            cost.encode_ms += (time.perf_counter() - t1) * 1000.0
            # The encoder's own verdict: its periodic keyframes count too (an RTMP player starts at one).
            out.append(EncodedPicture(variant, data, enc.last_was_keyframe))
        return tuple(out)

    def _i420(self, picture: Picture, variant: VideoVariant) -> np.ndarray:
        # The plain picture comes as I420 with only its mouth region converted
        # (models.render.picture); a keyed one is keyed on the full BGR frame.
        if variant.background is None:
            if picture.frames.i420_capable:
                return picture.i420()
            return cv2.cvtColor(picture.bgr(), cv2.COLOR_BGR2YUV_I420)
        keyed = self.keyer(picture.bgr(), picture.source_index, variant.background)
        return cv2.cvtColor(keyed, cv2.COLOR_BGR2YUV_I420)

    def _new(self, variant: VideoVariant) -> VideoEncoder:
        s = self.settings
        return VideoEncoder(variant.codec, self.width, self.height, self.fps, bitrate=s.bitrate,
                            keyframe_s=s.keyframe_s, constant_bitrate=s.constant_bitrate)
