"""The speech engines (all five, for the training corpus) and the voices installed here.

The servers' voice names (``piper:joe``, ``espeak:cmn``) are parsed by ``tts.registry``.

    python -m tts.voices                      # what is available here
    python -m tts.voices say piper joe "Hello there." --out hello.wav
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from types import ModuleType

from models.mouth.phonemes import AlignedUtterance
from tts.alignment import EngineUnavailable, SpeechError

# engine -> (module, alphabet, usable live: fast and in-process)
ENGINES: dict[str, tuple[str, str, bool]] = {
    "piper": ("tts.piper_voice", "ipa", True),
    "espeak": ("tts.espeak", "ipa", True),
    "flite": ("tts.flite", "arpabet", False),
    "festival": ("tts.festival", "arpabet", False),
    "mbrola": ("tts.mbrola", "sampa", False),
}

# A handful of espeak languages the corpus and docs use; voices() lists all 100+.
ESPEAK_SHOWCASE = ("en-us", "en-gb-x-rp", "en-029", "es", "de", "fr", "it", "pt", "cmn", "yue", "hi", "ru", "ja")


@dataclass(frozen=True)
class EngineInfo:
    name: str
    available: bool
    voices: tuple[str, ...]
    default_voice: str
    alphabet: str
    live: bool


def engine(name: str) -> ModuleType:
    if name not in ENGINES:
        raise SpeechError(f"unknown speech engine {name!r}; choose from {', '.join(ENGINES)}")
    return importlib.import_module(ENGINES[name][0])


def engine_info(name: str) -> EngineInfo:
    mod = engine(name)
    ok = bool(mod.available())
    return EngineInfo(name, ok, tuple(mod.voices()) if ok else (), mod.DEFAULT_VOICE, ENGINES[name][1], ENGINES[name][2])


def list_engines() -> list[EngineInfo]:
    return [engine_info(name) for name in ENGINES]


def synthesize_aligned(engine_name: str, text: str, voice: str | None = None, **params) -> AlignedUtterance:
    mod = engine(engine_name)
    if not mod.available():
        raise EngineUnavailable(f"speech engine {engine_name!r} is not installed here")
    return mod.synthesize_aligned(text, voice or mod.DEFAULT_VOICE, **params)


def _print_table() -> None:
    for info in list_engines():
        voices = info.voices
        if info.name == "espeak" and voices:
            from tts.espeak import variants

            shown = ", ".join(v for v in ESPEAK_SHOWCASE if v in voices) + \
                f" ... ({len(voices)} languages; {len(variants())} variants such as +m3, +f2)"
        else:
            shown = ", ".join(voices) or "-"
        state = "yes" if info.available else "NOT INSTALLED"
        print(f"{info.name:9s} {state:14s} alphabet={info.alphabet:8s} live={'yes' if info.live else 'no ':3s} voices: {shown}")


def _say(args: argparse.Namespace) -> int:
    from models.audio.pcm import write_wav

    utt = synthesize_aligned(args.engine, args.text, args.voice)
    write_wav(args.out, utt.audio)
    for p in utt.phones:
        print(f"{p.start:7.3f} {p.end:7.3f}  {p.phone or '(pause)'}")
    print(f"{utt.source}: {utt.duration:.2f} s -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tts.voices", description="List or try the speech engines.")
    sub = ap.add_subparsers(dest="cmd")
    say = sub.add_parser("say", help="synthesise text and print its phone timings")
    say.add_argument("engine", choices=list(ENGINES))
    say.add_argument("voice", nargs="?", default=None)
    say.add_argument("text")
    say.add_argument("--out", default="say.wav")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "say":
            return _say(args)
        _print_table()
        return 0
    except (SpeechError, EngineUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
