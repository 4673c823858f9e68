"""What a live session's engine hears next: the microphone, queued speech, or both.

The engine consumes its input stream at exactly the frame rate and needs a fixed
look-ahead beyond each frame.  The feed hands it audio *lazily* -- only what the
next frame needs -- so that everything still waiting here can be reshaped
cheaply:

* microphone audio waits in a small jitter buffer.  It starts flowing once the
  next frame's whole need is there (no dropout right after the first packet).
  A frame is rendered at its moment on the session's clock, or when its audio
  is complete if that is later; audio that was complete long before that
  moment just waits, and that wait is latency.  Where it lands depends on when
  the microphone happened to start against the clock (anywhere within a frame:
  0-40 ms), on late bursts and on the sender's clock running fast.  So the feed
  *locks the phase*: at each frame it looks at how long ago the audio that
  completed the need arrived and, if that is more than the headroom the link's
  jitter calls for (``live.engine.arrival_jitter``), drops that much silence at
  the head.  The frame then waits for its moment only as long as a late packet
  could need, on every session alike;
* clips (synthesised sentences, uploaded files) wait whole and are mixed over
  whatever the microphone gives; an interrupt drops them all at once.

Stream positions are absolute engine input samples.  The feed records where each
clip starts and ends and where each microphone chunk lands, so the session can
say "speech starts in frame 1234" and "this frame shows audio that arrived at t".
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from live.engine.arrival_jitter import ArrivalJitter
from models.audio.pcm import SAMPLE_RATE

_BLOCK = SAMPLE_RATE // 100      # 10 ms: the unit in which silence is judged
_MIN_SKIP = SAMPLE_RATE // 500   # 2 ms: smaller phase errors are not worth a cut


@dataclass(frozen=True)
class Clip:
    """A piece of speech to play (one sentence of a ``say``, or an uploaded file)."""

    utterance_id: str
    samples: np.ndarray       # float32 16 kHz mono
    text: str = ""
    first: bool = True        # the utterance starts with this clip
    last: bool = True         # ... and ends with it


@dataclass(frozen=True)
class Marker:
    position: int             # stream sample
    kind: str                 # "start" | "end"
    utterance_id: str
    text: str


@dataclass(frozen=True)
class FeedConfig:
    silence_rms: float = 0.006        # ~ -44 dBFS: below this a 10 ms block counts as silence
    min_headroom_s: float = 0.003     # the least a frame's audio is kept complete before its moment
    max_headroom_s: float = 0.100     # the most, however jittery the link (beyond it frames wait, then pad)
    mic_timeout_s: float = 0.25       # no mic audio for this long: the mic is considered stopped
    max_mic_backlog_s: float = 0.6    # hard bound (overload): older mic audio is dropped, speech or not


@dataclass
class Taken:
    samples: np.ndarray
    markers: list[Marker]
    mic_chunks: list[tuple[int, float]]   # (stream position of the chunk's first sample, arrival time)


@dataclass
class _MicChunk:
    samples: np.ndarray
    arrival: float


@dataclass
class AudioFeed:
    config: FeedConfig = field(default_factory=FeedConfig)
    position: int = 0                         # stream position of the next sample handed out
    mic_flowing: bool = False
    underruns: int = 0                        # times the mic could not cover a frame's need
    skipped_samples: int = 0                  # silent mic samples dropped to bound latency
    jitter: ArrivalJitter = field(default_factory=ArrivalJitter)
    _mic: deque[_MicChunk] = field(default_factory=deque)
    _mic_len: int = 0
    _last_mic_arrival: float = -1e9
    _clips: deque[Clip] = field(default_factory=deque)
    _clip_offset: int = 0                     # samples of _clips[0] already handed out

    # -- input --------------------------------------------------------------

    def add_mic(self, samples: np.ndarray, arrival: float) -> None:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not len(x):
            return
        self._mic.append(_MicChunk(x, arrival))
        self._mic_len += len(x)
        self.jitter.add(len(x), arrival)
        self._last_mic_arrival = arrival
        limit = int(self.config.max_mic_backlog_s * SAMPLE_RATE)
        while self._mic_len - len(self._mic[0].samples) >= limit:  # only when the worker stalls
            dropped = self._mic.popleft().samples
            self._mic_len -= len(dropped)
            self.skipped_samples += len(dropped)

    def add_clip(self, clip: Clip) -> None:
        self._clips.append(clip)

    # -- state --------------------------------------------------------------

    @property
    def mic_backlog(self) -> int:
        return self._mic_len

    @property
    def clip_backlog(self) -> int:
        return sum(len(c.samples) for c in self._clips) - self._clip_offset

    def mic_active(self, now: float) -> bool:
        return now - self._last_mic_arrival < self.config.mic_timeout_s

    def headroom_s(self) -> float:
        """How long before its frame's moment the microphone audio should be complete: long enough
        for a late chunk (the link's jitter) to make it.  One later still is waited for, briefly
        (the request's deadline), and the frame is padded only if it misses that too."""
        return min(max(self.jitter.spread_s(), self.config.min_headroom_s), self.config.max_headroom_s)

    # -- output -------------------------------------------------------------

    def take(self, n: int, now: float) -> Taken:
        """Up to ``n`` samples for positions ``[position, position + n)``.

        Returns fewer only when the microphone is flowing and hasn't delivered
        enough yet; the caller then waits briefly or lets the engine pad.
        """
        if n <= 0:
            return Taken(np.zeros(0, np.float32), [], [])
        mic_part, chunks = self._take_mic(n, now)
        if self.mic_flowing or len(mic_part):
            # The mic sets the pace; speech clips are mixed over what it delivered.
            length = len(mic_part)
            clip_part, markers = self._take_clips(length)
            out = mic_part
            if len(clip_part):
                out = out.copy()
                out[: len(clip_part)] += clip_part
        else:
            # No mic: hand out only real speech; the engine pads the rest with silence.
            out, markers = self._take_clips(n)
            length = len(out)
        self.position += length
        return Taken(np.clip(out, -1.0, 1.0).astype(np.float32, copy=False), markers, chunks)

    def note_padding(self, n: int) -> None:
        """The engine padded ``n`` samples of silence at the current position."""
        if n > 0:
            self.position += n
            if self.mic_flowing:
                self.underruns += 1

    def interrupt(self, cut: int) -> list[Clip]:
        """Forget everything queued; the engine's stream now resumes at ``cut``. Returns dropped clips."""
        dropped = list(self._clips)
        self._clips.clear()
        self._clip_offset = 0
        self._mic.clear()
        self._mic_len = 0
        self.mic_flowing = False
        self.position = cut
        return dropped

    def rewind(self, cut: int) -> None:
        """The engine dropped padding after ``cut`` (to start a clip at once); resume there."""
        self.position = cut

    # -- internals ----------------------------------------------------------

    def _take_mic(self, n: int, now: float) -> tuple[np.ndarray, list[tuple[int, float]]]:
        if not self.mic_flowing:
            if self._mic_len < n or not self.mic_active(now):
                return np.zeros(0, np.float32), []
            self.mic_flowing = True   # enough buffered to cover a whole need: start without a dropout
        self._lock_phase(n, now)
        parts, chunks = [], []
        got = 0
        for piece in self._pop_head(min(n, self._mic_len)):
            parts.append(piece.samples)
            chunks.append((self.position + got, piece.arrival))
            got += len(piece.samples)
        if self._mic_len == 0 and not self.mic_active(now):
            self.mic_flowing = False  # the mic stopped: next time it starts, buffer a full need first
        out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return out, chunks

    def _lock_phase(self, n: int, now: float) -> None:
        """Drop silence at the head until the audio completing this need arrived only a headroom ago.

        Dropping ``k`` samples moves every later sample ``k`` earlier in the stream, so the
        need is completed by audio that arrived ``k / SAMPLE_RATE`` later (the microphone
        delivers at its own steady rate).  Speech is never dropped: a long monologue keeps
        its phase until its next pause.
        """
        if self._mic_len <= n:
            return
        slack = now - self._arrival_of(n - 1)
        excess = min(self._mic_len - n, int((slack - self.headroom_s()) * SAMPLE_RATE))
        while excess >= _MIN_SKIP:
            head = self._head(_BLOCK)
            if len(head) < _BLOCK or float(np.sqrt(np.mean(head * head))) >= self.config.silence_rms:
                return
            k = min(excess, _BLOCK)
            self._pop_head(k)
            self.skipped_samples += k
            excess -= k

    def _arrival_of(self, index: int) -> float:
        """When the buffered sample ``index`` (0: the head) arrived."""
        for chunk in self._mic:
            if index < len(chunk.samples):
                return chunk.arrival
            index -= len(chunk.samples)
        return self._last_mic_arrival

    def _head(self, n: int) -> np.ndarray:
        parts, got = [], 0
        for chunk in self._mic:
            if got >= n:
                break
            parts.append(chunk.samples[: n - got])
            got += len(parts[-1])
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def _pop_head(self, n: int) -> list[_MicChunk]:
        """Remove the first ``n`` buffered samples (at most what is buffered), as pieces of their chunks."""
        pieces = []
        while n > 0 and self._mic:
            head = self._mic[0]
            if len(head.samples) <= n:
                pieces.append(self._mic.popleft())
            else:
                pieces.append(_MicChunk(head.samples[:n], head.arrival))
                self._mic[0] = _MicChunk(head.samples[n:], head.arrival)
            self._mic_len -= len(pieces[-1].samples)
            n -= len(pieces[-1].samples)
        return pieces

    def _take_clips(self, n: int) -> tuple[np.ndarray, list[Marker]]:
        parts: list[np.ndarray] = []
        markers: list[Marker] = []
        got = 0
        while got < n and self._clips:
            clip = self._clips[0]
            if self._clip_offset == 0 and clip.first:
                markers.append(Marker(self.position + got, "start", clip.utterance_id, clip.text))
            k = min(n - got, len(clip.samples) - self._clip_offset)
            parts.append(clip.samples[self._clip_offset : self._clip_offset + k])
            self._clip_offset += k
            got += k
            if self._clip_offset >= len(clip.samples):
                if clip.last:
                    markers.append(Marker(self.position + got - 1, "end", clip.utterance_id, clip.text))
                self._clips.popleft()
                self._clip_offset = 0
        out = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
        return out, markers
