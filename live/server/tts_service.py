"""Text-to-speech for live sessions: the voice registry's engines, local and remote.

Voices are named ``engine:voice`` and parsed by ``tts.registry`` (the same parser as
the studio's): ``piper:joe`` (default for English), ``piper:<name>`` for a piper file
the operator listed at start-up (``ServerConfig.piper_voice_files``),
``espeak:<language>[+variant]`` for every other language (``espeak:cmn``,
``espeak:de+f2`` ...), and ``openai:<voice>`` for the operator's OpenAI-compatible
TTS server (``ServerConfig.openai_tts``).  Request bodies name voices, never paths.

Leaving the voice out picks piper for text that looks English and espeak's
Mandarin for Chinese script.  Local synthesis is blocking C/ONNX work and runs in a
thread executor (both engines release the GIL while they work); a remote voice is
streamed on the event loop, chunk by chunk, so its first audio plays before the
server has finished (``stream``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tts import registry
from tts.alignment import EngineUnavailable, SpeechError, check_text
from tts.openai_tts import remote_engines
from tts.registry import RemoteEngine, Voice, VoiceInfo, VoiceRegistry, guess_voice

__all__ = ["TtsError", "TtsService", "Voice", "VoiceInfo", "guess_voice", "remote_engines"]

log = logging.getLogger(__name__)

# The request can't be spoken (unknown voice, nothing speakable, engine failure): a 400
# before anything is queued, an ``error`` event after.  The speech engines' own error.
TtsError = SpeechError


class TtsService:
    """Checks text and voices for the live API, and synthesises off the event loop."""

    def __init__(self, voices: VoiceRegistry, remote: Sequence[RemoteEngine] = (), threads: int = 2,
                 onnx_threads: int | None = 1) -> None:
        self.registry = voices
        self.remote = tuple(remote)
        # One ONNX thread by default: spinning thread pools lose badly when the renderers
        # keep the cores busy, and a second thread would be taken from the live sessions.
        self.onnx_threads = onnx_threads
        self._executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="tts")

    @classmethod
    def default(
        cls,
        piper_voice_files: Sequence[Path] = (),
        remote: Sequence[RemoteEngine] = (),
        threads: int = 2,
        onnx_threads: int | None = 1,
    ) -> "TtsService":
        """``remote``: ``remote_engines(config.openai_tts)``, the same objects the studio is given."""
        voices = VoiceRegistry(piper_voice_files, remote)
        voices.voices()  # find the engines now (imports piper: a second), not inside a request
        return cls(voices, remote, threads, onnx_threads)

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
        async with contextlib.aclosing(self.stream(text, voice)) as chunks:
            parts = [chunk async for chunk in chunks]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    async def stream(self, text: str, voice: Voice | None) -> AsyncIterator[np.ndarray]:
        """``text`` spoken, as 16 kHz mono float32 chunks the moment each is ready.

        A local voice gives one chunk (the speech queue already cut the text into
        sentences); a remote voice gives its audio while the server still sends it.
        Close the iterator (``aclose``) to abandon a stream: the connection goes with it.
        """
        voice = voice or self.resolve(None, text)
        if voice.remote is None:
            loop = asyncio.get_running_loop()
            yield _checked(await loop.run_in_executor(self._executor, self._synthesize, text, voice))
            return
        async with contextlib.aclosing(voice.remote.stream(registry.speech_text(voice, text), voice.name)) as chunks:
            async for chunk in chunks:
                yield _checked(chunk)

    def _synthesize(self, text: str, voice: Voice) -> np.ndarray:
        try:
            return registry.synthesize(voice, text, self.onnx_threads)
        except EngineUnavailable as e:
            # An operator's voice file that can't load: the details (paths) go to the log only.
            log.error("TTS voice %s is unavailable: %s", voice.id, e)
            raise TtsError(f"voice {voice.id} is not available on this server") from None

    async def warm_up(self) -> None:
        """Load the default voice now (a second or two) instead of on the first ``say``, then ask
        the remote servers which voices they have."""
        default = self.default_voice()
        if default is not None:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, registry.warm_up, self.resolve(default), self.onnx_threads)
        for engine in self.remote:
            await engine.discover()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """``close``, and the remote engines' pooled connections."""
        self.close()
        for engine in self.remote:
            await engine.close()


def _checked(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(audio)):
        raise TtsError("TTS produced invalid samples")
    return audio
