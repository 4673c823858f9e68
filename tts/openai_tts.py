"""Voices from any OpenAI-compatible TTS server (``POST /v1/audio/speech``), streamed.

OpenAI, Kokoro-FastAPI, CosyVoice and many other servers speak the same request:
``{"model", "input", "voice", "response_format"}`` -> audio bytes, sent as they
are synthesised.  ``OpenAiTts`` is one such server as a lipstream engine: its
voices are ``openai:<voice>``; ``stream`` yields 16 kHz audio while the response
is still arriving, so the avatar starts talking on the first chunk.

* The answer is asked for as ``pcm`` (24 kHz s16le mono, OpenAI's streaming
  format) or ``wav``; a server that sends WAV when asked for PCM is understood,
  one that sends mp3/ogg/flac gets a clear error (``response_format`` is theirs
  to honour).
* Every failure -- an HTTP error with the server's own message, a refused
  connection, a timeout, a wrong content type, bytes that are no audio -- is a
  ``SpeechError`` whose message says what happened and is safe to show a client:
  the API key never appears in it (nor in logs or ``repr``).
* A voice name is a short string of letters, digits and ``_ . + - ( )`` (Kokoro
  mixes voices as ``af_bella+af_sky``; CosyVoice names speakers in Chinese).  It
  goes into the JSON body, never into a URL.  Any such name is accepted: the
  server decides which voices exist, and says so in its error.
* The listed voices are the operator's (``voices``), else what the server lists
  at ``GET /v1/audio/voices`` (Kokoro, and the test server, answer there), else
  OpenAI's own names.

The live server streams on its event loop with one pooled aiohttp session (a
slow TTS server occupies no thread); the studio calls ``synthesize`` from a
worker thread, which runs the same code on a private event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import numpy as np

from models.audio.audio_io import AudioDecodeError
from models.audio.pcm import SAMPLE_RATE
from models.audio.pcm_stream import PcmFormat, PcmStream, WavStream
from tts.alignment import SpeechError

log = logging.getLogger(__name__)

ENGINE = "openai"
FORMATS = ("pcm", "wav")
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")
MAX_VOICE_NAME = 48
MAX_LISTED_VOICES = 200
_VOICE_NAME = re.compile(r"[\w.+\-()]+")
_MODEL_NAME = re.compile(r"[\w.:/\-]{1,100}")
FIRST_CHUNK_S = 0.1          # the first audio is handed on this soon (the avatar starts talking) ...
CHUNK_S = 0.4                # ... later audio in larger pieces (fewer clips for the engine)
MAX_RESPONSE_BYTES = 64 << 20   # ~11 min of 24 kHz PCM: a runaway response is cut off
_AUDIO_TYPES = ("audio/", "application/octet-stream", "binary/octet-stream")
_WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")
_PCM_TYPES = ("audio/pcm", "audio/l16", "audio/raw", "audio/basic")
# Containers a server may send instead of what was asked for, by their first bytes.
_OTHER_CONTAINERS = ((b"ID3", "mp3"), (b"\xff\xfb", "mp3"), (b"\xff\xf3", "mp3"), (b"\xff\xf2", "mp3"),
                     (b"OggS", "ogg"), (b"fLaC", "flac"), (b"\x1aE\xdf\xa3", "webm"))


@dataclass(frozen=True)
class OpenAiTtsSettings:
    """An operator's OpenAI-compatible TTS server (``run_live.py --openai-tts-url ...``)."""

    url: str                              # http(s)://host[:port][/prefix][/v1]
    model: str = "tts-1"
    key: str | None = field(default=None, repr=False)   # sent as a bearer token; never shown
    voices: tuple[str, ...] = ()          # listed voices; () = ask the server, else OpenAI's names
    response_format: str = "pcm"          # "pcm" (24 kHz s16le) or "wav"
    pcm_rate: int = 24_000                # the rate of "pcm" answers (OpenAI: 24 kHz)
    timeout_s: float = 30.0               # to connect, to the first byte, and between two reads

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", speech_url(self.url))
        if self.response_format not in FORMATS:
            raise ValueError(f"response format must be one of {', '.join(FORMATS)}, got {self.response_format!r}")
        if not _MODEL_NAME.fullmatch(self.model):
            raise ValueError(f"TTS model name {self.model[:40]!r} is not a model name")
        if not 0 < self.timeout_s <= 600:
            raise ValueError(f"TTS timeout must be between 0 and 600 s, got {self.timeout_s}")
        if self.key is not None and (not self.key.isprintable() or not self.key.strip()):
            raise ValueError("the TTS API key must be printable text")
        for v in self.voices:
            check_voice_name(v)
        PcmFormat(self.pcm_rate)

    @property
    def voices_url(self) -> str:
        return self.url.removesuffix("/speech") + "/voices"


def speech_url(url: str) -> str:
    """The speech endpoint for a server URL given with or without ``/v1`` (or the full path)."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("the TTS URL is empty")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the TTS URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise ValueError("put the TTS API key in --openai-tts-key, not in the URL")
    if parts.query or parts.fragment:
        raise ValueError("the TTS URL must not have a query or fragment")
    path = parts.path.rstrip("/")
    if path.endswith("/audio/speech"):
        pass
    elif path.endswith("/v1"):
        path += "/audio/speech"
    else:
        path += "/v1/audio/speech"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def check_voice_name(name: object) -> str:
    """A well-formed remote voice name, or SpeechError saying why not."""
    if not isinstance(name, str) or not name:
        raise SpeechError("an openai voice needs a name: openai:<voice>")
    if len(name) > MAX_VOICE_NAME:
        raise SpeechError(f"openai voice name is too long ({len(name)} characters, at most {MAX_VOICE_NAME})")
    if not _VOICE_NAME.fullmatch(name):
        raise SpeechError("an openai voice name has letters, digits and _ . + - ( ) only")
    return name


def _clean(text: str, limit: int = 200) -> str:
    """A server's message, made safe to pass on: printable, one line, short."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def _server_message(body: bytes, content_type: str) -> str:
    """The message of an OpenAI-style error body ({"error": {"message"}}), FastAPI's {"detail"}, or text."""
    text = body[:4096].decode("utf-8", "replace")
    if "json" in content_type or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            err = data.get("error", data.get("detail", data.get("message")))
            if isinstance(err, dict):
                err = err.get("message", err.get("detail"))
            if isinstance(err, list) and err and isinstance(err[0], dict):   # FastAPI validation errors
                err = err[0].get("msg")
            if isinstance(err, str):
                return _clean(err)
    if "html" in content_type:
        return ""
    return _clean(text)


class OpenAiTts:
    """One OpenAI-compatible server as the ``openai`` engine (see the module docstring)."""

    engine = ENGINE

    def __init__(self, settings: OpenAiTtsSettings) -> None:
        self.settings = settings
        self._listed: tuple[str, ...] = settings.voices or OPENAI_VOICES
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"OpenAiTts({self.settings.url!r}, model={self.settings.model!r})"

    # -- voices -------------------------------------------------------------------------

    def listed_voices(self) -> tuple[str, ...]:
        return self._listed

    def check_voice(self, name: str) -> str:
        return check_voice_name(name)

    async def discover(self) -> tuple[str, ...]:
        """Ask the server for its voices (``GET .../audio/voices``) unless the operator listed them.

        A server without that route keeps OpenAI's names; nothing fails.
        """
        if self.settings.voices:
            return self._listed
        timeout = aiohttp.ClientTimeout(total=min(10.0, self.settings.timeout_s))
        try:
            async with self._client() as session:
                async with session.get(self.settings.voices_url, headers=self._headers(), timeout=timeout) as resp:
                    if resp.status != 200:
                        return self._listed
                    data = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as e:
            log.info("the TTS server lists no voices (%s); offering OpenAI's voice names", type(e).__name__)
            return self._listed
        names = data.get("voices") if isinstance(data, dict) else data
        found: list[str] = []
        for item in names if isinstance(names, list) else []:
            name = item.get("id", item.get("name")) if isinstance(item, dict) else item
            try:
                found.append(check_voice_name(name))
            except SpeechError:
                continue
        if found:
            self._listed = tuple(dict.fromkeys(found))[:MAX_LISTED_VOICES]
        return self._listed

    # -- synthesis ------------------------------------------------------------------------

    def synthesize(self, text: str, voice: str) -> np.ndarray:
        """Blocking (a worker thread, no running event loop): the whole answer, 16 kHz float32."""
        async def collect() -> np.ndarray:
            parts = [chunk async for chunk in self._stream(text, voice, private=True)]
            return np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return asyncio.run(collect())

    def stream(self, text: str, voice: str) -> AsyncIterator[np.ndarray]:
        """16 kHz mono float32 chunks of ``text`` spoken by ``voice``, while the response arrives.

        The first chunk comes as soon as ``FIRST_CHUNK_S`` of audio is in, later ones
        every ``CHUNK_S``; SpeechError for anything but audio.
        """
        return self._stream(text, voice, private=False)

    async def _stream(self, text: str, voice: str, private: bool) -> AsyncIterator[np.ndarray]:
        check_voice_name(voice)
        s = self.settings
        body = {"model": s.model, "input": text, "voice": voice, "response_format": s.response_format}
        timeout = aiohttp.ClientTimeout(total=None, connect=s.timeout_s, sock_read=s.timeout_s)
        deadline = time.monotonic() + max(60.0, 4 * s.timeout_s)
        try:
            async with self._client(private) as session:
                async with session.post(s.url, json=body, headers=self._headers(), timeout=timeout) as resp:
                    ctype = await self._check_response(resp)
                    async for chunk in self._decode(resp, ctype, deadline):
                        yield chunk
        except SpeechError:
            raise
        except asyncio.TimeoutError:
            raise SpeechError(f"the TTS server did not answer within {s.timeout_s:g} s") from None
        except aiohttp.ClientConnectorError as e:
            log.warning("TTS server %s unreachable: %s", self._host(), e.os_error)
            raise SpeechError("cannot reach the TTS server (connection failed; details in the server log)") from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
            raise SpeechError("the TTS server closed the connection in the middle of the audio") from None
        except aiohttp.ClientError as e:
            log.warning("TTS request to %s failed: %s", self._host(), type(e).__name__)
            raise SpeechError(f"the TTS request failed ({type(e).__name__})") from None

    async def _check_response(self, resp: aiohttp.ClientResponse) -> str:
        """The audio's content type; SpeechError for an HTTP error or an answer that is no audio."""
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if resp.status >= 400:
            message = self._redact(_server_message(await resp.content.read(4096), ctype))
            what = {401: "refused the API key", 403: "refused access", 404: "has no such model or route",
                    429: "is rate-limiting us"}.get(resp.status, "answered with an error")
            raise SpeechError(f"the TTS server {what} (HTTP {resp.status})" + (f": {message}" if message else ""))
        if resp.status != 200:
            raise SpeechError(f"the TTS server answered HTTP {resp.status}, not audio")
        if ctype and not ctype.startswith(_AUDIO_TYPES):
            detail = ""
            if ctype.startswith(("text/", "application/json")):
                detail = self._redact(_server_message(await resp.content.read(4096), ctype))
            raise SpeechError(f"the TTS server answered with {_clean(ctype, 60)}, not audio"
                              + (f": {detail}" if detail else ""))
        if ctype.startswith("audio/") and not ctype.startswith(_WAV_TYPES + _PCM_TYPES):
            raise SpeechError(f"the TTS server sent {_clean(ctype, 60)}; lipstream asks for "
                              f"{self.settings.response_format} (check the server's response_format support)")
        return ctype

    async def _decode(self, resp: aiohttp.ClientResponse, ctype: str, deadline: float) -> AsyncIterator[np.ndarray]:
        decoder: PcmStream | WavStream | None = None
        pending: list[np.ndarray] = []
        have, total, first = 0, 0, True
        try:
            async for data in resp.content.iter_any():
                total += len(data)
                if total > MAX_RESPONSE_BYTES:
                    raise SpeechError(f"the TTS answer is too long (over {MAX_RESPONSE_BYTES >> 20} MB)")
                if time.monotonic() > deadline:
                    raise SpeechError("the TTS server is sending its answer too slowly")
                if decoder is None:
                    decoder = self._decoder_for(data, ctype)
                out = decoder.push(data)
                if len(out):
                    pending.append(out)
                    have += len(out)
                if have >= (FIRST_CHUNK_S if first else CHUNK_S) * SAMPLE_RATE:
                    yield np.concatenate(pending)
                    pending, have, first = [], 0, False
            if decoder is None:
                raise SpeechError("the TTS server returned no audio")
            pending.append(decoder.flush())
        except AudioDecodeError as e:
            raise SpeechError(f"the TTS server's audio is not readable: {e}") from None
        if isinstance(decoder, PcmStream) and decoder.partial_bytes:
            log.info("TTS answer ended in the middle of a sample (%d stray bytes)", decoder.partial_bytes)
        tail = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        if first and not len(tail):
            raise SpeechError("the TTS server returned no audio")
        if len(tail):
            yield tail

    def _decoder_for(self, head: bytes, ctype: str) -> PcmStream | WavStream:
        """WAV if it says so (some servers ignore "pcm"), raw PCM if asked for, else an error."""
        if head.startswith(b"RIFF") or ctype.startswith(_WAV_TYPES):
            return WavStream()          # raises "not a WAV file" on anything else
        for magic, name in _OTHER_CONTAINERS:
            if head.startswith(magic):
                raise SpeechError(f"the TTS server sent {name} audio; lipstream asks for "
                                  f"{self.settings.response_format} (check the server's response_format support)")
        if self.settings.response_format == "wav":
            return WavStream()      # raises "not a WAV file" on the first bytes
        if head.lstrip()[:1] in (b"{", b"<"):
            raise SpeechError("the TTS server sent text, not audio")
        return PcmStream(PcmFormat(self.settings.pcm_rate))

    # -- plumbing ---------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "audio/*, application/octet-stream"}
        if self.settings.key:
            headers["Authorization"] = f"Bearer {self.settings.key}"
        return headers

    def _redact(self, message: str) -> str:
        key = self.settings.key
        return message.replace(key, "***") if key and len(key) >= 4 else message

    def _host(self) -> str:
        return urlsplit(self.settings.url).netloc

    def _client(self, private: bool = False) -> "_Client":
        return _Client(self, private)

    async def close(self) -> None:
        """Close the pooled connections (the live server, at shutdown)."""
        session, self._session, self._loop = self._session, None, None
        if session is not None and not session.closed:
            await session.close()


class _Client:
    """The pooled session of the loop that streams (the live server's); a private one for
    ``synthesize``, whose worker thread runs a short-lived loop of its own."""

    def __init__(self, owner: OpenAiTts, private: bool) -> None:
        self.owner = owner
        self.private: aiohttp.ClientSession | None = aiohttp.ClientSession() if private else None

    async def __aenter__(self) -> aiohttp.ClientSession:
        if self.private is not None:
            return self.private
        owner, loop = self.owner, asyncio.get_running_loop()
        if owner._session is None or owner._session.closed or owner._loop is not loop:
            owner._session, owner._loop = aiohttp.ClientSession(), loop
        return owner._session

    async def __aexit__(self, *exc) -> None:
        if self.private is not None:
            await self.private.close()


def remote_engines(settings: OpenAiTtsSettings | None) -> tuple[OpenAiTts, ...]:
    """The remote engines for a server's settings (none without a URL)."""
    return (OpenAiTts(settings),) if settings is not None else ()


def parse_voices(text: str | None) -> tuple[str, ...]:
    """``--openai-tts-voices a,b,c`` -> ("a", "b", "c"), each checked."""
    if not text:
        return ()
    try:
        return tuple(check_voice_name(v.strip()) for v in text.split(",") if v.strip())
    except SpeechError as e:
        raise ValueError(str(e)) from None

