"""The layout shows the data flow, and imports point one way only.

server → worker → rtc / engine → models; tts and studio sit beside them, and
live/http (the HTTP pieces the server and the studio share) sits below both.  A
module that reaches "up" (the engine importing the server, a model importing the
engine) is how the old tangle started, so each rule here is a test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package prefix -> prefixes it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "models": ("live", "studio"),
    "models.audio": ("live", "studio", "tts", "models.mouth", "models.avatar", "models.render", "models.training"),
    "models.mouth": ("live", "studio", "tts", "models.avatar", "models.render", "models.training"),
    "models.avatar": ("live", "studio", "tts", "models.render", "models.training"),
    "models.render": ("live", "studio", "tts", "models.training"),
    "tts": ("live", "studio", "models.training", "models.avatar", "models.render"),
    "live.engine": ("live.server", "live.rtc", "live.worker", "studio"),
    "live.rtc": ("live.server", "live.worker", "live.engine", "studio"),
    "live.worker": ("live.server", "studio"),
    # live.http: the HTTP pieces the server and the studio share (errors, guard, body, upload, sse).
    # It sits below both, so it may import neither, nor anything that computes.
    "live.http": ("live.server", "live.rtc", "live.worker", "live.engine", "studio", "models", "tts"),
    # live.broadcast: RTMP outputs fed already-encoded frames; of the project it needs only models.audio.
    "live.broadcast": ("live.server", "live.worker", "live.rtc", "live.engine", "studio", "tts",
                       "models.mouth", "models.avatar", "models.render", "models.training"),
    # The studio is mounted on the live server's app but never imports the server: what they share
    # lives in live.http.
    "studio": ("live.server", "live.rtc", "live.worker"),
    # scale: the Ray scale-out (only under --ray).  It sits above the studio and the models and
    # is imported only by run_live.py, the composition root: never by what the default path runs.
    "scale": ("live.server", "live.rtc", "live.worker"),
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for top in ("live", "models", "tts", "studio", "scale"):
        for p in sorted((ROOT / top).rglob("*.py")):
            mod = ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out.append((mod, p))
    return out


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _rules_for(mod: str) -> tuple[str, ...]:
    # the most specific rule applies: models.mouth's, not models'
    best = max((p for p in FORBIDDEN if _under(mod, p)), key=len, default=None)
    return FORBIDDEN[best] if best else ()


@pytest.mark.parametrize("mod,path", _modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_point_one_way(mod: str, path: Path) -> None:
    bad = sorted(n for n in _imports(path) for f in _rules_for(mod) if _under(n, f) and not _under(n, mod))
    assert not bad, f"{mod} imports {bad}"


def test_nothing_outside_the_server_imports_it() -> None:
    for mod, path in _modules():
        if _under(mod, "live.server"):
            continue
        bad = [n for n in _imports(path) if _under(n, "live.server")]
        assert not bad, f"{mod} imports the server: {bad}"


def test_the_layout_has_one_folder_per_stage() -> None:
    for folder in ("live/engine", "live/server", "live/http", "live/rtc", "live/worker", "models/audio", "models/mouth",
                   "models/avatar", "models/render", "models/training", "tts", "studio", "web", "testing"):
        assert (ROOT / folder).is_dir(), folder
    # No module left at the top of live/ or models/: every file sits in its stage's folder.
    stray = [p.name for top in ("live", "models") for p in (ROOT / top).glob("*.py") if p.name != "__init__.py"]
    assert not stray, stray


def test_benchmarks_use_no_test_modules() -> None:
    for p in sorted((ROOT / "bench").glob("*.py")):
        bad = [n for n in _imports(p) if _under(n, "tests")]
        assert not bad, f"bench/{p.name} imports {bad}"


def test_only_the_scale_out_imports_ray() -> None:
    for mod, path in _modules():
        if _under(mod, "scale"):
            continue
        bad = [n for n in _imports(path) if _under(n, "ray") or _under(n, "scale")]
        assert not bad, f"{mod} imports {bad}: Ray belongs to scale/ (run_live.py wires it in under --ray)"


def test_the_default_path_loads_no_ray() -> None:
    import subprocess
    import sys

    probe = ("import sys, run_live, studio.cli, studio.service, live.server.app; run_live.build_parser(); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'scale')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_integrations_are_thin_clients() -> None:
    # integrations/ run in their own environments (pipecat needs protobuf >= 5, mediapipe < 5):
    # they speak the server's HTTP/WebSocket/WHEP API and import nothing of lipstream.
    files = sorted((ROOT / "integrations").rglob("*.py"))
    assert files, "no integration found"
    for p in files:
        bad = [n for n in _imports(p) for f in ("live", "models", "tts", "studio", "testing", "bench")
               if _under(n, f)]
        assert not bad, f"{p.relative_to(ROOT)} imports {bad}"
