"""CMU Flite (Debian ``flite``) with its own phone end times.

``flite -psdur`` prints ``phone:end_time`` for every segment it synthesises,
taken from the same utterance structure that produced the waveform (accurate
to a few ms for the clustergen voices slt/rms/awb).  kal/kal16 are excluded:
their diphone timings do not match their audio.

Alphabet: CMU ARPAbet, lowercase as flite prints it (``hh``, ``ay``); its pause
``pau`` becomes ``""``.  16 kHz output, no resampling needed.

Safe from any thread or process: every call is its own subprocess.
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

ENGINE = "flite"
VOICES = ("slt", "rms", "awb")
DEFAULT_VOICE = "slt"
_PAUSES = {"pau", "h#", "sil"}


def available() -> bool:
    return shutil.which("flite") is not None


def voices() -> list[str]:
    return list(VOICES) if available() else []


def parse_psdur(stdout: str) -> list[RawPhone]:
    """``pau:0.164 hh:0.255 ...`` -> spans (times are cumulative end times)."""
    symbols: list[str] = []
    ends: list[float] = []
    for token in stdout.split():
        phone, sep, end = token.rpartition(":")
        if not sep:
            continue
        try:
            end_s = float(end)
        except ValueError:
            continue
        symbols.append(PAUSE if phone in _PAUSES else phone)
        ends.append(end_s)
    return boundaries_to_raw(symbols, ends)


def synthesize_aligned(
    text: str,
    voice: str = DEFAULT_VOICE,
    *,
    duration_stretch: float = 1.0,
    f0_mean: float | None = None,
) -> AlignedUtterance:
    """duration_stretch > 1 speaks slower; f0_mean sets the mean pitch in Hz."""
    text = check_text(text)
    if voice not in VOICES:
        raise SpeechError(f"unknown flite voice {voice!r}; choose from {', '.join(VOICES)}")
    args = ["flite", "-voice", voice, "-psdur"]
    args += ["--setf", f"duration_stretch={check_range('duration_stretch', duration_stretch, 0.4, 3.0):.3f}"]
    if f0_mean is not None:
        args += ["--setf", f"int_f0_target_mean={check_range('f0_mean', f0_mean, 50, 400):.1f}"]
    with tempfile.TemporaryDirectory(prefix="lipstream-flite-") as tmp:
        wav = Path(tmp) / "out.wav"
        stdout = run_program(args + ["-t", text, "-o", str(wav)])
        pcm, rate = read_wav(wav)
    raw = parse_psdur(stdout)
    if not raw:
        raise SpeechError(f"flite printed no phone timings for {text[:60]!r}")
    return build_utterance(
        to_16k(pcm, rate),
        raw,
        text=text,
        source=f"{ENGINE}/{voice}",
        language="en",
        alphabet="arpabet",
        meta={"duration_stretch": duration_stretch, "f0_mean": f0_mean},
    )
