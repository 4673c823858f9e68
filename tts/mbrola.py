"""MBROLA diphone voices driven by espeak-ng (Debian contrib/non-free packages,
installed by ``scripts/install_tts_extras.sh``).

espeak-ng turns text into a ``.pho`` file (one ``phone duration_ms
[pitch points]`` line per phone) and MBROLA concatenates diphones recorded
from real speakers to exactly those durations -- so the phone times are read
straight from the ``.pho`` file.  MBROLA rounds each phone to its analysis
frames, so the total can differ from the ``.pho`` sum by a few ms; the spans
are rescaled proportionally to the real audio length.

Alphabet: SAMPA as the MBROLA voices use it (``@U``, ``r=``, ``EI``, ``tS``);
the pause ``_`` becomes ``""``.  Voices: us1 (female), us2, us3 (male) and en1
(British male) where installed.  16 kHz output.

Safe from any thread or process: every call runs two subprocesses.
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
    build_utterance,
    check_range,
    check_text,
    read_wav,
    run_program,
    to_16k,
)

ENGINE = "mbrola"
KNOWN_VOICES = ("us1", "us2", "us3", "en1")
DEFAULT_VOICE = "us1"
VOICE_ROOT = Path("/usr/share/mbrola")


def _voice_file(voice: str) -> Path:
    return VOICE_ROOT / voice / voice


def available() -> bool:
    return bool(voices())


def voices() -> list[str]:
    if shutil.which("mbrola") is None or shutil.which("espeak-ng") is None:
        return []
    return [v for v in KNOWN_VOICES if _voice_file(v).is_file()]


def parse_pho(content: str) -> list[tuple[str, float]]:
    """.pho text -> [(phone, duration_ms)]; comments (';') and blank lines skipped."""
    out: list[tuple[str, float]] = []
    for line in content.splitlines():
        line = line.split(";", 1)[0].strip()
        parts = line.split()
        if len(parts) < 2:
            continue
        try:
            out.append((parts[0], float(parts[1])))
        except ValueError:
            continue
    return out


def scale_pho(content: str, time_ratio: float) -> str:
    """Multiply every duration in a .pho file (pitch points are in % of the phone, so they stay)."""
    lines = []
    for line in content.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.lstrip().startswith(";"):
            try:
                parts[1] = str(max(1, round(float(parts[1]) * time_ratio)))
                line = "\t".join(parts)
            except ValueError:
                pass
        lines.append(line)
    return "\n".join(lines) + "\n"


def synthesize_aligned(
    text: str,
    voice: str = DEFAULT_VOICE,
    *,
    rate: int = 175,
    pitch: int = 50,
    time_ratio: float = 1.0,
    freq_ratio: float = 1.0,
) -> AlignedUtterance:
    """rate/pitch: espeak-ng's (words per minute, 0-100); time_ratio scales every
    phone's duration; freq_ratio scales the pitch (MBROLA ``-f``)."""
    text = check_text(text)
    if voice not in KNOWN_VOICES:
        raise SpeechError(f"unknown MBROLA voice {voice!r}; choose from {', '.join(KNOWN_VOICES)}")
    if voice not in voices():
        raise SpeechError(f"MBROLA voice {voice!r} is not installed (scripts/install_tts_extras.sh)")
    rate = int(check_range("rate", rate, 80, 450))
    pitch = int(check_range("pitch", pitch, 0, 99))
    time_ratio = check_range("time_ratio", time_ratio, 0.4, 3.0)
    freq_ratio = check_range("freq_ratio", freq_ratio, 0.5, 2.0)
    with tempfile.TemporaryDirectory(prefix="lipstream-mbrola-") as tmp:
        pho_path, wav = Path(tmp) / "in.pho", Path(tmp) / "out.wav"
        text_path = Path(tmp) / "in.txt"
        text_path.write_text(text, encoding="utf-8")  # a file, so text starting with '-' is not an option
        pho = run_program(
            ["espeak-ng", "-v", f"mb-{voice}", "-q", "--pho", "-s", str(rate), "-p", str(pitch), "-f", str(text_path)]
        )
        if time_ratio != 1.0:
            pho = scale_pho(pho, time_ratio)
        pho_path.write_text(pho, encoding="utf-8")
        run_program(["mbrola", "-e", "-f", f"{freq_ratio:.3f}", str(_voice_file(voice)), str(pho_path), str(wav)])
        pcm, sr = read_wav(wav)
    phones = parse_pho(pho)
    total_ms = sum(d for _, d in phones)
    if not phones or total_ms <= 0:
        raise SpeechError(f"espeak-ng produced no MBROLA phones for {text[:60]!r}")
    audio = to_16k(pcm, sr)
    scale = (len(audio) / 16_000) / (total_ms / 1000.0)
    raw: list[RawPhone] = []
    t = 0.0
    for phone, dur in phones:
        end = t + dur / 1000.0 * scale
        raw.append(RawPhone(PAUSE if phone == "_" else phone, t, end))
        t = end
    return build_utterance(
        audio,
        raw,
        text=text,
        source=f"{ENGINE}/{voice}",
        language="en",
        alphabet="sampa",
        meta={"rate": rate, "pitch": pitch, "time_ratio": time_ratio, "freq_ratio": freq_ratio, "timing_scale": scale},
    )
