"""Text (and uploaded audio) to speech clips for a session, in order, interruptibly.

``say`` splits text into sentences (``tts.text_stream``, the one splitter) and
synthesises them one after another; each sentence goes to the engine as soon as it
is ready -- a streaming (remote) voice's audio chunk by chunk, as it arrives -- so the
avatar starts talking after the first sentence, not after the whole text, and the
next sentences are synthesised while the first plays.  Requests play in the order they were made.
An interrupt empties the queue and cancels the synthesis in flight at once: a
remote voice's connection is closed, and a running ONNX call, which can't be
stopped, finishes unseen -- so the next request starts without waiting for either.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from live.engine.audio_feed import Clip
from live.server.tts_service import TtsError, TtsService, Voice
from tts.text_stream import split_sentences

__all__ = ["SpeechQueue", "SpeechRequest", "split_sentences", "trim_leading_silence"]

log = logging.getLogger(__name__)

_LEAD_SILENCE_KEEP = 160      # samples (10 ms) of a clip's leading silence worth keeping
_SILENCE_RMS = 0.01

_ids = itertools.count(1)


def new_utterance_id() -> str:
    return f"u{next(_ids)}"


def trim_leading_silence(audio: np.ndarray) -> np.ndarray:
    """Drop a synthesiser's leading silence (piper adds ~50 ms) so speech starts sooner."""
    block = 160
    n = len(audio) // block
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * block].reshape(n, block) ** 2, axis=1))
    loud = np.flatnonzero(rms >= _SILENCE_RMS)
    start = (int(loud[0]) * block - _LEAD_SILENCE_KEEP) if len(loud) else 0
    return audio[max(0, start):]


@dataclass
class SpeechRequest:
    utterance_id: str
    text: str
    voice: Voice | None = None         # None: chosen from each sentence's script
    audio: np.ndarray | None = None    # pre-decoded audio (an upload) instead of text
    source: str = "say"


class SpeechQueue:
    def __init__(
        self,
        tts: TtsService,
        sink: Callable[[Clip], None],
        on_error: Callable[[str, str], None],
        max_queued: int = 100,
    ) -> None:
        self.tts = tts
        self.sink = sink              # hands a clip to the engine (the session's worker)
        self.on_error = on_error      # (utterance id, message)
        self.max_queued = max_queued
        self._queue: asyncio.Queue[SpeechRequest] = asyncio.Queue()
        self._generation = 0
        self._task: asyncio.Task | None = None
        self._speaking: asyncio.Future | None = None   # the request being synthesised now
        self.synthesis_s: list[float] = []   # time to synthesise each first sentence (stats)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="speech-queue")

    def check(self, text: str, voice: str | None = None) -> tuple[str, Voice | None]:
        """(cleaned text, voice); raises TtsError for text with nothing speakable, an unknown
        voice or a full queue -- now, so the caller gets a 400, not a later event."""
        checked = self.tts.check(text, voice)
        if self._queue.qsize() >= self.max_queued:
            raise TtsError(f"too many queued requests (max {self.max_queued}); interrupt first")
        return checked

    def say(self, text: str, voice: str | None = None) -> SpeechRequest:
        """Queue text; raises TtsError at once for an unknown voice or nothing to say."""
        return self.say_checked(*self.check(text, voice))

    def say_checked(self, clean: str, voice: Voice | None) -> SpeechRequest:
        """Queue what ``check`` already accepted, without looking the voice up again."""
        return self._put(SpeechRequest(new_utterance_id(), clean, voice))

    def play(self, audio: np.ndarray, label: str) -> SpeechRequest:
        if not len(audio):
            raise TtsError("audio is empty")
        return self._put(SpeechRequest(new_utterance_id(), label, audio=audio, source="audio"))

    def interrupt(self) -> list[SpeechRequest]:
        """Forget every queued request and the synthesis in flight; returns the dropped requests."""
        self._generation += 1
        if self._speaking is not None:
            # Stop waiting for it: a remote stream's connection closes now, and a hung TTS server
            # can't hold up what is said next.  (An ONNX call in a thread finishes unseen.)
            self._speaking.cancel()
        dropped = []
        while not self._queue.empty():
            dropped.append(self._queue.get_nowait())
        return dropped

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def close(self) -> None:
        self.interrupt()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def _put(self, req: SpeechRequest) -> SpeechRequest:
        if self._queue.qsize() >= self.max_queued:
            raise TtsError(f"too many queued requests (max {self.max_queued}); interrupt first")
        self._queue.put_nowait(req)
        return req

    async def _run(self) -> None:
        while True:
            req = await self._queue.get()
            generation = self._generation
            speaking = self._speaking = asyncio.ensure_future(self._speak(req, generation))
            try:
                await asyncio.wait([speaking])
            finally:
                self._speaking = None
                speaking.cancel()       # only if the queue itself was cancelled (close)
            if speaking.cancelled():
                continue                # interrupted
            error = speaking.exception()
            if error is None:
                continue
            if not isinstance(error, TtsError):   # an engine bug must not kill the session's queue
                log.error("speech synthesis failed", exc_info=error)
                error = TtsError("speech synthesis failed (details in the server log)")
            if generation == self._generation:
                self.on_error(req.utterance_id, str(error))

    async def _speak(self, req: SpeechRequest, generation: int) -> None:
        if req.audio is not None:
            self.sink(Clip(req.utterance_id, req.audio, req.text, first=True, last=True))
            return
        sentences = split_sentences(req.text)
        sent_any = False
        try:
            for sentence in sentences:
                t0 = asyncio.get_running_loop().time()
                # A local voice yields the sentence once; a remote one yields its audio as it
                # arrives, each chunk queued at once (the utterance's end follows as an empty clip).
                async with contextlib.aclosing(self.tts.stream(sentence, req.voice)) as chunks:
                    async for audio in chunks:
                        if generation != self._generation:
                            return  # interrupted while synthesising: drop it (and close a remote stream)
                        if not sent_any:
                            self.synthesis_s.append(asyncio.get_running_loop().time() - t0)
                            del self.synthesis_s[:-50]
                            audio = trim_leading_silence(audio)
                        self.sink(Clip(req.utterance_id, audio, req.text, first=not sent_any, last=False))
                        sent_any = True
            if sent_any:
                self.sink(Clip(req.utterance_id, np.zeros(0, np.float32), req.text, first=False, last=True))
        except TtsError:
            if sent_any and generation == self._generation:
                # Close the utterance that is already playing, so its end is still reported.
                self.sink(Clip(req.utterance_id, np.zeros(0, np.float32), req.text, first=False, last=True))
            raise
