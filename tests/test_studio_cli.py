"""``python run_live.py batch``: files + zip written, non-zero exit if any item failed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from testing.studio_helpers import REPO, check_mp4, checkpoint_for_tests, make_media


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return make_media(tmp_path_factory.mktemp("cli_media"))


def _batch(*args: str | Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run_live.py", "batch", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_batch_with_a_failing_item_writes_the_rest_and_exits_1(media, tmp_path):
    out = tmp_path / "out"
    data = tmp_path / "data"
    ckpt = checkpoint_for_tests(tmp_path)
    proc = _batch("--audio", media.audio, media.face, media.no_face, "--out", out, "--zip",
                  "--data-dir", data, "--checkpoint", ckpt)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("ok") and "presenter__speech.mp4" in line for line in lines), proc.stdout
    assert any(line.startswith("failed") and "empty_room.mp4" in line and "face" in line.lower()
               for line in lines), proc.stdout
    assert "1 done, 1 failed" in proc.stderr
    check_mp4(out / "presenter__speech.mp4", media.audio_seconds)
    assert not list(out.glob("empty_room*"))
    with zipfile.ZipFile(out / "lipstream-batch.zip") as z:
        assert z.namelist() == ["presenter__speech.mp4"]
        assert z.read("presenter__speech.mp4") == (out / "presenter__speech.mp4").read_bytes()
    log = (out / "lipstream-batch.log").read_text()
    assert " item_done " in log and " item_failed " in log
    # the private queue folder is gone; the avatar cache stays for next time
    assert [p.name for p in data.iterdir()] == ["avatars"]

    # All good now (the avatar is cached from the first run): exit 0.  The results go
    # next to the source video and an earlier result: neither is overwritten.
    out2 = tmp_path / "out2"
    out2.mkdir()
    source = out2 / "presenter.mp4"
    source.write_bytes(media.face.read_bytes())
    (out2 / "presenter__speech.mp4").write_bytes(b"an earlier result")
    proc = _batch("--audio", media.audio, source, "--out", out2, "--data-dir", data, "--checkpoint", ckpt)
    assert proc.returncode == 0, proc.stderr
    assert source.read_bytes() == media.face.read_bytes()
    assert (out2 / "presenter__speech.mp4").read_bytes() == b"an earlier result"
    check_mp4(out2 / "presenter__speech-2.mp4", media.audio_seconds)
    assert "presenter__speech-2.mp4" in proc.stdout
    assert not list(out2.glob("*.zip"))


@pytest.mark.parametrize("args, message", [
    (["--audio", "missing.wav", "x.mp4", "--out", "o"], "no such file"),
    (["--out", "o", "x.mp4"], "--audio"),
    (["--audio", "AUDIO"], "--out"),
    (["--audio", "AUDIO", "VIDEO", "--out", "o", "--fps", "0"], "fps"),
])
def test_bad_arguments_exit_2_with_a_message(media, tmp_path, args, message):
    args = [str(media.audio) if a == "AUDIO" else str(media.face) if a == "VIDEO" else a for a in args]
    args = [str(tmp_path / a) if a in ("o", "missing.wav", "x.mp4") else a for a in args]
    proc = _batch(*args, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
