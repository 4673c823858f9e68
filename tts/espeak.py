"""espeak-ng (formant synthesis) through its C library, with exact phone times.

The library comes from the PyPI package ``espeakng-loader`` (library + data,
no system install).  Phone times come from the library's own phoneme events
(``espeakEVENT_PHONEME``), each stamped with the output sample at which that
phoneme starts, so they are exact by construction -- with one convention
fixed up here: a voiceless stop's event marks its release, and its silent
closure is moved from the previous phone to the stop (``_move_closures``).

Alphabet: IPA as espeak writes it (events initialised with
``espeakINITIALIZE_PHONEME_IPA``), one phone per espeak phoneme -- so
diphthongs and affricates are single phones (``oʊ``, ``tʃ``).  Stress marks
are removed, and so are espeak's ``.``, ``-`` and ``"`` annotations (e.g. the
retroflex mark of ``s.`` in its Chinese IPA) and language-switch markers
(``(en)``).  Pauses are ``""``.

Voices: ``<language>[+<variant>]``, e.g. ``en-us``, ``en-gb+f3``, ``cmn``,
``yue``, ``es``, ``de+m2``; ``voices()`` lists the languages, ``variants()`` the
variants.  A voice name reaches ``espeak_SetVoiceByName`` only once
``check_voice`` found it in those lists: the library copies a variant name into
a fixed 40-byte buffer and aborts the whole process when it is longer, and
silently ignores variants it doesn't know.

Thread/process safety: the library keeps global state (one voice, one set of
parameters, one callback), so every call holds a module lock -- calls from
several threads (the live server's executor) are safe but serialised.  Each
process has its own copy of the library; for parallel synthesis use
processes.  It is ~500x faster than real time, so the lock rarely matters.
"""

from __future__ import annotations

import ctypes
import functools
import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.mouth.phonemes import AlignedUtterance
from tts.alignment import (
    PAUSE,
    EngineUnavailable,
    RawPhone,
    SpeechError,
    build_utterance,
    check_range,
    check_text,
    to_16k,
)

ENGINE = "espeak"
DEFAULT_VOICE = "en-us"

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),  # output sample index where the event happens
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class _Capture:
    """What the callback collects during one espeak_Synth call."""

    audio: list[np.ndarray]
    phonemes: list[tuple[int, str]]  # (start sample, IPA)


class _Library:
    """The loaded, initialised espeak-ng library (one per process)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise EngineUnavailable("espeak needs the PyPI package espeakng-loader") from e
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        data_parent = str(Path(espeakng_loader.get_data_path()).parent).encode()
        self.data_dir = Path(espeakng_loader.get_data_path())
        rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent, _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT
        )
        if rate <= 0:
            raise EngineUnavailable(f"espeak-ng failed to initialise with data in {self.data_dir}")
        self.sample_rate = int(rate)
        self.capture: _Capture | None = None
        self._callback = _Callback(self._on_audio)  # keep a reference: C holds only the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, n: int, events) -> int:
        cap = self.capture
        if cap is None:
            return 0
        if n > 0 and wav:
            cap.audio.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                cap.phonemes.append((int(ev.sample), name))
            i += 1
        return 0


_lock = threading.Lock()
_library: _Library | None = None


def _get_library() -> _Library:
    global _library
    if _library is None:
        _library = _Library()
    return _library


def available() -> bool:
    try:
        with _lock:
            _get_library()
        return True
    except (EngineUnavailable, OSError):
        return False


def _data_dir() -> Path | None:
    try:
        import espeakng_loader
    except ImportError:
        return None
    return Path(espeakng_loader.get_data_path())


@functools.cache
def voices() -> tuple[str, ...]:
    """Language voice names of the bundled espeak-ng data that can speak (e.g. 'en-us', 'cmn').

    Languages whose pronunciation dictionary is not shipped (a few test voices)
    are left out: they produce no phones.
    """
    data = _data_dir()
    if data is None:
        return ()
    # File names are BCP-47-ish ("en-US"); espeak matches voice names case-insensitively.
    return tuple(sorted(p.name.lower() for p in (data / "lang").rglob("*")
                        if p.is_file() and (data / f"{_dictionary(p)}_dict").is_file()))


def _dictionary(lang_file: Path) -> str:
    """The dictionary a language file uses: its ``dictionary`` line, else its language code."""
    for line in lang_file.read_text(encoding="latin-1").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "dictionary":
            return words[1]
    return lang_file.name.split("-", 1)[0].lower()


_VARIANT_NAME = re.compile(r"[A-Za-z0-9_]{1,20}")


@functools.cache
def variants() -> dict[str, str]:
    """Voice variants (``+m3``, ``+f2``, ``+klatt`` ...): lower-case name -> the file's own name.

    espeak opens the variant file by name, so the library gets the file's own
    spelling; names with spaces or other characters are not offered.
    """
    data = _data_dir()
    if data is None:
        return {}
    files = sorted(p.name for p in (data / "voices" / "!v").glob("*") if p.is_file())
    return {name.lower(): name for name in files if _VARIANT_NAME.fullmatch(name)}


def check_voice(voice: object) -> str:
    """``<language>[+<variant>]`` as espeak must be given it; SpeechError unless both exist."""
    if not isinstance(voice, str) or len(voice) > 64:
        raise SpeechError("bad espeak voice name (a language such as 'en-us', optionally '+f3')")
    language, plus, variant = voice.partition("+")
    language = language.lower()
    if language not in voices():
        raise SpeechError(f"unknown espeak voice {voice!r} (e.g. 'en-us', 'en-us+f3', 'cmn'; see tts.espeak.voices())")
    if not plus:
        return language
    real = variants().get(variant.lower())
    if real is None:
        raise SpeechError(f"unknown espeak voice variant {variant!r} (e.g. 'm3', 'f2'; see tts.espeak.variants())")
    return f"{language}+{real}"


def clean_ipa(name: str) -> str:
    """espeak's IPA event name -> our phone symbol (stress and '.' removed)."""
    if name.startswith("(") and name.endswith(")"):
        return ""  # a language switch marker such as "(en)", not a sound
    return re.sub(r'[ˈˌ.\-"]', "", name).strip()


def synthesize_aligned(
    text: str,
    voice: str = DEFAULT_VOICE,
    *,
    rate: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    word_gap: int = 0,
) -> AlignedUtterance:
    """Speech for ``text`` with exact IPA phone spans.

    rate: words per minute (80-450); pitch, pitch_range: 0-100 (50 = the voice's
    normal); word_gap: extra pause between words in units of 10 ms.
    """
    text = check_text(text)
    voice = check_voice(voice)
    params = {
        _RATE: int(check_range("rate", rate, 80, 450)),
        _PITCH: int(check_range("pitch", pitch, 0, 100)),
        _RANGE: int(check_range("pitch_range", pitch_range, 0, 100)),
        _WORDGAP: int(check_range("word_gap", word_gap, 0, 100)),
        _VOLUME: 100,
    }
    with _lock:
        lib = _get_library()
        if lib.lib.espeak_SetVoiceByName(voice.encode("ascii")) != 0:
            raise SpeechError(f"espeak-ng could not load voice {voice!r}")
        for key, value in params.items():
            lib.lib.espeak_SetParameter(key, value, 0)
        cap = _Capture(audio=[], phonemes=[])
        lib.capture = cap
        data = text.encode("utf-8") + b"\0"
        try:
            err = lib.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        finally:
            lib.capture = None
        sample_rate = lib.sample_rate
    if err != 0:
        raise SpeechError(f"espeak-ng failed (error {err}) on {text[:60]!r}")
    if not cap.audio:
        raise SpeechError(f"espeak-ng produced no audio for {text[:60]!r}")
    audio = np.concatenate(cap.audio)
    raw = _events_to_phones(cap.phonemes, audio, sample_rate)
    language = voice.split("+", 1)[0]
    return build_utterance(
        to_16k(audio, sample_rate),
        raw,
        text=text,
        source=f"{ENGINE}/{voice}",
        language=language,
        alphabet="ipa",
        meta={"rate": rate, "pitch": pitch, "pitch_range": pitch_range, "word_gap": word_gap},
    )


def _events_to_phones(events: list[tuple[int, str]], audio: np.ndarray, sample_rate: int) -> list[RawPhone]:
    """Phoneme start events -> spans, folding what is not a phone of its own.

    * modifier-only names (``ʲ``, ``ʰ``, ``ː``) lengthen/colour the previous phone;
    * an unnamed event is a pause only if its audio is (near) silent: espeak
      also emits unnamed *voiced* transition phonemes inside words (e.g. in
      Russian clusters), which belong to the phone before them.
    """
    n = len(audio)
    starts = [min(s, n) for s, _ in events] + [n]
    level = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) + 1e-9
    out: list[list] = []  # [phone, start_sample, end_sample]
    for i, (_, name) in enumerate(events):
        s, e = starts[i], starts[i + 1]
        if e <= s:
            continue
        phone = clean_ipa(name)
        prev_is_phone = bool(out) and out[-1][0] != PAUSE and out[-1][2] == s
        if phone and is_modifier(phone) and prev_is_phone:
            out[-1][0] += phone
            out[-1][2] = e
            continue
        if not phone and prev_is_phone:
            rms = float(np.sqrt(np.mean(np.square(audio[s:e], dtype=np.float64))))
            if rms > 0.05 * level:
                out[-1][2] = e
                continue
        out.append([phone or PAUSE, s, e])
    _move_closures(out, audio, sample_rate)
    return [RawPhone(p, s / sample_rate, e / sample_rate) for p, s, e in out]


def _move_closures(spans: list[list], audio: np.ndarray, sample_rate: int) -> None:
    """Give a stop its closure.

    espeak fires a voiceless stop's phoneme event at the *release*; the silent
    closure before it (30-50 ms of digital silence) is rendered at the end of
    the previous phone.  The lips close at the start of that silence, so the
    boundary moves back to where the silence begins (never more than 150 ms,
    and the previous phone keeps at least 20 ms).
    """
    block = max(1, sample_rate // 500)  # 2 ms
    quiet = 30 if audio.dtype == np.int16 else 30 / 32768  # about -60 dBFS
    for prev, cur in zip(spans, spans[1:]):
        if prev[0] == PAUSE or cur[0] == PAUSE or prev[2] != cur[1]:
            continue
        limit = max(prev[1] + sample_rate // 50, cur[1] - int(0.150 * sample_rate))
        b = cur[1]
        while b - block >= limit and np.abs(audio[b - block : b]).max() <= quiet:
            b -= block
        if cur[1] - b >= sample_rate // 100:  # at least 10 ms of silence
            prev[2] = cur[1] = b


def is_modifier(symbol: str) -> bool:
    """Only modifier letters/combining marks (palatalisation, aspiration, length)."""
    return all(unicodedata.category(c) in ("Lm", "Mn") for c in symbol)


def synthesize(text: str, voice: str = DEFAULT_VOICE, **params) -> np.ndarray:
    return synthesize_aligned(text, voice, **params).audio
