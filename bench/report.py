"""Recording benchmark figures in BENCHMARKS.md, one section per script.

Each script owns the section headed by its own path and replaces it in place,
so re-running one benchmark never disturbs another's figures.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
_PREAMBLE = (
    "# Benchmarks\n\n"
    "Figures written by the scripts under `bench/` on the machine named in each section. "
    "Re-run a script to refresh its section; absolute times on shared machines are noisy, "
    "so compare ratios measured in one run.\n"
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    return (f"{os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.machine()}")


def replace_section(header: str, lines: list[str], path: Path = BENCHMARKS) -> None:
    """Replace (or append) the section starting with the line ``header`` by ``header`` + ``lines``."""
    body = "\n".join([header, "", *lines]).rstrip("\n") + "\n\n"
    text = path.read_text() if path.exists() else _PREAMBLE
    pattern = re.compile(rf"^{re.escape(header)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: body, text)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text.rstrip("\n") + "\n")


def record(script: str, lines: list[str], path: Path = BENCHMARKS) -> None:
    """Replace the section for ``script``, stamped with the date and this machine."""
    stamp = f"_Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC} on {machine()}._"
    replace_section(f"## {script}", [stamp, "", *lines], path)
