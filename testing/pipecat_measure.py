"""Measuring what ``LipstreamVideoService`` pushes down a pipecat pipeline (from a driver run).

Times are ``time.time()`` on this machine.  Each pushed frame has two: when it
reached the end of the pipeline (``t``), and when the server sent it (``sender``,
from the channel's RTCP sender reports: the channel's media clock), which is what
"media time" means below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testing.live_measure import MouthMeter, best_lag
from testing.pipecat_env import DriverRun

OPEN_MARGIN = 4.0    # mouth score above the closed level that counts as open (as in test_live_media)
LOUD_RMS = 0.01


@dataclass
class Timeline:
    t_img: np.ndarray
    sender_img: np.ndarray    # NaN before the first sender report
    score: np.ndarray         # mouth opening of each pushed image
    t_aud: np.ndarray
    sender_aud: np.ndarray
    rms: np.ndarray           # of each pushed audio frame


def timeline(run: DriverRun, meter: MouthMeter) -> Timeline:
    r = run.result

    def times(items: list[dict], key: str) -> np.ndarray:
        return np.array([np.nan if i[key] is None else i[key] for i in items], dtype=np.float64)

    return Timeline(times(r["images"], "t"), times(r["images"], "sender_time"),
                    np.array([meter.score(luma) for luma in run.lumas]),
                    times(r["audio"], "t"), times(r["audio"], "sender_time"), times(r["audio"], "rms"))


def av_lag(tl: Timeline, start: float, end: float) -> tuple[float, float]:
    """Lag of the lips behind the sound as pushed downstream, over [start, end]: (seconds, r)."""
    v = (tl.t_img > start) & (tl.t_img < end)
    a = (tl.t_aud > start) & (tl.t_aud < end)
    return best_lag(tl.t_aud[a], tl.rms[a], tl.t_img[v], tl.score[v])


@dataclass
class Interruption:
    open_before: float        # share of open frames in the 0.5 s before it (something to cut)
    closed_media_s: float     # media time from the interruption to the first frame closed for good
    last_loud_audio_s: float  # last loud sound pushed after it, by arrival (0: none)


def interruption(tl: Timeline, at: float, fps: float) -> Interruption:
    after_cut = (tl.t_img > at + 0.6) & (tl.t_img < at + 1.5)
    if not after_cut.any():   # a median of nothing would make every frame read as closed
        raise ValueError("no image reached the end of the pipeline 0.6-1.5 s after the interruption")
    closed_level = float(np.median(tl.score[after_cut]))
    is_open = tl.score > closed_level + OPEN_MARGIN
    before = (tl.t_img > at - 0.5) & (tl.t_img < at)
    after = np.flatnonzero(tl.t_img > at)
    still_open = [i for i in after if is_open[i]]
    if still_open:
        # the last open frame leaves the screen when the next one (closed) is due
        last = still_open[-1]
        sender = tl.sender_img[last] if np.isfinite(tl.sender_img[last]) else tl.t_img[last]
        closed = sender + 1.0 / fps - at
    else:
        closed = 0.0
    loud = tl.t_aud[(tl.t_aud > at) & (tl.rms > LOUD_RMS)]
    return Interruption(float(is_open[before].mean()) if before.any() else 0.0, max(0.0, float(closed)),
                        float(loud.max() - at) if len(loud) else 0.0)


def added_latency_ms(run: DriverRun, tl: Timeline) -> np.ndarray:
    """Per frame: reaching the end of the pipeline minus reaching a plain WHEP viewer (same frame)."""
    out = []
    for v in run.result["viewer_video"]:
        if v["sender_time"] is None or not np.isfinite(tl.sender_img).any():
            continue
        k = int(np.nanargmin(np.abs(tl.sender_img - v["sender_time"])))
        # Frames are 40 ms apart; each peer's sender reports map them with their own error.
        if abs(tl.sender_img[k] - v["sender_time"]) < 0.015:
            out.append((tl.t_img[k] - v["t"]) * 1000.0)
    return np.array(out)
