"""Phones → visemes → per-frame mouth targets: the labels the mouth model learns.

Every speech source in the project names its phones in its own alphabet: piper and
espeak speak IPA, flite/festival lowercase ARPAbet, pocketsphinx uppercase ARPAbet
with stress digits, MBROLA SAMPA, espeak's own ASCII mnemonics.  All of them are
folded here onto the fifteen visemes of ``models.mouth.mouth_shape.VISEMES``.

A phone may map to more than one viseme: a diphthong (/aɪ/, ARPAbet AY) moves the
mouth from one shape to another, so its span is split between its parts.  An
unknown symbol never raises: it is mapped by the class of its first letter (or to
``sil``) and counted in ``UNKNOWN_PHONES`` so a corpus build can report it.

``frame_targets`` turns timed phones into what the network is trained on: a hard
viseme label and a smooth (openness, width, rounding) target per frame.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from models.mouth.mouth_shape import N_VISEMES, VISEMES
from models.mouth.phonemes import PhoneSpan

log = logging.getLogger(__name__)

V = {name: i for i, name in enumerate(VISEMES)}
SIL, PP = V["sil"], V["PP"]

# --------------------------------------------------------------------------- shapes
# Widths are chosen per viseme; rounding is *derived* from width with the same
# formulas ``models.avatar.face_landmarks.mouth_features`` uses to measure an avatar's
# frames (both are functions of the lip-corner distance r/s: width = (r-0.55)/0.15,
# rounding = (0.50-r)/0.12), so a predicted shape is one a real face can make.
_OPEN_WIDTH: dict[str, tuple[float, float]] = {
    "sil": (0.00, 0.00),
    "PP": (0.00, -0.10),   # lips pressed together: openness exactly 0
    "FF": (0.10, 0.00),    # lower lip under the upper teeth
    "TH": (0.22, 0.10),
    "DD": (0.22, 0.15),
    "kk": (0.30, 0.05),
    "CH": (0.18, -0.55),   # /ʃ tʃ/ are protruded
    "SS": (0.12, 0.35),
    "nn": (0.20, 0.10),
    "RR": (0.22, -0.50),
    "aa": (0.70, 0.10),
    "E": (0.48, 0.35),
    "ih": (0.28, 0.60),
    "oh": (0.55, -0.55),
    "ou": (0.22, -0.95),
}


def rounding_from_width(width: float | np.ndarray) -> float | np.ndarray:
    r = 0.55 + 0.15 * np.asarray(width, dtype=np.float64)
    return np.clip((0.50 - r) / 0.12, 0.0, 1.0)


VISEME_SHAPES = np.array(
    [[o, w, float(rounding_from_width(w))] for o, w in (_OPEN_WIDTH[v] for v in VISEMES)],
    dtype=np.float32,
)
"""(15, 3) target (openness, width, rounding) of each viseme."""

# Five coarse groups for evaluation: what a viewer can tell apart at a glance.
COARSE_GROUPS: tuple[str, ...] = ("closed", "labiodental", "open", "spread", "rounded")
_COARSE = {
    "sil": "closed", "PP": "closed", "FF": "labiodental",
    "TH": "open", "DD": "open", "kk": "open", "nn": "open", "aa": "open", "E": "open",
    "ih": "spread", "SS": "spread",
    "CH": "rounded", "RR": "rounded", "oh": "rounded", "ou": "rounded",
}
COARSE_OF_VISEME = np.array([COARSE_GROUPS.index(_COARSE[v]) for v in VISEMES], dtype=np.int64)

# --------------------------------------------------------------------------- tables
# IPA, one symbol per articulation.  Affricates and common digraphs are listed as
# multi-character keys so that the longest-match parser keeps them whole.
_IPA: dict[str, str] = {}
for _chars, _vis in [
    ("pbmɸβɓʙ", "PP"),
    ("fvɱʋ", "FF"),
    ("θð", "TH"),
    ("tdʈɖɗɾɽ", "DD"),
    ("kgɡqɢcɟŋɴxɣχʁħʕɠʛɧ", "kk"),
    ("hɦʔ", "h"),
    ("ʃʒʂʐɕʑçʝ", "CH"),
    ("sz", "SS"),
    ("nɲɳlɫɭʎʟɬɮ", "nn"),
    ("rɹɻʀɺ", "RR"),
    ("aɑɐäæʌɒ", "aa"),
    ("eɛəɘɜɞœɶøɤ", "E"),
    ("iɪɨᵻyʏjɥ", "ih"),
    ("oɔɵ", "oh"),
    ("uʊɯʉwʍ", "ou"),
    ("ɚɝ", "RR"),
]:
    for _c in _chars:
        _IPA[_c] = _vis
_IPA.update({
    "tʃ": "CH", "dʒ": "CH", "ʧ": "CH", "ʤ": "CH", "ts": "SS", "dz": "SS", "ʦ": "SS", "ʣ": "SS",
    "tɕ": "CH", "dʑ": "CH", "ʨ": "CH", "ʥ": "CH", "ʈʂ": "CH", "ɖʐ": "CH", "pf": "FF",
})

# ARPAbet (CMU dict, flite/festival lowercase, pocketsphinx uppercase + stress digits).
_ARPABET: dict[str, tuple[str, ...]] = {
    "AA": ("aa",), "AE": ("aa",), "AH": ("aa",), "AO": ("oh",), "AX": ("E",), "IX": ("ih",),
    "AW": ("aa", "ou"), "AY": ("aa", "ih"), "EY": ("E", "ih"), "OW": ("oh", "ou"), "OY": ("oh", "ih"),
    "EH": ("E",), "ER": ("RR",), "AXR": ("RR",), "IH": ("ih",), "IY": ("ih",),
    "UH": ("ou",), "UW": ("ou",), "UX": ("ou",),
    "B": ("PP",), "P": ("PP",), "M": ("PP",), "EM": ("PP",),
    "F": ("FF",), "V": ("FF",), "TH": ("TH",), "DH": ("TH",),
    "T": ("DD",), "D": ("DD",), "DX": ("DD",), "K": ("kk",), "G": ("kk",), "NG": ("kk",),
    "ENG": ("kk",), "NX": ("nn",), "HH": ("h",), "H": ("h",), "Q": ("h",),
    "CH": ("CH",), "JH": ("CH",), "SH": ("CH",), "ZH": ("CH",), "S": ("SS",), "Z": ("SS",),
    "N": ("nn",), "EN": ("nn",), "L": ("nn",), "EL": ("nn",), "R": ("RR",),
    "W": ("ou",), "WH": ("ou",), "Y": ("ih",),
}
_ARPABET_SILENCE = {"", "PAU", "SIL", "SP", "SPN", "NSN", "H#", "SSIL", "BRTH", "#", "_"}

# SAMPA (MBROLA voices) and espeak's ASCII phoneme mnemonics, which share most symbols.
_SAMPA: dict[str, str] = {
    "p": "PP", "b": "PP", "m": "PP", "f": "FF", "v": "FF", "T": "TH", "D": "TH",
    "t": "DD", "d": "DD", "4": "DD", "k": "kk", "g": "kk", "N": "kk", "x": "kk", "G": "kk",
    "?": "h", "h": "h", "S": "CH", "Z": "CH", "C": "CH", "tS": "CH", "dZ": "CH", "s": "SS",
    "z": "SS", "ts": "SS", "n": "nn", "l": "nn", "L": "nn", "J": "nn", "5": "nn", "r": "RR",
    "R": "RR", "r=": "RR", "3`": "RR", "@`": "RR", "3": "E", "w": "ou", "j": "ih",
    "a": "aa", "A": "aa", "{": "aa", "V": "aa", "6": "aa", "Q": "aa", "0": "aa",
    "E": "E", "e": "E", "@": "E", "2": "E", "9": "E", "I": "ih", "i": "ih", "y": "ih",
    "Y": "ih", "o": "oh", "O": "oh", "U": "ou", "u": "ou", "}": "ou", "M": "ou",
}
_SAMPA_SILENCE = {"", "_", "#", "_:", "_!", "%", "pau", "sil"}

_TRANSPARENT = "h"  # /h/ and glottal stops take the shape of the sound that follows them

# Fallback for symbols no table knows: the class of the (ASCII-folded) first letter.
_FIRST_LETTER: dict[str, str] = {
    **{c: "PP" for c in "bpm"}, **{c: "FF" for c in "fv"}, **{c: "DD" for c in "td"},
    **{c: "kk" for c in "kgqcxh"}, **{c: "SS" for c in "sz"}, **{c: "nn" for c in "nl"},
    "r": "RR", "j": "CH", "w": "ou", "y": "ih",
    "a": "aa", "e": "E", "i": "ih", "o": "oh", "u": "ou",
}

UNKNOWN_PHONES: Counter[tuple[str, str]] = Counter()
"""(alphabet, phone) → how often a symbol had to be guessed.  Never raises."""

# Stripped before lookup: stress, length, tone letters, and combining diacritics.
_IPA_DROP = set("ˈˌːˑ˥˦˧˨˩-_.|‖ ‿͜͡'") | set("0123456789")
_MNEMONIC_DROP = set("'\",:;!#%=|-")


def _strip_ipa(phone: str) -> str:
    out = []
    for ch in unicodedata.normalize("NFD", phone):
        if ch in _IPA_DROP or unicodedata.combining(ch):
            continue
        if unicodedata.category(ch) in ("Lm", "Sk"):
            continue  # modifier letters (aspiration, tone, rhotic hook) carry no lip shape
        out.append(ch)
    return "".join(out)


def _longest_match(s: str, table: dict[str, str]) -> list[str] | None:
    """Split ``s`` into table keys, longest first; None if some part is unknown."""
    longest = max(len(k) for k in table)
    out, i = [], 0
    while i < len(s):
        for n in range(min(longest, len(s) - i), 0, -1):
            if s[i : i + n] in table:
                out.append(table[s[i : i + n]])
                i += n
                break
        else:
            return None
    return out


def _fallback(phone: str, alphabet: str) -> tuple[str, ...]:
    UNKNOWN_PHONES[(alphabet, phone)] += 1
    if UNKNOWN_PHONES[(alphabet, phone)] == 1:
        log.warning("unknown %s phone %r: mapped by its first letter", alphabet, phone)
    folded = unicodedata.normalize("NFKD", phone).encode("ascii", "ignore").decode().lower()
    return (_FIRST_LETTER.get(folded[:1], "sil"),)


def _merge_vowel_runs(names: list[str]) -> tuple[str, ...]:
    # "iː" and long-vowel spellings like "ii" are one viseme, not a two-part glide.
    merged = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]
    return tuple(merged)


@lru_cache(maxsize=4096)
def _lookup(phone: str, alphabet: str) -> tuple[str, ...] | None:
    """Viseme names from the tables, or None if the symbol is not in them."""
    if alphabet == "arpabet":
        key = phone.strip().upper().strip("+").rstrip("0123456789")
        if key in _ARPABET_SILENCE:
            return ("sil",)
        if key == "AH" and phone.strip().endswith("0"):
            return ("E",)  # unstressed AH is the CMU dictionary's schwa
        return _ARPABET.get(key)
    if alphabet in ("sampa", "espeak"):
        key = phone.strip()
        if key in _SAMPA_SILENCE or key.startswith("_"):
            return ("sil",)
        if alphabet == "sampa":
            # length ":", syllabic "=", dark-l "/", nasal "~" and "_x" diacritics (p_h)
            key = re.sub(r"(?<=.)_.*$", "", key)
            key = "".join(c for c in key if c not in ":=/~'\"%") or key
        if alphabet == "espeak":
            # stress/length marks anywhere; digits are variant numbers except in
            # first position, where "0" and "3" are vowels
            key = key[:1] + "".join(c for c in key[1:] if not c.isdigit())
            key = "".join(c for c in key if c not in _MNEMONIC_DROP)
            if not key:
                return ("sil",)
        parts = _longest_match(key, _SAMPA) or _longest_match(key, _IPA)
        return _merge_vowel_runs(parts) if parts else None
    # IPA (also the default for alphabets this module does not know)
    key = _strip_ipa(phone)
    if not key:
        return ("sil",)
    parts = _longest_match(key, _IPA)
    return _merge_vowel_runs(parts) if parts else None


def phone_visemes_named(phone: str, alphabet: str) -> tuple[str, ...]:
    """Viseme names of one phone (1 for most, 2-3 for diphthongs); "h" = transparent."""
    return _lookup(phone, alphabet) or _fallback(phone, alphabet)


def phone_visemes(phone: str, alphabet: str) -> tuple[int, ...]:
    """Viseme indices of one phone; /h/ resolves to ``sil`` here (no context)."""
    return tuple(V.get(n, SIL) for n in phone_visemes_named(phone, alphabet))


def is_known(phone: str, alphabet: str) -> bool:
    """Whether the tables map ``phone`` without falling back to a guess."""
    return _lookup(phone, alphabet) is not None


# --------------------------------------------------------------------------- timing
BLEND_HALF_S = 0.020        # raised-cosine half-width: shapes blend over ±20 ms at a boundary
LONG_SILENCE_S = 0.150      # pauses at least this long relax to a closed mouth
_GLIDE_SPLIT = {2: (0.6, 0.4), 3: (0.45, 0.3, 0.25)}


@dataclass(frozen=True)
class VisemeSegment:
    start: float
    end: float
    viseme: int
    target: tuple[float, float, float]


def viseme_segments(phones: Sequence[PhoneSpan]) -> list[VisemeSegment]:
    """Timed visemes that tile [first start, last end]; gaps become silence."""
    raw: list[tuple[float, float, str]] = []
    t = phones[0].start if phones else 0.0
    for p in sorted(phones, key=lambda p: p.start):
        start, end = max(p.start, t), max(p.end, t)
        if start > t + 1e-6:
            raw.append((t, start, "sil"))
        names = phone_visemes_named(p.phone, p.alphabet)
        fractions = _GLIDE_SPLIT.get(len(names), tuple(1 / len(names) for _ in names))
        edge = start
        for name, frac in zip(names, fractions):
            nxt = edge + frac * (end - start)
            raw.append((edge, nxt, name))
            edge = nxt
        t = end
    raw = [r for r in raw if r[1] > r[0]]
    names = _resolve_transparent([r[2] for r in raw])
    targets = _segment_targets(raw, names)
    return [VisemeSegment(s, e, V[n], tg) for (s, e, _), n, tg in zip(raw, names, targets)]


def _resolve_transparent(names: list[str]) -> list[str]:
    out = list(names)
    for i in range(len(out) - 1, -1, -1):  # right to left: /h/ copies what follows
        if out[i] == _TRANSPARENT:
            nxt = out[i + 1] if i + 1 < len(out) else "sil"
            prv = next((n for n in reversed(out[:i]) if n != _TRANSPARENT), "sil")
            out[i] = nxt if nxt != "sil" else prv
    return out


def _segment_targets(raw: list[tuple[float, float, str]], names: list[str]) -> list[tuple[float, float, float]]:
    targets = [tuple(float(x) for x in VISEME_SHAPES[V[n]]) for n in names]
    for i, ((s, e, _), n) in enumerate(zip(raw, names)):
        inner = 0 < i < len(raw) - 1
        if n == "sil" and inner and e - s < LONG_SILENCE_S:
            # a short pause between words: the mouth stays between its neighbours
            prev, nxt = np.array(targets[i - 1]), np.array(targets[i + 1])
            targets[i] = tuple(float(x) for x in 0.5 * (prev + nxt))
    return targets


def _raised_cosine_cdf(u: np.ndarray, h: float) -> np.ndarray:
    """Integral of a raised-cosine kernel of half-width h: 0 below -h, 1 above h."""
    x = np.clip(u / h, -1.0, 1.0)
    return 0.5 + 0.5 * x + np.sin(np.pi * x) / (2 * np.pi)


def frame_targets(phones: Sequence[PhoneSpan], times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-time viseme label (n,) int64 and smooth shape target (n, 3) float32.

    Shapes are the segment targets convolved with a raised cosine (co-articulation);
    /p b m/ keep openness exactly 0 in the middle of the phone however short it is,
    and silences of ``LONG_SILENCE_S`` or more (and before/after the utterance)
    relax to the closed mouth.
    """
    times = np.asarray(times, dtype=np.float64)
    n = len(times)
    if not phones:
        return np.full(n, SIL, dtype=np.int64), np.zeros((n, 3), dtype=np.float32)
    segs = viseme_segments(phones)
    lead = VisemeSegment(-1e9, segs[0].start, SIL, (0.0, 0.0, 0.0))
    tail = VisemeSegment(segs[-1].end, 1e9, SIL, (0.0, 0.0, 0.0))
    segs = [lead, *segs, tail]
    starts = np.array([s.start for s in segs])
    ends = np.array([s.end for s in segs])
    tgt = np.array([s.target for s in segs], dtype=np.float64)

    weights = _raised_cosine_cdf(times[:, None] - starts[None, :], BLEND_HALF_S) - _raised_cosine_cdf(
        times[:, None] - ends[None, :], BLEND_HALF_S
    )
    shape = weights @ tgt

    idx = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(segs) - 1)
    visemes = np.array([s.viseme for s in segs], dtype=np.int64)[idx]

    for s in segs:
        if s.viseme != PP:
            continue
        mid, half = 0.5 * (s.start + s.end), 0.5 * (s.end - s.start)
        core = max(half - BLEND_HALF_S, 0.5 * half)
        shape[np.abs(times - mid) <= core, 0] = 0.0
    # blend weights sum to 1 only up to rounding; keep every value inside its range
    shape = np.clip(shape, [0.0, -1.0, 0.0], [1.0, 1.0, 1.0])
    return visemes, shape.astype(np.float32)

