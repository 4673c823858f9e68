"""Shared plumbing of the speech engines: errors, and turning an engine's raw
(audio, phone boundaries) into a well-formed 16 kHz ``AlignedUtterance``.

Every engine reports phones differently (piper: samples per symbol, espeak:
sample of each phoneme event, flite/festival: end times, MBROLA: durations).
They all end up here as ``RawPhone(symbol, start_s, end_s)`` so the invariants
the training code relies on are enforced in one place:

* spans are sorted, non-overlapping, contiguous and cover ``[0, duration]``;
* a pause is the empty string ``""`` in every alphabet (engines' own pause
  symbols -- ``pau``, ``_``, ``^``/``$``, punctuation -- are mapped to it);
* adjacent pauses are merged and zero-length spans dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from models.audio import pcm
from models.audio.pcm import SAMPLE_RATE
from models.mouth.phonemes import AlignedUtterance, Alphabet, PhoneSpan

PAUSE = ""
MAX_TEXT_CHARS = 5_000


class SpeechError(ValueError):
    """Bad input to a speech engine: empty or oversized text, unknown voice, bad parameter."""


class EngineUnavailable(RuntimeError):
    """The engine (a program, a library or a voice file) is not installed here."""


@dataclass(frozen=True)
class RawPhone:
    phone: str
    start: float  # seconds, in the engine's own audio
    end: float


def speakable(text: str) -> bool:
    """Whether ``text`` has anything to say: a letter or a digit, in any script."""
    return re.search(r"\w", text) is not None


def check_text(text: str) -> str:
    """Validate text for synthesis; return it stripped.

    The one check of every engine and both servers.  The engines hand the text
    to C libraries (espeak-ng, piper's phonemizer) as NUL-terminated UTF-8, so
    a NUL or a lone surrogate (valid in JSON, not encodable) is refused here.
    """
    if not isinstance(text, str):
        raise SpeechError(f"text must be a string, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise SpeechError("text is empty: nothing to say")
    if len(stripped) > MAX_TEXT_CHARS:
        raise SpeechError(f"text is {len(stripped)} characters; split it (limit {MAX_TEXT_CHARS} per call)")
    if "\0" in stripped:
        raise SpeechError("text contains a NUL character")
    try:
        stripped.encode("utf-8")
    except UnicodeEncodeError:
        raise SpeechError("text is not valid Unicode (a lone surrogate)") from None
    if not speakable(stripped):
        raise SpeechError(f"text has no letters or digits to speak: {stripped[:40]!r}")
    return stripped


def check_range(name: str, value: float, lo: float, hi: float) -> float:
    v = float(value)
    if not (lo <= v <= hi) or not np.isfinite(v):
        raise SpeechError(f"{name}={value!r} is outside [{lo}, {hi}]")
    return v


def to_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Engine audio (int16 or float, any rate) -> 16 kHz mono float32 in [-1, 1]."""
    from models.audio.audio_io import to_mono_16k  # the project's one resampler (PyAV/swresample)

    x = np.asarray(audio)
    x = pcm.int16_to_float(x) if x.dtype == np.int16 else np.asarray(x, dtype=np.float32)
    if sample_rate != SAMPLE_RATE:
        x = to_mono_16k(x, sample_rate)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def normalise_spans(raw: list[RawPhone], duration: float) -> list[tuple[str, float, float]]:
    """Clamp to [0, duration], make contiguous, fill holes with pauses, merge pauses."""
    out: list[list] = []
    t = 0.0
    for p in sorted(raw, key=lambda r: r.start):
        start = min(max(p.start, t), duration)
        end = min(max(p.end, start), duration)
        if start > t + 1e-6:  # a hole the engine didn't label: silence by construction
            out.append([PAUSE, t, start])
        if end - start > 1e-6:
            out.append([p.phone, start, end])
        t = max(t, end)
    if duration - t > 1e-6:
        if out and out[-1][0] == PAUSE or not out:
            out.append([PAUSE, t, duration])
        else:
            # A few ms of resampling rounding past the last phone belong to it.
            if duration - t < 0.02:
                out[-1][2] = duration
            else:
                out.append([PAUSE, t, duration])
    elif out:
        out[-1][2] = duration  # under a microsecond short (rate conversion rounding): end exactly
    merged: list[list] = []
    for seg in out:
        if merged and seg[0] == PAUSE and merged[-1][0] == PAUSE:
            merged[-1][2] = seg[2]
        else:
            merged.append(seg)
    # Contiguity after clamping: each span starts where the previous ended.
    for a, b in zip(merged, merged[1:]):
        b[1] = a[2]
    return [(s[0], float(s[1]), float(s[2])) for s in merged]


def build_utterance(
    audio16k: np.ndarray,
    raw: list[RawPhone],
    *,
    text: str,
    source: str,
    language: str,
    alphabet: Alphabet,
    meta: dict | None = None,
) -> AlignedUtterance:
    duration = len(audio16k) / SAMPLE_RATE
    spans = [PhoneSpan(s, e, p, alphabet) for p, s, e in normalise_spans(raw, duration)]
    if not any(s.phone for s in spans):
        raise SpeechError(f"{source}: the engine produced no phones for {text[:60]!r}")
    info = dict(meta or {})
    # Where the engine itself said speech ends, before clamping to the audio:
    # a check that its timings and its waveform agree (tests compare it).
    info["engine_end_s"] = round(max((r.end for r in raw), default=0.0), 4)
    return AlignedUtterance(audio=audio16k, phones=spans, text=text, source=source, language=language, meta=info)


def boundaries_to_raw(symbols: list[str], ends: list[float], start: float = 0.0) -> list[RawPhone]:
    """(symbol, end time) lists, as flite/festival print them, -> RawPhone spans.

    Each phone starts where the previous one ended; an end time that goes
    backwards never moves the next start back.
    """
    raw = []
    t = start
    for sym, end in zip(symbols, ends):
        raw.append(RawPhone(sym, t, end))
        t = max(t, end)
    return raw


def run_program(args: list[str], *, timeout: float = 60.0, input_text: str | None = None) -> str:
    """Run an engine's command-line program; its stdout, or a readable error."""
    import shutil
    import subprocess

    if shutil.which(args[0]) is None:
        raise EngineUnavailable(f"{args[0]} is not installed (see scripts/install_tts_extras.sh)")
    try:
        done = subprocess.run(
            args, input=input_text, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise SpeechError(f"{args[0]} took longer than {timeout:.0f} s") from e
    if done.returncode != 0:
        raise SpeechError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return done.stdout


def read_wav(path) -> tuple[np.ndarray, int]:
    """A mono 16-bit PCM WAV written by an engine -> (int16 samples, rate)."""
    try:
        return pcm.read_wav(path)
    except ValueError as e:
        raise SpeechError(f"engine wrote no readable audio: {e}") from e
