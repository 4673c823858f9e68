"""Text arriving a few characters at a time -> pieces ready to speak: the one sentence splitter.

An LLM streams its answer as deltas; the avatar should start talking as soon as
the first sentence is complete, not at the end of the turn.  ``SentenceStream``
takes the deltas and hands back each piece the moment it is decided; whole texts
(``/say``) go through the same rules with ``split_sentences``.

Where a piece ends:

* ``! ? 。 ！ ？ ；`` and a newline end a sentence at once: they are never
  anything else in running text (a run such as ``?!`` or ``！”`` stays with it);
* ``.`` and ``…`` are overloaded (3.14, e.g., example.com, Mr. Smith, U.S.), so
  they end a sentence only when followed by whitespace, and then only if the
  next word does not start in lower case (``approx. five``), the word before is
  not a single letter (initials, ``e.g.``) nor a title (``ABBREVIATIONS``).
  Deciding needs the next word's first letter: an LLM's next token (" How")
  brings it.  ``flush`` decides whatever is still pending;
* a clause break (``,`` ``;`` ``:`` followed by a space, or ``，`` ``：``) ends a
  piece once the piece is long enough to be worth speaking alone: the turn's
  first piece from ``FIRST_CLAUSE_UNITS`` (24: about five English words, 1.5 s of
  speech -- so the first audio starts early without a choppy one-word piece),
  later pieces from ``CLAUSE_UNITS`` (60: ~4 s; they are synthesised while the
  earlier ones play, so only a long run-on needs cutting);
* a piece with no break at all is cut at ``MAX_UNITS`` (240), at its last space
  if it has one, so a hostile or list-like stream cannot grow a buffer forever.

Lengths are counted in units: a CJK character (one syllable, ~0.25 s) counts 2,
anything else 1 -- so the same limits are 12 and 30 Chinese characters.  Pieces
with nothing to say (``...``, ``!!!``) are dropped.
"""

from __future__ import annotations

import codecs
import re

from tts.alignment import speakable

FIRST_CLAUSE_UNITS = 24
CLAUSE_UNITS = 60
MAX_UNITS = 240

_EAGER_ENDS = frozenset("!?。！？；\n")
_DOT_ENDS = frozenset(".…")
_ENDS = _EAGER_ENDS | _DOT_ENDS
# Closing quotes and brackets stay with the sentence they close.
_CLOSERS = frozenset("\"')]}”’」』）】》〉")
_CLAUSE_ASCII = frozenset(",;:")          # a break only when followed by whitespace (1,200  10:30)
_CLAUSE_CJK = frozenset("，：")
# Titles and Latin abbreviations that a capitalised word follows without a sentence break.
# ("Inc.", "etc.", "no." end sentences as often as not: they are not here.)
ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "mt", "gen", "gov", "sgt",
                           "capt", "col", "lt", "rev", "hon", "approx", "dept", "fig", "vol", "ca", "cf", "al"})
_WIDE = re.compile(r"[\u1100-\u11ff\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
_WORD_BEFORE = re.compile(r"(?<!\w)([A-Za-z]+)$")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def units(text: str) -> int:
    """The length of ``text`` for the clause limits: a CJK character counts 2."""
    return len(text) + len(_WIDE.findall(text))


def _after_run(buf: str, i: int) -> int:
    """The end of the terminator run at ``i`` with the closers after it ("?!", '."', "。”")."""
    j = i + 1
    while j < len(buf) and (buf[j] in _ENDS and buf[j] != "\n" or buf[j] in _CLOSERS):
        j += 1
    return j


class _Wait(Exception):
    """The cut can't be decided before more text arrives."""


class SentenceStream:
    """Deltas in, speakable pieces out (see the module docstring for the rules).

    ``push`` returns the pieces complete now; ``flush`` ends the turn and returns
    the rest; ``clear`` forgets everything (barge-in).  Not thread-safe: one per
    stream of text.
    """

    def __init__(self, first_clause_units: int = FIRST_CLAUSE_UNITS, clause_units: int = CLAUSE_UNITS,
                 max_units: int = MAX_UNITS) -> None:
        if not 0 < first_clause_units <= max_units or not 0 < clause_units <= max_units:
            raise ValueError("clause limits must be positive and at most max_units")
        self.first_clause_units = first_clause_units
        self.clause_units = clause_units
        self.max_units = max_units
        self._buf = ""
        self._first = True      # the next piece is the turn's first
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    @property
    def pending(self) -> str:
        """Text received and not yet handed out."""
        return self._buf

    def push(self, delta: str | bytes) -> list[str]:
        """Add a delta; the pieces that are complete now, in order.

        ``bytes`` are UTF-8 that may stop in the middle of a character (the rest comes
        with the next delta); a ``str`` may carry half of a surrogate pair (a JSON
        ``"\\ud83d"`` escape), which is joined with its other half when that arrives.
        """
        if isinstance(delta, (bytes, bytearray)):
            delta = self._utf8.decode(bytes(delta))
        elif not isinstance(delta, str):
            raise TypeError(f"a text delta is a string, not {type(delta).__name__}")
        self._buf += delta
        if _LONE_SURROGATE.search(delta):
            # Join the halves of a pair split between deltas (JSON escapes arrive as lone surrogates).
            self._buf = self._buf.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """End of the turn: the pieces still pending (the next push starts a new turn)."""
        self._buf += self._utf8.decode(b"", final=True)
        out = self._drain(final=True)
        self.clear()
        return out

    def clear(self) -> None:
        """Barge-in: drop the pending text; the next push starts a new turn."""
        self._buf = ""
        self._first = True
        self._utf8.reset()

    def _drain(self, final: bool) -> list[str]:
        out: list[str] = []
        while self._buf:
            cut = self._cut(final)
            if cut is None:
                break
            piece, self._buf = self._buf[:cut], self._buf[cut:]
            piece = _LONE_SURROGATE.sub("", piece).strip().lstrip("".join(_CLOSERS)).strip()
            if speakable(piece):
                out.append(piece)
                self._first = False
        return out

    def _cut(self, final: bool) -> int | None:
        """Where the next piece ends in the buffer, or None to wait for more text."""
        buf = self._buf
        limit = self.first_clause_units if self._first else self.clause_units
        size = 0                                     # units(buf[: i + 1]), kept as we go
        try:
            for i, ch in enumerate(buf):
                size += 2 if _WIDE.match(ch) else 1
                if size > self.max_units:
                    return _overlong_cut(buf, i)
                if ch in _EAGER_ENDS:
                    return _after_run(buf, i)
                if ch in _DOT_ENDS:
                    end = self._dot_end(buf, i, final)
                    if end is not None:
                        return end
                elif ch in _CLAUSE_CJK and size >= limit:
                    return _after_run(buf, i)
                elif ch in _CLAUSE_ASCII and size >= limit:
                    if i + 1 == len(buf) and not final:
                        raise _Wait
                    if i + 1 == len(buf) or buf[i + 1].isspace():
                        return i + 1
        except _Wait:
            return None
        return len(buf) if final else None

    @staticmethod
    def _dot_end(buf: str, i: int, final: bool) -> int | None:
        """The end of the sentence if the ``.``/``…`` at ``i`` ends one, None if it doesn't."""
        j = _after_run(buf, i)
        if j == len(buf):
            if final:
                return j
            raise _Wait
        if not buf[j].isspace():
            return None                      # 3.14, example.com, e.g
        k = j
        while k < len(buf) and buf[k].isspace():
            if buf[k] == "\n":
                return j                     # a line break ends it whatever follows
            k += 1
        if k == len(buf):
            if final:
                return j
            raise _Wait
        if buf[k].islower():
            return None                      # "approx. five", "Well... maybe"
        if buf[i] == ".":
            word = _WORD_BEFORE.search(buf, 0, i)
            if word and (len(word.group(1)) == 1 or word.group(1).lower() in ABBREVIATIONS):
                return None                  # "J. Smith", "U.S. Army", "Mr. Smith"
        return j


def _overlong_cut(buf: str, i: int) -> int:
    """Cut a piece that reached the length limit at ``i`` with no break: at its last space if
    that keeps at least half of it, else right there."""
    space = buf.rfind(" ", 0, i)
    return space + 1 if space > i // 2 else i


def split_sentences(text: str) -> list[str]:
    """A whole text's pieces, by the same rules as a stream of it."""
    stream = SentenceStream()
    return stream.push(text) + stream.flush()
