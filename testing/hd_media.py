"""Talking-head videos at full HD for the native-resolution tests, bench and contact sheet.

The default astronaut speaks (its mouth moved by the photo renderer, syllables with
pauses), scaled so its face is ``face_px`` wide and centred on a ``width``×``height``
canvas: a 1080×1920 portrait with a 420 px face is what a livestream host shoots.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from models.avatar.avatar import default_avatar
from models.mouth.mouth_shape import MouthShape
from models.render.mouth_renderer import MouthRenderer
from testing.avatar_media import write_video

# The astronaut's face in the 512² photo: cheek to cheek (FaceMesh 234 to 454), ~180 px.
_CHEEKS = (234, 454)


def speech_like_shapes(n: int, fps: float = 25.0, seed: int = 0) -> list[MouthShape]:
    """Syllables at ~4 Hz with varying peaks and width, lips together in the pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fps
    peaks = rng.uniform(0.25, 0.95, size=int(t[-1] * 5) + 2 if n else 2)
    widths = rng.uniform(-0.6, 0.8, size=len(peaks))
    shapes = []
    for tk in t:
        syl = int(tk * 4.2)
        pause = (tk % 3.0) > 2.4
        o = 0.0 if pause else float(peaks[syl] * np.sin(np.pi * ((tk * 4.2) % 1.0)) ** 1.5)
        shapes.append(MouthShape(openness=o, width=float(widths[syl] * min(1.0, o * 4)), speech=not pause))
    return shapes


def talking_head_video(path: Path, cache_root: Path, *, width: int, height: int, face_px: float,
                       seconds: float, fps: float = 25.0, seed: int = 1) -> Path:
    """Write an H.264 file of the astronaut speaking, its face ``face_px`` wide."""
    avatar = default_avatar(cache_root, fps=fps)
    renderer = MouthRenderer(avatar)
    lm = avatar.landmarks[0]
    scale = face_px / float(np.linalg.norm(lm[_CHEEKS[1]] - lm[_CHEEKS[0]]))
    cx, cy = lm[:, 0].mean(), lm[:, 1].mean()
    # The face a little above the centre, as framed in a portrait.
    m = np.float32([[scale, 0, width / 2 - cx * scale], [0, scale, 0.42 * height - cy * scale]])
    n = int(round(seconds * fps))

    def frames():
        for k, shape in enumerate(speech_like_shapes(n, fps, seed)):
            img = renderer.render(avatar.loop_frame(k), dataclasses.replace(shape))
            yield cv2.warpAffine(img, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, frames(), fps)
