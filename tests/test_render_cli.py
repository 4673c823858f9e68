"""`run_live.py render`: the offline path a user runs, checked on the decoded file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.sync_report import sync_figures
from testing.media import decode_media, face_video, speech_with_gaps, write_wav

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run_live.py", "--data-dir", str(data_dir), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    track = speech_with_gaps(("Front_Center", "Rear_Left", "Front_Right"), gaps=(0.9, 0.7), lead=0.6, tail=0.8)
    path = write_wav(tmp_path_factory.mktemp("audio") / "speech.wav", track.audio)
    return path, track


def test_render_default_avatar_is_in_sync(tmp_path, speech_wav):
    wav, track = speech_wav
    out = tmp_path / "out.mp4"
    proc = _run("render", "--audio", str(wav), "--out", str(out), data_dir=tmp_path / "data")
    assert proc.returncode == 0, proc.stderr
    media = decode_media(out)
    assert len(media.frames) == int(np.ceil(track.seconds * 25 - 1e-6))
    assert abs(len(media.audio) / 16_000 - track.seconds) < 0.07
    figures = sync_figures(out, track.audio)
    assert -1 <= figures.lag_frames <= 1, f"mouth lags audio by {figures.lag_frames} frames"
    assert figures.closed_in_silence >= 0.95
    assert figures.phrases >= 3 and figures.all_phrases_open
    assert not list(out.parent.glob(".*.part"))


def test_render_onto_a_users_video(tmp_path, speech_wav):
    wav, track = speech_wav
    video = face_video(tmp_path / "me.mp4", seconds=3.0, size=(480, 480))
    out = tmp_path / "me_talking.mp4"
    proc = _run("render", "--audio", str(wav), "--avatar", str(video), "--out", str(out), data_dir=tmp_path / "data")
    assert proc.returncode == 0, proc.stderr
    media = decode_media(out)
    assert media.frames[0].shape[:2] == (480, 480)
    figures = sync_figures(out, track.audio)
    assert figures.all_phrases_open and figures.closed_in_silence >= 0.9


def test_render_errors_are_messages_not_tracebacks(tmp_path, speech_wav):
    wav, _ = speech_wav
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00not really a wave file" * 64)
    for args, needle in [
        (("--audio", str(bad)), "error:"),
        (("--audio", str(tmp_path / "missing.wav")), "error:"),
        (("--audio", str(wav), "--avatar", "0123456789abcdef"), "avatar"),
        (("--audio", str(wav), "--avatar", "../../etc"), "avatar"),
    ]:
        proc = _run("render", *args, "--out", str(tmp_path / "x.mp4"), data_dir=tmp_path / "data")
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in proc.stderr.lower() and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.mp4").exists()
