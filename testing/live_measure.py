"""Measuring what a viewer receives: mouth opening in decoded frames, audio energy, lag.

Clients keep the luma plane of each frame (cheap, in the receiving loop) and score
afterwards, so measuring does not steal time from the server under test.

``MouthMeter`` knows the avatar's frames with the lips together (each idle-loop
frame drawn by the real renderer with a closed mouth).  For a received frame it
finds the loop frame it was rendered from (nearest thumbnail of the face *above*
the mouth, so the mouth itself can't bias the match) and returns the mean absolute
difference inside the mouth box: ~codec noise when the lips are together, large
when a mouth is drawn open.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.avatar.avatar import Avatar
from models.avatar.face_landmarks import LIP_INDICES
from models.mouth.mouth_shape import CLOSED
from models.render.mouth_renderer import MouthRenderer

_THUMB = 48


@dataclass
class MouthMeter:
    avatar: Avatar

    def __post_init__(self) -> None:
        lips = self.avatar.landmarks[:, list(LIP_INDICES)]
        lo, hi = lips.min(axis=(0, 1)), lips.max(axis=(0, 1))
        w = hi[0] - lo[0]
        # Cover the jaw drop and the corners' motion, over all idle frames.
        self.mouth = (int(lo[0] - 0.15 * w), int(lo[1] - 0.1 * w), int(hi[0] + 0.15 * w), int(hi[1] + 0.45 * w))
        boxes = self.avatar.face_boxes
        fx0, fy0 = boxes[:, 0].min(), boxes[:, 1].min()
        fx1 = boxes[:, 2].max()
        self.upper = (int(fx0), int(fy0), int(fx1), int(lo[1] - 0.2 * w))
        frames = sorted(set(int(i) for i in self.avatar.loop_order))
        self.ids = np.array(frames)
        renderer = MouthRenderer(self.avatar)
        closed = []
        for i in frames:
            renderer.reset()
            closed.append(self._gray(renderer.render(i, CLOSED)))
        self.thumbs = np.stack([self._thumb(g) for g in closed])
        self.mouths = [self._crop(g, self.mouth) for g in closed]

    @staticmethod
    def _gray(image: np.ndarray) -> np.ndarray:
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return image.astype(np.float32)

    @staticmethod
    def _crop(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        x0, y0, x1, y1 = box
        return img[max(0, y0) : y1, max(0, x0) : x1]

    def _thumb(self, gray: np.ndarray) -> np.ndarray:
        return cv2.resize(self._crop(gray, self.upper), (_THUMB, _THUMB), interpolation=cv2.INTER_AREA).ravel()

    def score(self, image: np.ndarray) -> float:
        """Mouth opening of a received frame (BGR, or gray: the Y plane is enough)."""
        gray = self._gray(image)
        d = np.abs(self.thumbs - self._thumb(gray)[None, :]).mean(axis=1)
        k = int(np.argmin(d))
        return float(np.abs(self._crop(gray, self.mouth) - self.mouths[k]).mean())


def envelope(samples: np.ndarray, rate: int, hop_s: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """RMS per hop: (times of the hop centres from sample 0, values)."""
    hop = int(rate * hop_s)
    n = len(samples) // hop
    x = samples[: n * hop].reshape(n, hop)
    return (np.arange(n) + 0.5) * hop_s, np.sqrt((x.astype(np.float64) ** 2).mean(axis=1))


def best_lag(t_a: np.ndarray, a: np.ndarray, t_b: np.ndarray, b: np.ndarray, max_lag: float = 0.3, step: float = 0.005) -> tuple[float, float]:
    """Lag L (seconds) maximising corr(a(t), b(t + L)); positive: b happens after a. Returns (L, r)."""
    lags = np.arange(-max_lag, max_lag + step / 2, step)
    best = (0.0, -2.0)
    for lag in lags:
        bi = np.interp(t_a + lag, t_b, b, left=np.nan, right=np.nan)
        ok = np.isfinite(bi)
        if ok.sum() < 10 or np.std(a[ok]) == 0 or np.std(bi[ok]) == 0:
            continue
        r = float(np.corrcoef(a[ok], bi[ok])[0, 1])
        if r > best[1]:
            best = (float(lag), r)
    return best
