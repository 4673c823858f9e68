"""Numbers, money, dates, times and phone numbers written out the way they are said.

A TTS engine reads "$12.50" as "dollar twelve point five zero" and "2025年3月1日"
digit by digit or not at all.  ``normalize(text, language)`` rewrites them into
words before synthesis -- English with ``num2words``, Chinese with ``cn2an`` --
and leaves everything else alone.  The language is the voice's
(``speech_language``); for a voice of another language the text is not touched
(an English "twelve" would be wrong in a German voice, and espeak reads digits in
its own language).

The rules run in order, each on what the previous ones left, so that a date is
not read as a subtraction nor a price as a phone number:

1. dates (ISO ``2025-03-01``; ``March 1, 2025`` / ``1 March``; ``2025年3月1日``),
2. clock times (``10:30``, ``9:05 pm``),
3. money (``$ £ € ¥ ₹`` before a number, with ``million``/``M`` scales; ``¥`` is
   yen in English and 元 in Chinese),
4. percentages (and ``℃`` in Chinese),
5. phone-like digit strings, read digit by digit in groups: three groups
   (``555-123-4567``, ``(555) 123-4567``), a ``+`` country code, two dash
   groups that are not a range (``555-1234``), seven or more bare digits that
   are not a round amount (``13812345678``, not ``1000000``), or a leading
   zero (``0800``).  Chinese reads 1 as 幺 there, as people say it;
6. ordinals (``1st`` ``22nd``), decades (``1990s``), years after a word that
   introduces one (``in 1999`` -> "nineteen ninety-nine"), ranges (``10-20``
   -> "ten to twenty"); in Chinese 两 for 2 before a measure word (``2个``);
7. every other number, with its sign, grouping commas and decimals.

Pure functions: no I/O, no state.  A rule that cannot read its match leaves it as
written; ``normalize`` never raises for any string.
"""

from __future__ import annotations

import re
from collections.abc import Callable

EN = "en"
ZH = "zh"

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
# A number not glued to a word, a decimal or a grouping on either side (ASCII only:
# CJK characters are "word" characters to ``\w``, and 第3名 must still match).
_FREE_L = r"(?<![A-Za-z0-9.,])"
_FREE_R = r"(?![0-9]|[.,][0-9])"
_MAX_DIGITS = 15            # longer integers are read digit by digit (no one says "one quadrillion ...")

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_MONTH_RE = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|" \
            r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"

_EN_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_ZH_DIGITS = "零一二三四五六七八九"
_ZH_PHONE_DIGITS = "零幺二三四五六七八九"

# symbol -> (one, many, minor one, minor many); None: no minor unit is spoken
_EN_MONEY = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", None, None),
    "￥": ("yen", "yen", None, None),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
_ZH_MONEY = {"$": "美元", "£": "英镑", "€": "欧元", "₹": "卢比"}
_EN_SCALES = {"k": "thousand", "thousand": "thousand", "m": "million", "mn": "million", "million": "million",
              "b": "billion", "bn": "billion", "billion": "billion", "t": "trillion", "trillion": "trillion"}
_YEAR_WORDS = r"in|since|until|till|by|from|of|year|before|after|around|circa|during|to|through"
_ZH_MEASURE = r"[个位只次张本件条种天岁周遍台辆杯瓶块份层楼名页]|小时|分钟|年(?!\d)|点(?!\d)"


# -- languages ------------------------------------------------------------------------


def speech_language(voice_language: str, text: str = "") -> str:
    """The normalisation language for a voice: "en", "zh", or "" (leave the text alone).

    A voice that doesn't say (an operator's piper file, a remote voice) is judged
    by the text: Chinese script -> "zh", otherwise "en".
    """
    lang = (voice_language or "").lower().replace("_", "-")
    if not lang:
        return ZH if _CJK.search(text) else EN
    if lang == "en" or lang.startswith("en-"):
        return EN
    if lang.split("-")[0] in ("zh", "cmn", "yue"):
        return ZH
    return ""


def normalize(text: str, language: str) -> str:
    """``text`` with its numbers written out for ``language`` ("en", "zh"; anything else: unchanged)."""
    rules = _RULES.get(language)
    if not rules or not any(c.isdigit() for c in text):
        return text
    for pattern, repl in rules:
        text = pattern.sub(_safe(repl), text)
    return text


def _safe(repl: Callable[[re.Match], str]) -> Callable[[re.Match], str]:
    def apply(m: re.Match) -> str:
        try:
            return repl(m)
        except (ValueError, OverflowError, ArithmeticError, KeyError, IndexError):
            return m.group(0)
    return apply


# -- English ------------------------------------------------------------------------


def _n2w(value, **kw) -> str:
    from num2words import num2words  # imported on first use: a second's worth of language tables

    return num2words(value, lang="en", **kw).replace(",", "")


def en_digits(digits: str) -> str:
    """Digit by digit: "0800" -> "zero eight zero zero"."""
    return " ".join(_EN_DIGITS[int(d)] for d in digits if d.isdigit())


def en_integer(digits: str) -> str:
    digits = digits.replace(",", "")
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        return en_digits(digits)
    return _n2w(int(digits))


def en_number(text: str) -> str:
    """"1,200" -> "one thousand two hundred"; "3.14" -> "three point one four"."""
    whole, _, frac = text.replace(",", "").partition(".")
    words = en_integer(whole or "0")
    return f"{words} point {en_digits(frac)}" if frac else words


def en_year(year: int) -> str:
    return _n2w(year, to="year")


def en_ordinal(n: int) -> str:
    return _n2w(n, to="ordinal")


def _plural(words: str) -> str:
    """"nineteen ninety" -> "nineteen nineties" (decades)."""
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return f"{head} {last}".strip()


def _month(token: str) -> int:
    return next(i for i, m in enumerate(MONTHS, 1) if m.lower().startswith(token.lower()[:3]))


def _valid_date(month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= 31


def _en_iso_date(m: re.Match) -> str:
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    if not _valid_date(month, day):
        return m[0]
    return f"{MONTHS[month - 1]} {en_ordinal(day)}, {en_year(year)}"


def _en_month_day(m: re.Match) -> str:
    day = int(m[2])
    if not 1 <= day <= 31:
        return m[0]
    out = f"{MONTHS[_month(m[1]) - 1]} {en_ordinal(day)}"
    return f"{out}, {en_year(int(m[3]))}" if m[3] else out


def _en_day_month(m: re.Match) -> str:
    day = int(m[1])
    if not 1 <= day <= 31:
        return m[0]
    out = f"the {en_ordinal(day)} of {MONTHS[_month(m[2]) - 1]}"
    return f"{out}, {en_year(int(m[3]))}" if m[3] else out


def _en_time(m: re.Match) -> str:
    hour, minute, half = int(m[1]), int(m[2]), m[3]
    if hour > 24 or minute > 59:
        return m[0]
    if minute == 0:
        said = f"{en_integer(str(hour))} o'clock" if not half else en_integer(str(hour))
    elif minute < 10:
        said = f"{en_integer(str(hour))} oh {_EN_DIGITS[minute]}"
    else:
        said = f"{en_integer(str(hour))} {en_integer(str(minute))}"
    return f"{said} {half[0].lower()} m" if half else said


def _en_money(m: re.Match) -> str:
    one, many, minor_one, minor_many = _EN_MONEY[m["cur"]]
    amount, scale = m["amount"], m["scale"]
    if scale:
        return f"{en_number(amount)} {_EN_SCALES[scale.lower()]} {many}"
    whole, _, frac = amount.replace(",", "").partition(".")
    units = int(whole or "0")
    if frac and (minor_one is None or len(frac) > 2):
        return f"{en_number(amount)} {many}"
    cents = int(frac.ljust(2, "0")) if frac else 0
    major = f"{en_integer(whole or '0')} {one if units == 1 else many}"
    if not cents:
        return major
    minor = en_integer(str(cents))
    if units == 0:
        return f"{minor} {minor_one if cents == 1 else minor_many}"
    return f"{major} {minor}"          # "$12.50" -> "twelve dollars fifty", as people say prices


def _en_percent(m: re.Match) -> str:
    return f"{'minus ' if m['sign'] else ''}{en_number(m['num'])} percent"


def _en_ordinal(m: re.Match) -> str:
    return en_ordinal(int(m[1]))


def _en_decade(m: re.Match) -> str:
    return _plural(en_year(int(m[1])))


def _en_year(m: re.Match) -> str:
    return f"{m[1]} {en_year(int(m[2]))}"


def _is_year(digits: str) -> bool:
    return len(digits) == 4 and 1100 <= int(digits) <= 2099


def _en_range(m: re.Match) -> str:
    a, b = m["a"], m["b"]
    if float(a.replace(",", "")) >= float(b.replace(",", "")):
        return m[0]                       # "3-2": a score, not a range
    if _is_year(a) and _is_year(b):
        return f"{en_year(int(a))} to {en_year(int(b))}"
    return f"{en_number(a)} to {en_number(b)}"


def _en_number(m: re.Match) -> str:
    words = en_number(m["num"])
    words = f"minus {words}" if m["sign"] else words
    after = m.string[m.end():m.end() + 1]
    return f"{words} " if after.isalpha() else words     # "10kg" -> "ten kg"


# -- phone numbers (both languages) ---------------------------------------------------------

_PHONE = re.compile(
    r"(?<![A-Za-z0-9.,+\-])(?:"
    r"(?P<intl>\+\d{1,3}(?:[ .\-]?\(?\d{1,5}\)?){1,5})"                        # +1 555 123 4567
    r"|(?P<three>(?:\(\d{2,5}\)\s?|\d{2,5}[.\-])\d{2,5}[.\-]\d{2,5})"            # (555) 123-4567, 555.123.4567
    r"|(?P<two>\d{2,5}-\d{3,5})"                                                  # 555-1234 (not a range)
    r"|(?P<run>\d{7,}|0\d{2,})"                                                   # 13812345678, 0800
    r")(?![0-9A-Za-z]|[.,\-][0-9])"
)


def _phone_groups(m: re.Match) -> list[str] | None:
    """The digit groups of a phone-like match, or None if it is a number after all."""
    text = m[0]
    groups = re.findall(r"\d+", text)
    if m["run"] is not None:
        digits = groups[0]
        if not digits.startswith("0") and digits.endswith("000"):
            return None                   # 1000000: an amount
        return [digits]
    if m["two"] is not None:
        a, b = groups
        if len(a) == len(b) or int(a) < int(b) and len(a) + len(b) < 7:
            return None                   # 2020-2025, 100-200: a range
    if sum(len(g) for g in groups) < 6:
        return None
    if text.startswith("+"):
        groups[0] = "+" + groups[0]
    return groups


def _en_phone(m: re.Match) -> str:
    groups = _phone_groups(m)
    if groups is None:
        return m[0]
    return ", ".join(("plus " if g[0] == "+" else "") + en_digits(g) for g in groups)


def _zh_phone(m: re.Match) -> str:
    groups = _phone_groups(m)
    if groups is None:
        return m[0]
    return "，".join(("加" if g[0] == "+" else "") + "".join(_ZH_PHONE_DIGITS[int(d)] for d in g if d.isdigit())
                    for g in groups)


# -- Chinese ------------------------------------------------------------------------


def zh_digits(digits: str) -> str:
    return "".join(_ZH_DIGITS[int(d)] for d in digits if d.isdigit())


def zh_number(text: str) -> str:
    """"1,200" -> "一千二百"; "3.14" -> "三点一四"."""
    import cn2an  # imported on first use

    whole, _, frac = text.replace(",", "").partition(".")
    if len((whole or "0").lstrip("0")) > _MAX_DIGITS:
        return zh_digits(whole) + (f"点{zh_digits(frac)}" if frac else "")
    words = cn2an.an2cn(whole or "0")
    return f"{words}点{zh_digits(frac)}" if frac else words


def _zh_date_parts(year: str | None, month: int, day: int | None) -> str:
    out = f"{zh_digits(year)}年" if year else ""
    out += f"{zh_number(str(month))}月"
    return out + (f"{zh_number(str(day))}日" if day is not None else "")


def _zh_iso_date(m: re.Match) -> str:
    month, day = int(m[2]), int(m[3])
    if not _valid_date(month, day):
        return m[0]
    return _zh_date_parts(m[1], month, day)


def _zh_year(m: re.Match) -> str:
    return f"{zh_digits(m[1])}年"


def _zh_month(m: re.Match) -> str:
    month = int(m[1])
    return f"{zh_number(m[1])}月" if 1 <= month <= 12 else m[0]


def _zh_day(m: re.Match) -> str:
    day = int(m[1])
    return f"{zh_number(m[1])}{m[2]}" if 1 <= day <= 31 else m[0]


def _zh_hour(hour: int) -> str:
    return "两" if hour == 2 else zh_number(str(hour))


def _zh_time(m: re.Match) -> str:
    hour, minute = int(m[1]), int(m[2])
    if hour > 24 or minute > 59:
        return m[0]
    if minute == 0:
        return f"{_zh_hour(hour)}点"
    return f"{_zh_hour(hour)}点{'零' if minute < 10 else ''}{zh_number(str(minute))}分"


def _zh_money(m: re.Match) -> str:
    cur, amount, scale = m["cur"], m["amount"], m["scale"] or ""
    if cur not in "¥￥":
        return f"{zh_number(_trim_zeros(amount))}{scale}{_ZH_MONEY[cur]}"
    if scale:
        return f"{zh_number(_trim_zeros(amount))}{scale}元"
    whole, _, frac = amount.replace(",", "").partition(".")
    if len(frac) > 2:
        return f"{zh_number(amount)}元"
    jiao, fen = (int(d) for d in frac.ljust(2, "0")) if frac else (0, 0)
    units = int(whole or "0")
    out = f"{zh_number(whole)}元" if units or not (jiao or fen) else ""
    if jiao:
        out += f"{_ZH_DIGITS[jiao]}角"
    elif fen and units:
        out += "零"
    if fen:
        out += f"{_ZH_DIGITS[fen]}分"
    return out


def _trim_zeros(amount: str) -> str:
    return amount.rstrip("0").rstrip(".") if "." in amount else amount


def _zh_percent(m: re.Match) -> str:
    return f"{'负' if m['sign'] else ''}百分之{zh_number(m['num'])}"


def _zh_temperature(m: re.Match) -> str:
    return f"{'零下' if m['sign'] else ''}{zh_number(m['num'])}摄氏度"


def _zh_two(m: re.Match) -> str:
    return "两"


def _zh_range(m: re.Match) -> str:
    a, b = m["a"], m["b"]
    if float(a.replace(",", "")) >= float(b.replace(",", "")):
        return m[0]
    return f"{zh_number(a)}到{zh_number(b)}"


def _zh_number(m: re.Match) -> str:
    return f"{'负' if m['sign'] else ''}{zh_number(m['num'])}"


# -- the rule tables -----------------------------------------------------------------

_SIGNED = rf"(?P<sign>(?<![A-Za-z0-9.,\-])-)?{_FREE_L}(?P<num>{_NUM})"
_ISO = r"(?<![0-9\-])(\d{4})-(\d{1,2})-(\d{1,2})(?![0-9\-])"
_RANGE = rf"{_FREE_L}(?P<a>{_NUM})(?:-|\s?[–~～]\s?)(?P<b>{_NUM}){_FREE_R}"

_RULES: dict[str, list[tuple[re.Pattern, Callable[[re.Match], str]]]] = {
    EN: [
        (re.compile(_ISO), _en_iso_date),
        (re.compile(rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}})\b)?"), _en_month_day),
        (re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+({_MONTH_RE})\b(?:,?\s+(\d{{4}})\b)?"), _en_day_month),
        (re.compile(r"(?<![0-9:])(\d{1,2}):(\d{2})(?![0-9])(?::\d{2})?(?:\s?([AaPp])\.?[Mm]\.?(?![A-Za-z]))?"),
         _en_time),
        (re.compile(rf"(?P<cur>[$£€¥￥₹])\s?(?P<amount>{_NUM})"
                    rf"(?:\s?(?P<scale>thousand|million|billion|trillion|[kKmMbBtT]n?)(?![A-Za-z]))?"), _en_money),
        (re.compile(rf"{_SIGNED}\s?%"), _en_percent),
        (_PHONE, _en_phone),
        (re.compile(r"(?<![A-Za-z0-9.,])(\d+)(?:st|nd|rd|th)\b"), _en_ordinal),
        (re.compile(r"(?<![A-Za-z0-9.,])(1[1-9]\d0|20\d0)s\b"), _en_decade),
        (re.compile(rf"\b({_YEAR_WORDS})\s+(1[1-9]\d\d|20\d\d){_FREE_R}(?![A-Za-z])", re.IGNORECASE), _en_year),
        (re.compile(_RANGE), _en_range),
        (re.compile(rf"{_SIGNED}{_FREE_R}"), _en_number),
    ],
    ZH: [
        (re.compile(r"(?<![0-9\-/.])(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?![0-9\-/.])"), _zh_iso_date),
        (re.compile(r"(?<![0-9])(\d{4})\s?年"), _zh_year),
        (re.compile(r"(?<![0-9.])(\d{1,2})\s?月"), _zh_month),
        (re.compile(r"(?<![0-9.])(\d{1,2})\s?([日号])"), _zh_day),
        (re.compile(r"(?<![0-9:])(\d{1,2})[:：](\d{2})(?![0-9])"), _zh_time),
        (re.compile(rf"(?P<cur>[$£€¥￥₹])\s?(?P<amount>{_NUM})(?P<scale>[万亿])?"), _zh_money),
        (re.compile(rf"{_SIGNED}\s?[%％]"), _zh_percent),
        (re.compile(rf"{_SIGNED}\s?(?:℃|°C)"), _zh_temperature),
        (_PHONE, _zh_phone),
        (re.compile(rf"(?<![0-9.,第])2(?=\s?(?:{_ZH_MEASURE}))"), _zh_two),
        (re.compile(_RANGE), _zh_range),
        (re.compile(rf"{_SIGNED}{_FREE_R}"), _zh_number),
    ],
}
