"""Text-to-speech for live sessions: the voice registry's engines, plus an optional HTTP TTS.

Voices are named ``engine:voice`` and parsed by ``tts.registry`` (the same parser as
the studio's): ``piper:joe`` (default for English), ``piper:<name>`` for a piper file
the operator listed at start-up (``ServerConfig.piper_voice_files``), and
``espeak:<language>[+variant]`` for every other language (``espeak:cmn``,
``espeak:de+f2`` ...).  ``http:default`` is an operator-configured HTTP TTS
(``ServerConfig.http_tts_url``): it gets ``POST {"text", "voice"}`` and answers with
audio in any format PyAV decodes.  Request bodies name voices, never paths.

Leaving the voice out picks piper for text that looks English and espeak's
Mandarin for Chinese script.  Synthesis is blocking C/ONNX work and runs in a
thread executor (both engines release the GIL while they work).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tts import registry
from tts.alignment import EngineUnavailable, SpeechError, check_text
from tts.registry import Voice, VoiceInfo, VoiceRegistry, guess_voice

__all__ = ["HttpSynthesizer", "TtsError", "TtsService", "Voice", "VoiceInfo", "guess_voice"]

log = logging.getLogger(__name__)

# The request can't be spoken (unknown voice, nothing speakable, engine failure): a 400
# before anything is queued, an ``error`` event after.  The speech engines' own error.
TtsError = SpeechError


class HttpSynthesizer:
    """An external TTS service: POST JSON, get audio back (wav, mp3, ogg ... anything PyAV reads)."""

    engine = "http"

    def __init__(self, url: str, voices: Sequence[str] = ("default",), timeout_s: float = 30.0) -> None:
        self.url = url
        self.voices = tuple(voices)
        self.timeout_s = timeout_s

    def synthesize(self, text: str, voice: str) -> np.ndarray:
        body = json.dumps({"text": text, "voice": voice}).encode()
        req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                data = resp.read()
        except (urllib.error.URLError, OSError) as e:
            log.warning("HTTP TTS at %s failed: %s", self.url, e)
            raise TtsError("the HTTP TTS service failed (details in the server log)") from e
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


class TtsService:
    """Checks text and voices for the live API, and synthesises off the event loop."""

    def __init__(self, voices: VoiceRegistry, http: HttpSynthesizer | None = None, threads: int = 2,
                 onnx_threads: int | None = 1) -> None:
        self.registry = voices
        self._http = http
        # One ONNX thread by default: spinning thread pools lose badly when the renderers
        # keep the cores busy, and a second thread would be taken from the live sessions.
        self.onnx_threads = onnx_threads
        self._executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="tts")

    @classmethod
    def default(
        cls,
        piper_voice_files: Sequence[Path] = (),
        http_url: str | None = None,
        threads: int = 2,
        onnx_threads: int | None = 1,
    ) -> "TtsService":
        http = HttpSynthesizer(http_url) if http_url else None
        voices = VoiceRegistry(piper_voice_files, extra={http.engine: http.voices} if http else None)
        voices.voices()  # find the engines now (imports piper: a second), not inside a request
        return cls(voices, http, threads, onnx_threads)

    def voices(self) -> list[VoiceInfo]:
        return self.registry.voices()

    def default_voice(self) -> str | None:
        return self.registry.default_id()

    def resolve(self, voice: object, text: str = "") -> Voice:
        """A client's voice name (None: chosen from ``text``) -> the voice; TtsError if unknown."""
        return self.registry.resolve(voice, text)

    def check(self, text: object, voice: object = None) -> tuple[str, Voice | None]:
        """(the text to say, the voice asked for: None = chosen per sentence); TtsError for
        text with nothing speakable or an unknown voice, before anything is queued."""
        clean = check_text(text)
        resolved = self.resolve(voice, clean)   # also: is there a voice for this script at all?
        return clean, (None if voice is None or (isinstance(voice, str) and not voice.strip()) else resolved)

    async def synthesize(self, text: str, voice: Voice | None) -> np.ndarray:
        """16 kHz mono float32 for ``text``; ``voice`` None chooses one from the text's script."""
        voice = voice or self.resolve(None, text)
        loop = asyncio.get_running_loop()
        audio = await loop.run_in_executor(self._executor, self._synthesize, text, voice)
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(audio)):
            raise TtsError("TTS produced invalid samples")
        return audio

    def _synthesize(self, text: str, voice: Voice) -> np.ndarray:
        if self._http is not None and voice.engine == self._http.engine:
            return self._http.synthesize(text, voice.name)
        try:
            return registry.synthesize(voice, text, self.onnx_threads)
        except EngineUnavailable as e:
            # An operator's voice file that can't load: the details (paths) go to the log only.
            log.error("TTS voice %s is unavailable: %s", voice.id, e)
            raise TtsError(f"voice {voice.id} is not available on this server") from None

    async def warm_up(self) -> None:
        """Load the default voice now (a second or two) instead of on the first ``say``."""
        default = self.default_voice()
        if default is not None:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, registry.warm_up, self.resolve(default), self.onnx_threads)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
