"""Streaming text -> speakable pieces (tts.text_stream) and numbers read aloud (tts.normalize)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tts import registry
from tts.normalize import normalize, speech_language
from tts.text_stream import CLAUSE_UNITS, FIRST_CLAUSE_UNITS, SentenceStream, split_sentences, units


def stream(deltas: list[str | bytes]) -> list[list[str]]:
    """What each push returned, then what flush returned."""
    s = SentenceStream()
    return [s.push(d) for d in deltas] + [s.flush()]


def flat(parts: list[list[str]]) -> list[str]:
    return [p for ps in parts for p in ps]


# -- where sentences end ----------------------------------------------------------------------


@pytest.mark.parametrize("text, pieces", [
    ("Hello there. How are you?  Fine!", ["Hello there.", "How are you?", "Fine!"]),
    ("Mr. Smith met Dr. Jones at St. Paul's.", ["Mr. Smith met Dr. Jones at St. Paul's."]),
    ("Use a fruit, e.g. apples. Then eat.", ["Use a fruit, e.g. apples.", "Then eat."]),
    ("He served in the U.S. Army. He left.", ["He served in the U.S. Army.", "He left."]),
    ("Pi is 3.14 and e is 2.72. Neat.", ["Pi is 3.14 and e is 2.72.", "Neat."]),
    ("Visit example.com today. Bye.", ["Visit example.com today.", "Bye."]),
    ("Well... maybe not. OK then.", ["Well... maybe not.", "OK then."]),
    ("Well... Maybe not.", ["Well...", "Maybe not."]),
    ("It costs approx. five dollars.", ["It costs approx. five dollars."]),
    ("I came 1st. Then I rested.", ["I came 1st.", "Then I rested."]),
    ("Really?! Yes!!! Wow.", ["Really?!", "Yes!!!", "Wow."]),
    ('She said "Stop!" and left.', ['She said "Stop!"', "and left."]),
    ("First line\nSecond line", ["First line", "Second line"]),
    ("你好。今天天气很好！", ["你好。", "今天天气很好！"]),
    ("你吃了吗？我吃了；你呢", ["你吃了吗？", "我吃了；", "你呢"]),
    ("他说：“好的。”然后走了。", ["他说：“好的。”", "然后走了。"]),
    ("价格是3.5元。好的。", ["价格是3.5元。", "好的。"]),
    ("Hello there. … !!! And more.", ["Hello there.", "And more."]),
    ("?! ...", []),
    ("   ", []),
])
def test_sentences_end_where_a_reader_would_stop(text, pieces):
    assert split_sentences(text) == pieces


def test_a_long_first_clause_is_spoken_alone_so_speech_starts_early():
    text = "Although the weather was terrible all week, we still went out to the lake and swam. Then home."
    assert split_sentences(text) == ["Although the weather was terrible all week,",
                                     "we still went out to the lake and swam.", "Then home."]
    # A short opening clause ("Hello,") is not worth a piece of its own.
    assert split_sentences("Hello, how are you today?") == ["Hello, how are you today?"]
    # Numbers with grouping commas and times never split.
    assert split_sentences("We counted 1,200,000 votes by 10:30 in the morning, then we went home.") == [
        "We counted 1,200,000 votes by 10:30 in the morning,", "then we went home."]


def test_later_clauses_split_only_past_the_longer_limit():
    first = "This opening clause is quite long enough, and it goes on."
    short_later = "Then a clause, and a clause, and another."
    assert split_sentences(first + " " + short_later)[1:] == ["and it goes on.", short_later]
    long_later = ("After that the story continues for quite a while without any full stop at all, "
                  "so the listener would wait too long.")
    assert units(long_later[: long_later.index(",") + 1]) >= CLAUSE_UNITS
    assert split_sentences(first + " " + long_later)[2:] == [
        "After that the story continues for quite a while without any full stop at all,",
        "so the listener would wait too long."]


def test_chinese_clauses_count_double_so_the_limits_are_12_and_30_characters():
    assert units("你好") == 4 and units("ab") == 2 and FIRST_CLAUSE_UNITS == 24
    text = "我们今天去了公园，天气非常好，阳光明媚，我们玩得很开心，然后回家吃了晚饭。"
    pieces = split_sentences(text)
    assert pieces[0] == "我们今天去了公园，天气非常好，"       # 15 characters: past 12
    assert "".join(pieces) == text


def test_a_piece_without_any_break_is_cut_at_a_space_before_the_limit():
    words = " ".join(["word"] * 200)
    pieces = split_sentences(words)
    assert len(pieces) > 3 and all(units(p) <= 240 for p in pieces)
    assert " ".join(pieces) == words                        # cut between words, nothing lost
    cjk = "字" * 300
    assert "".join(split_sentences(cjk)) == cjk and max(units(p) for p in split_sentences(cjk)) <= 240


# -- streaming ----------------------------------------------------------------------------------


def test_each_sentence_is_handed_out_by_the_delta_that_completes_it():
    got = stream(["Hel", "lo the", "re.", " How", " are you", "?", " I am 3", ".", "14 years", " old."])
    assert got == [[], [], [], ["Hello there."], [], ["How are you?"], [], [], [], [], ["I am 3.14 years old."]]


def test_a_full_stop_waits_for_the_next_word_and_flush_decides():
    s = SentenceStream()
    assert s.push("See you at 5.") == [] and s.pending == "See you at 5."
    assert s.push(" ") == []
    assert s.push("Bye") == ["See you at 5."]
    assert s.flush() == ["Bye"]
    assert s.push("Mr.") == [] and s.push(" Smith is here.") == [] and s.flush() == ["Mr. Smith is here."]


def test_deltas_split_mid_word_mid_number_and_mid_character():
    assert flat(stream(["The total is $1", "2.5", "0 to", "day. Tha", "nks!"])) == [
        "The total is $12.50 today.", "Thanks!"]
    assert flat(stream(["你好", "。", "今天", "是", "2025", "年3月1", "日。"])) == ["你好。", "今天是2025年3月1日。"]
    # UTF-8 bytes cut inside "。" (e3 80 82) and inside "再" (e5 86 8d).
    assert stream([b"\xe4\xbd\xa0\xe5\xa5\xbd\xe3\x80", b"\x82\xe5", b"\x86\x8d"]) == [[], ["你好。"], [], ["再"]]
    # A surrogate pair split between two JSON messages ("\ud83d" + "\ude00").
    halves = [json.loads('"Nice \\ud83d"'), json.loads('"\\ude00 work! Yes."')]
    assert stream(halves) == [[], ["Nice \U0001F600 work!"], ["Yes."]]


def test_clear_drops_pending_text_and_restarts_the_turn():
    s = SentenceStream()
    assert s.push("This first clause is long enough to be cut, but") == ["This first clause is long enough to be cut,"]
    s.clear()
    assert s.pending == ""
    # A new turn: its first piece may again be cut at the shorter limit.
    assert s.push("Another opening clause long enough here, and") == ["Another opening clause long enough here,"]
    assert s.flush() == ["and"]


def test_only_strings_and_bytes_are_text():
    with pytest.raises(TypeError):
        SentenceStream().push(5)  # type: ignore[arg-type]


_TEXTS = [
    "Hello there, my friend. The price is $12.50, i.e. cheap! Call 555-123-4567... OK? Mr. Smith agrees.",
    "我们今天去了公园，天气非常好。价格是¥1,200！你觉得呢？好的；再见。",
    "Mixed text: 第3名 is third. 2025年3月1日 is a date, and 3.5% is small.",
]


def _words(pieces: list[str]) -> list[str]:
    """The pieces without their trailing punctuation (what a run like "!!" split between
    deltas may change) -- the speakable content and where it is cut."""
    return [re.sub(r"[\W_]+$", "", p) for p in pieces]


@settings(max_examples=150, deadline=None)
@given(text=st.sampled_from(_TEXTS), cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_any_split_into_deltas_gives_the_same_pieces(text, cuts):
    bounds = sorted({min(c, len(text)) for c in cuts})
    deltas = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)])]
    assert _words(flat(stream(deltas))) == _words(split_sentences(text))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=10))
def test_no_text_is_lost_or_invented(deltas):
    """Every letter and digit pushed comes out once, in order, whatever the input."""
    def letters(s: str) -> str:
        return "".join(c for c in s if c.isalnum() and not 0xD800 <= ord(c) <= 0xDFFF)
    pieces = flat(stream(deltas))
    assert letters("".join(pieces)) == letters("".join(deltas))
    assert all(p == p.strip() and p for p in pieces)


# -- numbers, money, dates read aloud --------------------------------------------------------------


@pytest.mark.parametrize("text, said", [
    ("$12.50", "twelve dollars fifty"),
    ("$1", "one dollar"),
    ("$0.99", "ninety-nine cents"),
    ("$1.05", "one dollar five"),
    ("It's $1,200.", "It's one thousand two hundred dollars."),
    ("$2.5 million", "two point five million dollars"),
    ("a $5M round", "a five million dollars round"),
    ("€3.50 or £2.30", "three euros fifty or two pounds thirty"),
    ("¥1,200", "one thousand two hundred yen"),
    ("3.5%", "three point five percent"),
    ("down -2%", "down minus two percent"),
    ("2025-03-01", "March first, twenty twenty-five"),
    ("on March 1, 2025", "on March first, twenty twenty-five"),
    ("on 1 March 2025", "on the first of March, twenty twenty-five"),
    ("Dec 25", "December twenty-fifth"),
    ("at 10:30", "at ten thirty"),
    ("at 9:05 pm", "at nine oh five p m"),
    ("at 10:00", "at ten o'clock"),
    ("Call 555-123-4567.", "Call five five five, one two three, four five six seven."),
    ("(555) 123-4567", "five five five, one two three, four five six seven"),
    ("+1 555 123 4567", "plus one, five five five, one two three, four five six seven"),
    ("dial 555-1234", "dial five five five, one two three four"),
    ("code 0800", "code zero eight zero zero"),
    ("id 13812345678", "id one three eight one two three four five six seven eight"),
    ("1000000 people", "one million people"),
    ("the 21st century", "the twenty-first century"),
    ("the 1990s", "the nineteen nineties"),
    ("In 1999 I was 5.", "In nineteen ninety-nine I was five."),
    ("from 2020 to 2025", "from twenty twenty to twenty twenty-five"),
    ("2020-2025", "twenty twenty to twenty twenty-five"),
    ("10-20 people", "ten to twenty people"),
    ("won 3-2", "won three-two"),
    ("pi is 3.14159", "pi is three point one four one five nine"),
    ("1,234,567", "one million two hundred and thirty-four thousand five hundred and sixty-seven"),
    ("-5 degrees", "minus five degrees"),
    ("10kg", "ten kg"),
    ("COVID-19", "COVID-nineteen"),
    ("version 3.14.1", "version 3.14.1"),
    ("No digits here.", "No digits here."),
])
def test_english_numbers_are_written_out(text, said):
    assert normalize(text, "en") == said


@pytest.mark.parametrize("text, said", [
    ("¥1,200", "一千二百元"),
    ("￥12.50", "十二元五角"),
    ("¥3.05", "三元零五分"),
    ("¥0.05", "五分"),
    ("$12.50", "十二点五美元"),
    ("3.5%", "百分之三点五"),
    ("2025-03-01", "二零二五年三月一日"),
    ("2025年3月1日", "二零二五年三月一日"),
    ("2025/12/25", "二零二五年十二月二十五日"),
    ("12月25日", "十二月二十五日"),
    ("今天是5号", "今天是五号"),
    ("第3名", "第三名"),
    ("第2个", "第二个"),
    ("2个人", "两个人"),
    ("2年", "两年"),
    ("10:30", "十点三十分"),
    ("2:05", "两点零五分"),
    ("8:00", "八点"),
    ("13812345678", "幺三八幺二三四五六七八"),
    ("电话400-123-4567", "电话四零零，幺二三，四五六七"),
    ("10-20人", "十到二十人"),
    ("-5℃", "零下五摄氏度"),
    ("温度是25℃", "温度是二十五摄氏度"),
    ("价格3元", "价格三元"),
    ("1.5亿", "一点五亿"),
    ("3.14", "三点一四"),
    ("共1,234件", "共一千二百三十四件"),
    ("负数-7", "负数负七"),
])
def test_chinese_numbers_are_written_out(text, said):
    assert normalize(text, "zh") == said


def test_the_voice_decides_the_language():
    assert speech_language("en") == "en" and speech_language("en-us") == "en" and speech_language("en-gb-x-rp") == "en"
    assert speech_language("cmn") == "zh" and speech_language("yue") == "zh" and speech_language("zh_CN") == "zh"
    assert speech_language("de") == "" and normalize("Es kostet 5 Euro", "") == "Es kostet 5 Euro"
    assert speech_language("", "价格是3元") == "zh" and speech_language("", "It is 3") == "en"
    voices = registry.VoiceRegistry()
    assert registry.speech_text(voices.resolve("piper:joe"), "$12.50") == "twelve dollars fifty"
    assert registry.speech_text(voices.resolve("espeak:cmn"), "¥12.50") == "十二元五角"
    assert registry.speech_text(voices.resolve("espeak:de"), "5 Euro") == "5 Euro"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789,.-:%$¥￥€£年月日号第个+() abc十"), max_size=40),
       st.sampled_from(["en", "zh"]))
def test_normalize_never_raises_and_leaves_no_mangled_digits(text, language):
    out = normalize(text, language)
    assert isinstance(out, str)
