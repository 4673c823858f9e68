"""Audio in: real files in many formats, live frames, and every kind of bad input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from models.audio.audio_io import (
    AudioDecodeError,
    StreamResampler,
    float_to_int16,
    int16_to_float,
    load_audio,
    probe_seconds,
    to_mono_16k,
)
from testing.media import (
    corrupt_file,
    dominant_frequency,
    encode_audio,
    face_frames,
    make_video,
    speech_sample,
    tone,
    write_wav,
)

SR = 16_000


def stereo_tone(freq: float, seconds: float, rate: int, left: float, right: float) -> np.ndarray:
    x = tone(freq, seconds, rate, amplitude=1.0)
    return np.stack([left * x, right * x], axis=1)


def steady(x: np.ndarray) -> np.ndarray:
    """The middle of a signal, away from codec start/end transients."""
    return x[len(x) // 5 : -len(x) // 5]


@pytest.mark.parametrize(
    ("suffix", "rate"),
    [(".wav", 44_100), (".mp3", 44_100), (".m4a", 44_100), (".ogg", 48_000),
     (".opus", 48_000), (".flac", 44_100), (".webm", 48_000), (".mka", 44_100), (".aac", 48_000)],
)
def test_any_format_becomes_16k_mono_with_frequency_duration_and_level_kept(
    tmp_path: Path, suffix: str, rate: int
) -> None:
    path = encode_audio(tmp_path / f"tone{suffix}", stereo_tone(440, 1.0, rate, 0.5, 0.3), rate)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    # Lossy codecs add up to one frame of padding; nothing may be lost or doubled.
    assert len(y) / SR == pytest.approx(1.0, abs=0.03)
    assert dominant_frequency(steady(y), SR) == pytest.approx(440, abs=1.0)
    rms = np.sqrt(np.mean(steady(y) ** 2))
    assert rms == pytest.approx(0.4 / np.sqrt(2), rel=0.06)  # (0.5 + 0.3) / 2 per channel


def test_downmix_averages_channels_instead_of_summing(tmp_path: Path) -> None:
    loud = load_audio(write_wav(tmp_path / "loud.wav", stereo_tone(300, 0.5, 48_000, 0.9, 0.9), 48_000))
    assert np.abs(steady(loud)).max() == pytest.approx(0.9, abs=0.01)  # a -3 dB sum would give 1.27
    opposite = load_audio(write_wav(tmp_path / "opp.wav", stereo_tone(300, 0.5, 48_000, 0.5, -0.5), 48_000))
    assert np.abs(opposite).max() < 1e-3


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".webm", ".mkv"])
def test_audio_of_a_video_file(tmp_path: Path, suffix: str) -> None:
    speech = speech_sample("Front_Center")
    path = make_video(tmp_path / f"clip{suffix}", face_frames(0.4, (64, 64)), 25, audio=speech)
    y = load_audio(path)
    # MP4 demuxers trim AAC's priming but not the padding of its last 1024-sample frame.
    assert len(y) / SR == pytest.approx(len(speech) / SR, abs=1024 / SR + 0.001)
    # The real voice survives the round trip (lossy codecs: compare envelopes).
    n = min(len(y), len(speech)) // 320 * 320
    env_in = np.sqrt((speech[:n].reshape(-1, 320) ** 2).mean(axis=1))
    env_out = np.sqrt((y[:n].reshape(-1, 320) ** 2).mean(axis=1))
    assert np.corrcoef(env_in, env_out)[0, 1] > 0.95


def test_real_human_recording_48k_to_16k() -> None:
    y = load_audio("/usr/share/sounds/alsa/Front_Center.wav")  # 68545 samples at 48 kHz
    assert len(y) == pytest.approx(68545 / 3, abs=2)
    assert 0.1 < np.abs(y).max() <= 1.0


def test_numpy_pcm_int16_interleaved_stereo_44k() -> None:
    pcm = float_to_int16(stereo_tone(1000, 2.0, 44_100, 0.4, 0.4))
    y = to_mono_16k(pcm, 44_100)
    assert len(y) == pytest.approx(32_000, abs=2)
    assert dominant_frequency(steady(y)) == pytest.approx(1000, abs=0.5)
    assert np.abs(steady(y)).max() == pytest.approx(0.4, abs=0.01)
    same = to_mono_16k(pcm[:, 0].astype(np.float32) / 32768, 44_100)
    np.testing.assert_allclose(y, same, atol=1e-4)
    assert to_mono_16k(np.zeros(0, np.int16), 48_000).shape == (0,)
    np.testing.assert_array_equal(to_mono_16k(np.ones(5, np.float32) * 0.25, SR), np.full(5, 0.25, np.float32))


def aiortc_like_frames(stereo: np.ndarray, rate: int = 48_000, size: int = 960) -> list[av.AudioFrame]:
    """What aiortc's Opus decoder hands out: packed s16 stereo, 20 ms, running pts."""
    pcm = float_to_int16(stereo)
    frames = []
    for i in range(0, len(pcm) - size + 1, size):
        f = av.AudioFrame.from_ndarray(pcm[i : i + size].reshape(1, -1), format="s16", layout="stereo")
        f.sample_rate = rate
        f.pts = i
        f.time_base = Fraction(1, rate)
        frames.append(f)
    return frames


def test_stream_resampler_on_webrtc_frames_matches_one_shot_conversion() -> None:
    stereo = stereo_tone(523.25, 2.0, 48_000, 0.6, 0.2)
    r = StreamResampler()
    chunks = [r.push(f) for f in aiortc_like_frames(stereo)]
    streamed = np.concatenate(chunks + [r.flush()])
    one_shot = to_mono_16k(float_to_int16(stereo), 48_000)
    assert len(streamed) == len(one_shot) == 32_000
    # Boundaries leave no trace: chunked output equals the one-shot output.
    np.testing.assert_allclose(streamed, one_shot, atol=1e-4)
    assert all(len(c) for c in chunks[1:])  # nothing is held back beyond the filter delay
    assert r.samples_in == 96_000 and r.samples_out == 32_000


def test_stream_resampler_numpy_chunks_and_a_rate_change() -> None:
    r = StreamResampler()
    out = [r.push(tone(440, 0.5, 44_100)[i : i + 441], 44_100) for i in range(0, 22_050, 441)]
    out += [r.push(float_to_int16(tone(440, 0.5, 48_000))[i : i + 777], 48_000) for i in range(0, 24_000, 777)]
    y = np.concatenate(out + [r.flush()])
    assert len(y) == pytest.approx(16_000, abs=4)
    assert dominant_frequency(y[2000:6000]) == pytest.approx(440, abs=1)
    assert dominant_frequency(y[10000:14000]) == pytest.approx(440, abs=1)
    with pytest.raises(AudioDecodeError, match="sample_rate"):
        r.push(np.zeros(10, np.float32))
    with pytest.raises(AudioDecodeError, match="unsupported PCM"):
        r.push(np.zeros(10, np.complex64), 16_000)


def test_int16_float_helpers() -> None:
    x = np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 0.99999, 1.5], dtype=np.float32)
    i = float_to_int16(x)
    assert i.tolist() == [-32768, -32768, -16384, 0, 16384, 32767, 32767]
    np.testing.assert_allclose(int16_to_float(i)[2:5], [-0.5, 0.0, 0.5])


# -- bad input --------------------------------------------------------------


def test_missing_directory_and_empty_inputs(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(AudioDecodeError, match="not a regular file"):
        load_audio(tmp_path)
    (tmp_path / "empty.mp3").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(tmp_path / "empty.mp3")
    write_wav(tmp_path / "zero.wav", np.zeros(0, np.float32))
    with pytest.raises(AudioDecodeError, match="no samples"):
        load_audio(tmp_path / "zero.wav")


_LOAD_IN_CHILD = """
import sys
from models.audio.audio_io import AudioDecodeError, load_audio
try:
    load_audio(sys.argv[1])
except AudioDecodeError as e:
    print(e)
    sys.exit(3)
"""


def test_unreadable_file(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "locked.wav", tone(440, 0.1))
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(AudioDecodeError, match="permission"):
            load_audio(path)
        return
    # Root reads any file whatever its mode; a child without the capabilities that
    # override file modes meets the permission error a normal user would.
    proc = subprocess.run(
        ["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
         sys.executable, "-c", _LOAD_IN_CHILD, str(path)],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert re.search("permission", proc.stdout), proc.stdout


def test_garbage_and_damaged_files_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.mp3").write_text("this is a text file, not audio\n" * 50)
    rng = np.random.default_rng(0)
    (tmp_path / "noise.m4a").write_bytes(rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    video = make_video(tmp_path / "v.mp4", face_frames(0.4, (64, 64)), 25, audio=tone(440, 0.4))
    corrupt_file(video, tmp_path / "truncated.mp4", "truncate", 0.6)  # moov atom lost
    wav = write_wav(tmp_path / "ok.wav", tone(440, 0.5))
    corrupt_file(wav, tmp_path / "header.wav", "header")
    mp3 = encode_audio(tmp_path / "ok.mp3", tone(440, 2.0, 44_100), 44_100)
    corrupt_file(mp3, tmp_path / "garbled.mp3", "garble", 0.3)  # most packets undecodable
    for name in ["notes.mp3", "noise.m4a", "truncated.mp4", "header.wav", "garbled.mp3"]:
        with pytest.raises(AudioDecodeError, match="not a readable|corrupt|no audio") as err:
            load_audio(tmp_path / name)
        assert name in str(err.value)


def test_video_without_audio(tmp_path: Path) -> None:
    path = make_video(tmp_path / "mute.mp4", face_frames(0.2, (64, 64)), 25)
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        load_audio(path)


def test_two_hour_file_is_rejected_from_its_header(tmp_path: Path) -> None:
    """A real 2 h 10 s WAV (8-bit at 200 Hz keeps it at 1.4 MB): rejected from the
    container's duration, before decoding (the message quotes the declared length)."""
    path = tmp_path / "long.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(200)
        w.writeframes(bytes([128]) * (200 * 7210))
    assert probe_seconds(path) == pytest.approx(7210)
    with pytest.raises(AudioDecodeError, match="audio is 7210 s long; the limit is 7201 s"):
        load_audio(path)


def test_limit_is_enforced_while_decoding_when_the_container_understates(tmp_path: Path) -> None:
    """A Matroska file whose timestamps claim 1 s but which holds 4 s of Opus."""
    honest = encode_audio(tmp_path / "honest.mka", tone(440, 4.0, 48_000), 48_000)
    lying = tmp_path / "lying.mka"
    with av.open(str(honest)) as src, av.open(str(lying), "w", format="matroska") as dst:
        out = dst.add_stream_from_template(src.streams.audio[0])
        for packet in src.demux(src.streams.audio[0]):
            if packet.dts is None:
                continue
            packet.pts, packet.dts = packet.pts // 4, packet.dts // 4
            packet.stream = out
            dst.mux(packet)
    assert probe_seconds(lying) < 1.5
    assert len(load_audio(lying)) / SR == pytest.approx(4.0, abs=0.05)
    with pytest.raises(AudioDecodeError, match="longer than the limit of 2 s"):
        load_audio(lying, max_seconds=2)


def test_glued_mp3s_decode_like_a_player_skipping_the_seam(tmp_path: Path) -> None:
    a = encode_audio(tmp_path / "a.mp3", tone(440, 1.0, 44_100), 44_100)
    b = encode_audio(tmp_path / "b.mp3", tone(660, 1.0, 44_100), 44_100)
    glued = tmp_path / "glued.mp3"
    glued.write_bytes(a.read_bytes() + b.read_bytes())
    y = load_audio(glued)
    assert len(y) / SR == pytest.approx(2.0, abs=0.1)
    assert dominant_frequency(y[8000:12000]) == pytest.approx(440, abs=2)
    assert dominant_frequency(y[-12000:-4000]) == pytest.approx(660, abs=2)
