"""Speech-engine speed: real-time factor of every engine, and for piper (the live
server's text-to-speech) the time to the first sentence and the effect of
onnxruntime's thread count.

    nice -n 10 .venv/bin/python -m bench.tts_speed [--no-write]

Prints a table and updates the ``bench/tts_speed.py`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date

from bench.report import cpu_model, replace_section

FIRST_SENTENCE = "Hello! How can I help you today?"
PARAGRAPH = (
    "Thank you for calling. Our office is open from nine in the morning until five in the afternoon, "
    "Monday to Friday. If you would like to book an appointment, please tell me the day and the time "
    "that suit you best, and I will check whether the doctor is available."
)
SECTION = "## bench/tts_speed.py"


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_piper(rows: list[tuple[str, str]]) -> None:
    from tts import piper_voice

    t0 = time.perf_counter()
    piper_voice.load_voice(threads=None)
    rows.append(("piper joe: load voice (once per process)", f"{time.perf_counter() - t0:.2f} s"))
    for threads in (1, None):
        label = "1 thread" if threads == 1 else f"{os.cpu_count()} threads"
        piper_voice.load_voice(threads=threads)
        piper_voice.synthesize("Warm up.", threads=threads)
        first, audio = _median_time(lambda: next(piper_voice.synthesize_sentences(FIRST_SENTENCE, threads=threads)), 5)
        rows.append((f"piper joe, {label}: first sentence ({len(audio) / 16000:.2f} s of speech)", f"{first * 1000:.0f} ms"))
        whole, audio = _median_time(lambda: piper_voice.synthesize(PARAGRAPH, threads=threads), 3)
        dur = len(audio) / 16000
        rows.append((f"piper joe, {label}: paragraph {dur:.1f} s, plain synthesize", f"{whole:.2f} s ({dur / whole:.1f}x real time)"))
        aligned, utt = _median_time(lambda: piper_voice.synthesize_aligned(PARAGRAPH, threads=threads), 3)
        rows.append((f"piper joe, {label}: same, with phone alignment", f"{aligned:.2f} s ({utt.duration / aligned:.1f}x real time)"))


def bench_engine(rows: list[tuple[str, str]], name: str, voice: str) -> None:
    from tts.voices import engine

    mod = engine(name)
    if not mod.available() or (name != "espeak" and voice not in mod.voices()):
        rows.append((f"{name} {voice}", "not installed"))
        return
    mod.synthesize_aligned("Warm up.", voice)
    t, utt = _median_time(lambda: mod.synthesize_aligned(PARAGRAPH, voice), 3)
    rows.append((f"{name} {voice}: paragraph {utt.duration:.1f} s, aligned", f"{t:.3f} s ({utt.duration / t:.0f}x real time)"))


def write_section(rows: list[tuple[str, str]]) -> None:
    replace_section(SECTION, [
        f"Machine: {os.cpu_count()} × {cpu_model()}, Python {platform.python_version()}; {date.today().isoformat()}. "
        "Shared machine: compare rows of one run.",
        "",
        "| what | time |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    rows: list[tuple[str, str]] = []
    bench_piper(rows)
    for name, voice in (("espeak", "en-us"), ("flite", "slt"), ("festival", "slt"), ("mbrola", "us1")):
        bench_engine(rows, name, voice)
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:{width}s}  {v}")
    if not args.no_write:
        write_section(rows)
        print("updated BENCHMARKS.md")


if __name__ == "__main__":
    main()
