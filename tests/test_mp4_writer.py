"""Mp4Writer: a player must hear each burst exactly when it sees the white frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from live.engine.mp4_writer import Mp4WriteError, Mp4Writer
from testing.media import decode_media

SR = 16_000
BURSTS = (6, 19, 33, 47)  # first frame of each 3-frame burst
BURST_FRAMES = 3
N_FRAMES = 60
W, H = 96, 64
SKIN = (90, 140, 205)  # BGR


def samples_in_frame(k: int, fps: float) -> tuple[int, int]:
    return round(k * SR / fps), round((k + 1) * SR / fps)


def lit(k: int) -> bool:
    return any(b <= k < b + BURST_FRAMES for b in BURSTS)


def write_clip(path: Path, fps: float, audio_shift_frames: int = 0, **kwargs) -> None:
    """Frame k is white while a 1 kHz burst plays (optionally shifted, to prove
    the measurement would notice a shift)."""
    with Mp4Writer(path, fps, W, H, SR, **kwargs) as w:
        for k in range(N_FRAMES):
            img = np.full((H, W, 3), 255 if lit(k) else 0, dtype=np.uint8)
            a, b = samples_in_frame(k, fps)
            t = np.arange(a, b) / SR
            on = lit(k - audio_shift_frames)
            w.write(img, (on * 0.5 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16))


def onsets(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.int8)
    return np.flatnonzero(np.diff(np.concatenate([[0], m])) == 1)


def measure_offsets(path: Path) -> tuple[np.ndarray, "object"]:
    """Audio onset time minus white-frame onset time for every burst, in seconds."""
    media = decode_media(path)
    white = np.array([f.mean() > 128 for f in media.frames])
    video_t = media.frame_times[onsets(white)]
    hop = 16  # 1 ms envelope
    x = media.audio[: len(media.audio) // hop * hop].reshape(-1, hop)
    env = np.sqrt((x**2).mean(axis=1))
    audio_t = media.audio_time(onsets(env > 0.5 * 0.5 / np.sqrt(2)) * hop)
    assert len(video_t) == len(audio_t) == len(BURSTS), (video_t, audio_t)
    return audio_t - video_t, media


@pytest.mark.parametrize("fps", [25.0, 30000 / 1001])
def test_audio_and_video_are_in_sync_as_a_player_decodes_them(tmp_path: Path, fps: float) -> None:
    path = tmp_path / "sync.mp4"
    write_clip(path, fps)
    offsets, media = measure_offsets(path)
    frame = 1 / fps
    assert np.all(np.abs(offsets) <= frame / 2), offsets
    assert np.all(np.abs(offsets) <= 0.005), offsets  # in practice AAC smears an onset by < 5 ms
    assert len(media.frames) == N_FRAMES
    assert media.frames[0].shape == (H, W, 3)
    np.testing.assert_allclose(media.frame_times, np.arange(N_FRAMES) / fps, atol=1e-3)
    assert media.duration == pytest.approx(N_FRAMES / fps, abs=frame)
    assert media.audio_start == pytest.approx(0.0, abs=1e-3)
    assert len(media.audio) / media.audio_rate == pytest.approx(N_FRAMES / fps, abs=1024 / SR)


def test_measurement_notices_a_two_frame_shift(tmp_path: Path) -> None:
    path = tmp_path / "late.mp4"
    write_clip(path, 25.0, audio_shift_frames=2)
    offsets, _ = measure_offsets(path)
    np.testing.assert_allclose(offsets, 0.080, atol=0.005)


def test_file_appears_only_on_close_under_a_temporary_name_before(tmp_path: Path) -> None:
    final = tmp_path / "out.mp4"
    w = Mp4Writer(final, 25, W, H, threads=1)
    for _ in range(5):
        w.write(np.zeros((H, W, 3), np.uint8), np.zeros(640, np.int16))
    names = [p.name for p in tmp_path.iterdir()]
    assert not final.exists()
    assert len(names) == 1 and names[0].startswith(".out.mp4.") and names[0].endswith(".part")
    assert w.close() == final
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    assert len(decode_media(final, audio=False).frames) == 5
    with pytest.raises(Mp4WriteError, match="after close"):
        w.write(np.zeros((H, W, 3), np.uint8))


def test_exception_mid_write_leaves_nothing_and_keeps_an_older_file(tmp_path: Path) -> None:
    final = tmp_path / "out.mp4"
    final.write_bytes(b"previous good render")
    with pytest.raises(RuntimeError, match="render failed"):
        with Mp4Writer(final, 25, W, H) as w:
            for k in range(10):
                w.write(np.zeros((H, W, 3), np.uint8), np.zeros(640, np.int16))
            raise RuntimeError("render failed")
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    assert final.read_bytes() == b"previous good render"


def test_bad_input_gets_a_clear_error_and_no_file(tmp_path: Path) -> None:
    final = tmp_path / "out.mp4"
    with pytest.raises(Mp4WriteError, match=r"shape \(64, 96, 3\)"):
        with Mp4Writer(final, 25, W, H) as w:
            w.write(np.zeros((H + 2, W, 3), np.uint8))
    with pytest.raises(Mp4WriteError, match="int16"):
        with Mp4Writer(final, 25, W, H) as w:
            w.write(np.zeros((H, W, 3), np.uint8), np.zeros(640, np.float32))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(Mp4WriteError, match="does not exist"):
        Mp4Writer(tmp_path / "missing" / "x.mp4", 25, W, H)
    with pytest.raises(Mp4WriteError, match="fps"):
        Mp4Writer(final, 0, W, H)


def test_odd_size_is_padded_and_silence_fills_missing_audio(tmp_path: Path) -> None:
    final = tmp_path / "odd.mp4"
    with Mp4Writer(final, 25, 63, 47, threads=1) as w:
        for _ in range(25):
            w.write(np.full((47, 63, 3), SKIN, np.uint8))  # no audio given: silence
    assert w.audio_samples_written == 25 * 640
    media = decode_media(final)
    assert media.frames[0].shape == (48, 64, 3)
    # Colours survive (BT.601 conversion, tagged so players use the same matrix).
    assert np.abs(media.frames[0][20, 20].astype(int) - SKIN).max() <= 4
    assert len(media.audio) / media.audio_rate == pytest.approx(1.0, abs=1024 / SR)
    assert np.abs(media.audio).max() < 1e-3


def test_video_only_file(tmp_path: Path) -> None:
    final = tmp_path / "mute.mp4"
    with Mp4Writer(final, 25, W, H, audio=False) as w:
        for _ in range(3):
            w.write(np.zeros((H, W, 3), np.uint8))
    media = decode_media(final)
    assert len(media.frames) == 3 and media.audio_rate == 0
