"""Voice activity of the 16 kHz stream: webrtcvad plus the rules that make it
usable for a mouth.

Raw webrtcvad flips on a single click and off in every short pause between
words.  A mouth that followed it would twitch, so a decision needs
``min_speech_ms`` of consecutive voicing to switch on (the whole run is then
marked, so the mouth opens at the true onset) and stays on for ``hangover_ms``
after the last voiced frame.  Frames quieter than ``energy_floor_db`` never
count as voiced, whatever webrtcvad thinks of faint hiss.

Streaming (``VoiceActivity``) and offline (``speech_mask``) run the same rules
and agree exactly; a streaming decision is final ``min_speech_ms`` after its
frame, which the engine's look-ahead already waits for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import webrtcvad

from models.audio.pcm import SAMPLE_RATE, float_to_int16


class VadError(ValueError):
    """Invalid VAD configuration."""


@dataclass(frozen=True)
class VadConfig:
    aggressiveness: int = 2  # webrtcvad mode 0 (permissive) .. 3 (strict)
    frame_ms: int = 20  # 10, 20 or 30: the frame sizes webrtcvad accepts
    min_speech_ms: int = 60  # voicing needed to switch on; shorter bursts are clicks
    hangover_ms: int = 160  # stay on this long after the last voiced frame
    energy_floor_db: float = -50.0  # dBFS RMS below which a frame is silence

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise VadError(f"aggressiveness must be 0..3, got {self.aggressiveness}")
        if self.frame_ms not in (10, 20, 30):
            raise VadError(f"frame_ms must be 10, 20 or 30, got {self.frame_ms}")
        if self.min_speech_ms < 0 or self.hangover_ms < 0:
            raise VadError("min_speech_ms and hangover_ms must be >= 0")

    @property
    def frame_samples(self) -> int:
        return SAMPLE_RATE * self.frame_ms // 1000

    @property
    def min_frames(self) -> int:
        return max(1, -(-self.min_speech_ms // self.frame_ms))  # ceil

    @property
    def hangover_frames(self) -> int:
        return self.hangover_ms // self.frame_ms


def _frame_db(frames: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=-1))
    return 20 * np.log10(np.maximum(rms, 1e-10))


def _raw_voicing(vad: webrtcvad.Vad, frames: np.ndarray, floor_db: float) -> np.ndarray:
    """(n, frame_samples) float frames -> webrtcvad flags gated by the energy floor."""
    loud = _frame_db(frames) > floor_db
    pcm = float_to_int16(frames)
    # webrtcvad adapts its noise model on every frame, so quiet frames are fed too.
    flags = np.array([vad.is_speech(row.tobytes(), SAMPLE_RATE) for row in pcm], dtype=bool)
    return flags & loud


def decide(voiced: np.ndarray, min_frames: int, hangover_frames: int) -> np.ndarray:
    """Offline form of the on/off rules over raw per-frame voicing.

    Voiced frames whose gaps are <= hangover form a cluster; a cluster is speech
    from the start of its first run of >= min_frames voiced frames to
    hangover frames after its last voiced frame.
    """
    v = np.asarray(voiced, dtype=bool)
    n = len(v)
    out = np.zeros(n, dtype=bool)
    idx = np.flatnonzero(v)
    if len(idx) == 0:
        return out
    new_run = np.concatenate([[True], np.diff(idx) > 1])
    run_start = idx[new_run]
    run_end = idx[np.concatenate([new_run[1:], [True]])]
    run_len = run_end - run_start + 1
    new_cluster = np.concatenate([[True], run_start[1:] - run_end[:-1] - 1 > hangover_frames])
    cluster = np.cumsum(new_cluster) - 1
    n_clusters = int(cluster[-1]) + 1
    first_on = np.full(n_clusters, n, dtype=np.int64)
    q = run_len >= min_frames
    np.minimum.at(first_on, cluster[q], run_start[q])
    last_voiced = run_end[np.concatenate([new_cluster[1:], [True]])]
    starts = first_on[first_on < n]
    ends = np.minimum(last_voiced[first_on < n] + hangover_frames + 1, n)
    edges = np.zeros(n + 1, dtype=np.int64)
    np.add.at(edges, starts, 1)
    np.add.at(edges, ends, -1)
    return np.cumsum(edges[:-1]) > 0


def frame_decisions(samples: np.ndarray, config: VadConfig = VadConfig()) -> np.ndarray:
    """Speech decision for each whole VAD frame of a 16 kHz float signal."""
    f = config.frame_samples
    x = np.asarray(samples, dtype=np.float32)
    frames = x[: len(x) // f * f].reshape(-1, f)
    voiced = _raw_voicing(webrtcvad.Vad(config.aggressiveness), frames, config.energy_floor_db)
    return decide(voiced, config.min_frames, config.hangover_frames)


def speech_mask(samples: np.ndarray, hop: int, config: VadConfig = VadConfig()) -> np.ndarray:
    """``mask[i]`` = is sample ``i * hop`` speech (as ``VoiceActivity.is_speech_at``
    would answer after the whole signal); one entry per hop, ``ceil(n / hop)``."""
    if hop <= 0:
        raise VadError(f"hop must be positive, got {hop}")
    per_frame = frame_decisions(samples, config)
    frame_of = np.arange(0, len(samples), hop) // config.frame_samples
    inside = frame_of < len(per_frame)
    out = np.zeros(len(frame_of), dtype=bool)
    out[inside] = per_frame[frame_of[inside]]
    return out


class VoiceActivity:
    """Streaming voice activity over the 16 kHz stream (absolute sample indices).

    Decisions for the last ``history_s`` seconds are kept; older ones read as
    silence.  A frame's decision is final once ``min_speech_ms`` of later audio
    has been pushed (``final_until`` says up to which sample).
    """

    def __init__(self, config: VadConfig = VadConfig(), history_s: float = 30.0) -> None:
        self.config = config
        self._capacity = max(1, int(history_s * 1000 / config.frame_ms))
        self.reset()

    @property
    def samples_pushed(self) -> int:
        return self.frames_done * self.config.frame_samples + len(self._pending)

    @property
    def final_until(self) -> int:
        """Samples before this index have final decisions."""
        final_frames = max(0, self.frames_done - (self.config.min_frames - 1))
        return final_frames * self.config.frame_samples

    def push(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        buf = np.concatenate([self._pending, x]) if len(self._pending) else x
        f = self.config.frame_samples
        whole = len(buf) // f * f
        if whole:
            frames = buf[:whole].reshape(-1, f)
            for v in _raw_voicing(self._vad, frames, self.config.energy_floor_db):
                self._step(bool(v))
        self._pending = buf[whole:].copy()

    def is_speech_at(self, sample_index: int) -> bool:
        """Speech decision for the frame holding ``sample_index``; False for samples
        not yet pushed or older than the kept history."""
        j = int(sample_index) // self.config.frame_samples
        if j < 0 or j >= self.frames_done or j < self.frames_done - self._capacity:
            return False
        return bool(self._decisions[j % self._capacity])

    def reset(self) -> None:
        """Start a new stream at sample 0 (webrtcvad's noise model starts afresh too)."""
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self._pending = np.zeros(0, dtype=np.float32)  # start of an incomplete frame
        self._decisions = np.zeros(self._capacity, dtype=bool)
        self.frames_done = 0
        self._on = False
        self._run = 0
        self._last_voiced = -1

    def _step(self, voiced: bool) -> None:
        j = self.frames_done
        self._run = self._run + 1 if voiced else 0
        decision = False
        if self._on:
            if voiced:
                self._last_voiced = j
            if j - self._last_voiced <= self.config.hangover_frames:
                decision = True
            else:
                self._on = False
        elif self._run >= self.config.min_frames:
            self._on = True
            self._last_voiced = j
            decision = True
            # The whole qualifying run is speech: the mouth opens at the onset.
            for k in range(j - self._run + 1, j):
                if k >= j - self._capacity + 1:
                    self._decisions[k % self._capacity] = True
        self._decisions[j % self._capacity] = decision
        self.frames_done += 1
