"""Festival with the CMU US SLT HTS voice (Debian ``festival`` + ``festvox-us-slt-hts``).

A small Scheme script synthesises the text, saves the waveform and the
segment relation with ``utt.save.segs`` (one ``end_time stress phone`` line
per segment).  The segment times are the HTS engine's own state durations,
so they match the audio (the ``-r`` speed option rescales both).

Alphabet: ARPAbet, lowercase (festival's radio phone set); ``pau`` -> ``""``.
Output is 32 kHz, resampled to 16 kHz.

Safe from any thread or process: every call is its own subprocess (~0.6 s of
which is festival starting up, so it is a corpus engine, not a live one).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from models.mouth.phonemes import AlignedUtterance
from tts.alignment import (
    PAUSE,
    RawPhone,
    SpeechError,
    boundaries_to_raw,
    build_utterance,
    check_range,
    check_text,
    read_wav,
    run_program,
    to_16k,
)

ENGINE = "festival"
VOICES = {"slt": "voice_cmu_us_slt_arctic_hts"}
DEFAULT_VOICE = "slt"
_VOICE_DIRS = (Path("/usr/share/festival/voices/us/cmu_us_slt_arctic_hts"),)


def available() -> bool:
    return shutil.which("festival") is not None and any(d.is_dir() for d in _VOICE_DIRS)


def voices() -> list[str]:
    return list(VOICES) if available() else []


def scheme_string(text: str) -> str:
    """A Scheme string literal for ``text`` (quotes and backslashes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_segs(content: str) -> list[RawPhone]:
    """utt.save.segs output (``#`` header, then ``end stress phone``) -> spans."""
    symbols: list[str] = []
    ends: list[float] = []
    body = content.split("#", 1)[1] if "#" in content else content
    for line in body.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        try:
            end = float(parts[0])
        except ValueError:
            continue
        symbols.append(PAUSE if parts[2] in ("pau", "h#") else parts[2])
        ends.append(end)
    return boundaries_to_raw(symbols, ends)


def synthesize_aligned(
    text: str,
    voice: str = DEFAULT_VOICE,
    *,
    speed: float = 1.0,
    half_tones: float = 0.0,
) -> AlignedUtterance:
    """speed > 1 speaks faster (HTS ``-r``); half_tones shifts the pitch (``-fm``)."""
    text = check_text(text)
    if voice not in VOICES:
        raise SpeechError(f"unknown festival voice {voice!r}; choose from {', '.join(VOICES)}")
    speed = check_range("speed", speed, 0.4, 2.5)
    half_tones = check_range("half_tones", half_tones, -12, 12)
    with tempfile.TemporaryDirectory(prefix="lipstream-festival-") as tmp:
        wav, segs, script = Path(tmp) / "out.wav", Path(tmp) / "out.segs", Path(tmp) / "say.scm"
        script.write_text(
            f"({VOICES[voice]})\n"
            f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {speed:.4f}) (list "-fm" {half_tones:.3f}))))\n'
            f"(set! utt (Utterance Text {scheme_string(text)}))\n"
            "(utt.synth utt)\n"
            f'(utt.save.wave utt "{wav}" \'riff)\n'
            f'(utt.save.segs utt "{segs}")\n',
            encoding="utf-8",
        )
        run_program(["festival", "-b", str(script)], timeout=120)
        if not segs.exists():
            raise SpeechError(f"festival wrote no segments for {text[:60]!r}")
        raw = parse_segs(segs.read_text(encoding="utf-8", errors="replace"))
        pcm, rate = read_wav(wav)
    if not raw:
        raise SpeechError(f"festival produced no phones for {text[:60]!r}")
    return build_utterance(
        to_16k(pcm, rate),
        raw,
        text=text,
        source=f"{ENGINE}/{voice}",
        language="en",
        alphabet="arpabet",
        meta={"speed": speed, "half_tones": half_tones},
    )
