"""Voice names and the text check, shared by the live API and the studio (``tts/registry.py``).

A voice is ``engine:voice`` everywhere and is only ever looked up in the server's own
list: an unknown espeak variant must not reach the C library (a long one aborted the
whole server), a path must never load, and the piper cache stays bounded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import pytest

from live.server.speech_queue import split_sentences
from testing.studio_helpers import REPO, ServerProcess, checkpoint_for_tests, new_batch
from testing.webrtc_client import LipstreamClient
from tts import espeak, piper_voice, registry
from tts.alignment import SpeechError
from tts.registry import VoiceError, VoiceRegistry

pytestmark = pytest.mark.timeout(240)

# espeak-ng copies "!v/<variant>" into a 40-byte buffer: 37+ characters aborted the process.
LONG_VARIANT = "en-us+" + "x" * 40
NOTHING_TO_SAY = ["   ", "!!!", "…", "?! ...", "hi\u0000there", "\ud800 hello"]


@pytest.fixture(scope="module")
def voices() -> VoiceRegistry:
    return VoiceRegistry()


@pytest.fixture
def real_model():
    """A real piper voice at a short path (it would load if paths were voices), and a path
    of the same length where nothing is."""
    folder = Path(tempfile.mkdtemp(prefix="lsv", dir="/tmp"))
    joe = piper_voice.builtin_files()
    (folder / "j.onnx").symlink_to(joe.model)
    (folder / "j.onnx.json").symlink_to(joe.config)
    yield folder / "j.onnx", folder / "k.onnx"
    shutil.rmtree(folder)


# -- the registry -----------------------------------------------------------------------------

def test_one_syntax_with_the_old_studio_spelling_as_an_alias(voices):
    assert voices.resolve("piper:joe").id == "piper:joe"
    assert voices.resolve("piper/joe") == voices.resolve("piper:joe") == voices.resolve(" piper:joe ")
    assert voices.resolve("espeak:EN-US+F3").name == "en-us+f3"
    assert voices.resolve("espeak/de+m2").id == "espeak:de+m2"
    assert voices.resolve("espeak:en-us+klatt").name == "en-us+klatt"
    # No voice: chosen from the script of the text.
    assert voices.resolve(None, "Hello there").id == "piper:joe"
    assert voices.resolve("", "你好，世界").id == "espeak:cmn"
    assert voices.resolve(None, "こんにちは世界").id == "espeak:ja"
    assert voices.resolve(None, "Привет").id == "espeak:ru"
    listed = voices.voices()
    ids = [v.id for v in listed]
    assert {"piper:joe", "espeak:cmn", "espeak:en-us"} <= set(ids) and len(ids) == len(set(ids))
    assert [v.id for v in listed if v.default] == ["piper:joe"]
    assert all(voices.resolve(i).id == i for i in ids)          # every listed name is accepted as is
    # espeak languages without a pronunciation dictionary produce no phones: not offered.
    assert "espeak:xex" not in ids and "xex" not in espeak.voices()


@pytest.mark.parametrize("name, needle", [
    ("klingon:worf", "unknown TTS engine"),
    ("espeak:xx-nope", "unknown voice"),
    ("espeak:" + LONG_VARIANT, "unknown voice"),
    ("espeak/" + LONG_VARIANT, "unknown voice"),
    ("espeak:en-us+", "unknown voice"),
    ("espeak:en-us+nobody", "unknown voice"),      # espeak itself would silently ignore it
    ("espeak:en-us+Mr serious", "unknown voice"),  # a variant file whose name has a space
    ("es", "not a voice name"),
    ("piper:", "not a voice name"),
    (":joe", "not a voice name"),
    ("piper:joe\x00", "unknown voice"),
    ("x" * 10_000, "too long"),
    ("espeak:en-us+" + "f" * 10_000, "too long"),
    (42, "must be a string"),
])
def test_unknown_and_malformed_names_are_short_clear_errors(voices, name, needle):
    with pytest.raises(VoiceError, match=re.escape(needle)) as err:
        voices.resolve(name)
    assert len(str(err.value)) < 200


def test_paths_never_name_voices_and_errors_do_not_tell_whether_they_exist(voices, real_model):
    real, missing = real_model
    long_real = piper_voice.builtin_files().model
    long_missing = long_real.with_name("n" * len(long_real.stem) + ".onnx")
    pairs = [(f"piper:{real}", f"piper:{missing}"), (f"piper/{real}", f"piper/{missing}"),
             (f"piper:{long_real}", f"piper:{long_missing}"), (f"piper/{long_real}", f"piper/{long_missing}"),
             ("piper:/etc/passwd", "piper:/etc/passwx"), ("piper:../j.onnx", "piper:../k.onnx")]

    def shape(name: str) -> str:
        with pytest.raises(VoiceError) as err:
            voices.resolve(name)
        message = str(err.value)
        assert not re.search(r"exist|not found|no such|config|file", message, re.I), message
        return re.sub(r"'[^']*'|\d+", "_", message)

    for existing, absent in pairs:
        assert shape(existing) == shape(absent)
    # The engine refuses paths too, whoever calls it.
    with pytest.raises(SpeechError, match="never paths"):
        piper_voice.load_voice(str(real))
    with pytest.raises(SpeechError, match="never paths"):
        piper_voice.synthesize("Hello.", str(real))


def test_espeak_refuses_a_long_variant_before_the_c_library():
    # In a child process: before the fix this aborted the interpreter (SIGABRT).
    code = ("from tts import espeak\n"
            f"try:\n    espeak.synthesize('hello', {LONG_VARIANT!r})\n"
            "except ValueError as e:\n    print('refused:', e)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    assert "refused: unknown espeak voice variant" in done.stdout


@pytest.mark.parametrize("text", NOTHING_TO_SAY)
def test_text_with_nothing_to_say_is_refused_before_an_engine_sees_it(text):
    with pytest.raises(SpeechError):
        espeak.synthesize(text, "en-us")


def test_sentences_with_nothing_to_say_are_left_out():
    assert split_sentences("Hello there. … !!! And more.") == ["Hello there.", "And more."]
    assert split_sentences("?! ...") == []


def test_piper_cache_is_bounded_and_keyed_by_the_registry_name(tmp_path):
    joe = piper_voice.builtin_files()
    own = []
    for name in ("anna", "bert", "cleo"):   # the operator's own voices (copies of joe here)
        model = tmp_path / f"{name}.onnx"
        model.symlink_to(joe.model)
        (tmp_path / f"{name}.onnx.json").symlink_to(joe.config)
        own.append(model)
    voices = VoiceRegistry(own)
    assert {"piper:anna", "piper:bert", "piper:cleo"} <= {v.id for v in voices.voices()}
    with pytest.raises(VoiceError):
        voices.resolve(f"piper:{own[0]}")       # registered, but still not by its path

    for spelling in ("piper:joe", "piper/joe", " piper:joe ", "piper:joe"):
        assert len(registry.synthesize(voices.resolve(spelling), "Hi.")) > 1000
    assert piper_voice.loaded_voices().count(("joe", 1)) == 1

    for name in ("anna", "bert", "cleo"):
        registry.synthesize(voices.resolve(f"piper:{name}"), "Hi.")
    loaded = piper_voice.loaded_voices()
    assert len(loaded) <= piper_voice.MAX_LOADED_VOICES
    assert loaded[-3:] == [("anna", 1), ("bert", 1), ("cleo", 1)]
    assert ("joe", 1) not in loaded or piper_voice.MAX_LOADED_VOICES > 3


# -- both APIs on a real server ---------------------------------------------------------------

async def _post(http: aiohttp.ClientSession, url: str, body: dict) -> tuple[int, dict]:
    async with http.post(url, json=body) as r:
        return r.status, await r.json()


async def test_live_and_studio_list_and_take_the_same_names(make_server, tmp_path, real_model):
    joe = piper_voice.builtin_files()
    own = tmp_path / "anna.onnx"
    own.symlink_to(joe.model)
    (tmp_path / "anna.onnx.json").symlink_to(joe.config)
    server = await make_server(piper_voice_files=(own,), preload_default_avatar=False)
    base = server.url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/voices") as r:
            live = await r.json()
        async with http.get(f"{base}/studio/voices") as r:
            studio = await r.json()
        live_ids = [v["id"] for v in live["voices"]]
        assert live_ids == [v["id"] for v in studio["voices"]]
        assert "piper:anna" in live_ids and live["default"] == "piper:joe"

        bid = await new_batch(http, base)
        tts = f"{base}/studio/batches/{bid}/tts"
        for voice in ("espeak:en-us", "piper:joe", "piper/joe", None):
            status, reply = await _post(http, tts, {"text": "Hello from the studio.", "voice": voice})
            assert status == 201, (voice, reply)
        assert reply["filename"] == "piper-joe-speech.wav"

        real, missing = real_model
        # "piper/" + an absolute path was the studio's way to load any .onnx on the disk.
        for voice in (f"piper/{real}", f"piper:{real}", f"piper/{missing}", "piper:/etc/passwd",
                      "piper:../x"):
            status, reply = await _post(http, tts, {"text": "Hello.", "voice": voice})
            assert status == 400 and reply["error"].startswith("unknown voice"), (voice, reply)
            assert "exist" not in reply["error"] and "found" not in reply["error"]
        status, reply = await _post(http, tts, {"text": "Hello.", "voice": "v" * 10_000})
        assert status == 400 and "too long" in reply["error"] and len(reply["error"]) < 200
        for text in NOTHING_TO_SAY:
            status, reply = await _post(http, tts, {"text": text, "voice": "espeak:en-us"})
            assert status == 400, (text, reply)


async def test_a_bad_voice_or_empty_text_cannot_kill_the_server(tmp_path, avatar_root):
    """A real server process: before the fix, one request with a long espeak variant
    aborted it (live /say and studio /tts alike)."""
    server = ServerProcess(tmp_path / "data", checkpoint_for_tests(tmp_path), avatar_root=avatar_root)
    with server:
        client = LipstreamClient(server.url)
        sid = await client.connect()
        try:
            say = f"/sessions/{sid}/say"
            bid = await new_batch(client.http, server.url)
            tts = f"/studio/batches/{bid}/tts"
            bad_voices = ["espeak:" + LONG_VARIANT, "espeak/" + LONG_VARIANT, "espeak:" + "e" * 10_000]
            for voice in bad_voices:
                status, reply = await client.request("POST", say, json={"text": "Hello.", "voice": voice})
                assert status == 400 and len(reply["error"]) < 200, (voice[:30], status, reply)
                status, reply = await client.request("POST", tts, json={"text": "Hello.", "voice": voice})
                assert status == 400 and len(reply["error"]) < 200, (voice[:30], status, reply)
            for text in NOTHING_TO_SAY:
                status, reply = await client.request("POST", say, json={"text": text})
                assert status == 400, (text, status, reply)
            assert server.proc is not None and server.proc.poll() is None, server.tail()

            # Still healthy and still speaking, in both syntaxes.
            status, health = await client.request("GET", "/health")
            assert status == 200 and health["status"] == "ok"
            for voice in ("espeak:en-us+f3", "piper/joe"):
                status, reply = await client.request("POST", say, json={"text": "Still here.", "voice": voice})
                assert status == 202, (voice, reply)
            status, reply = await client.request("POST", tts, json={"text": "Still here, and speaking.",
                                                                   "voice": "espeak:en-us+m3"})
            assert status == 201 and reply["duration"] > 0.5, reply
            assert server.proc.poll() is None, server.tail()
        finally:
            await client.close()
