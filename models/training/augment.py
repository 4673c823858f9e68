"""Audio augmentation for training the audio-to-mouth model on synthetic speech.

The corpus is clean TTS; real users talk through laptop microphones into
rooms, over WebRTC's Opus codec.  ``augment`` applies a random chain of what
happens to real audio so the model learns the mouth, not the engine:

* speed change (resampling: tempo and pitch together, like a tape) -- the
  only op that changes timing; its ``time_scale`` multiplies phone times;
* pitch shift (resample + phase-vocoder time-stretch back, timing kept);
* reverberation (synthetic exponentially decaying room responses, RT60 in
  0.15-0.9 s; the direct path stays at t=0 so phone times do not move);
* additive noise at a random SNR: white, pink, mains hum, or babble built
  from other utterances;
* band-limiting: telephone 300-3400 Hz or a 4 kHz low-pass (zero-phase);
* an Opus round-trip through PyAV at 8-32 kb/s (what WebRTC does to a mic);
* random gain, sometimes hot enough to clip.

Every op is a pure function of its inputs and the ``numpy.random.Generator``
passed in, so augmentation is reproducible from a seed.  SNR is defined on
whole-signal mean power: ``10 log10(P_speech / P_noise)``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from models.audio.pcm import SAMPLE_RATE, float_to_int16


class AugmentError(ValueError):
    """Input audio an augmentation cannot work on (empty, not 1-D, not finite)."""


def _check(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 1:
        raise AugmentError(f"expected mono 1-D audio, got shape {a.shape}")
    if len(a) == 0:
        raise AugmentError("audio is empty")
    if not np.all(np.isfinite(a)):
        raise AugmentError("audio contains NaN or infinity")
    return a


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


# ---------------------------------------------------------------------------
# resampling and time-stretching


def resample_to_length(x: np.ndarray, n_out: int) -> np.ndarray:
    """Band-limited (FFT) resampling of ``x`` to exactly ``n_out`` samples."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n_out == n:
        return x.astype(np.float32)
    spec = np.fft.rfft(x)
    keep = min(len(spec), n_out // 2 + 1)
    out_spec = np.zeros(n_out // 2 + 1, dtype=complex)
    out_spec[:keep] = spec[:keep]
    return (np.fft.irfft(out_spec, n=n_out) * (n_out / n)).astype(np.float32)


def change_speed(x: np.ndarray, factor: float) -> tuple[np.ndarray, float]:
    """Play ``factor`` times faster (pitch rises with it).  Returns (audio, time_scale):
    a phone at t seconds is at ``t * time_scale`` afterwards."""
    a = _check(x)
    if not 0.25 <= factor <= 4.0:
        raise AugmentError(f"speed factor {factor} outside [0.25, 4]")
    n_out = max(1, int(round(len(a) / factor)))
    return resample_to_length(a, n_out), n_out / len(a)


def time_stretch(x: np.ndarray, rate: float, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    """Phase-vocoder tempo change by ``rate`` (>1 faster) without changing pitch."""
    a = _check(x).astype(np.float64)
    window = np.hanning(n_fft + 1)[:-1]
    pad = np.concatenate([np.zeros(n_fft), a, np.zeros(n_fft)])
    n_frames = 1 + (len(pad) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    stft = np.fft.rfft(pad[idx] * window, axis=1)
    steps = np.arange(0, n_frames - 1, rate)
    expected = 2 * np.pi * hop * np.arange(n_fft // 2 + 1) / n_fft
    phase = np.angle(stft[0])
    out_frames = np.empty((len(steps), n_fft // 2 + 1), dtype=complex)
    for i, s in enumerate(steps):
        k = int(s)
        frac = s - k
        mag = (1 - frac) * np.abs(stft[k]) + frac * np.abs(stft[k + 1])
        out_frames[i] = mag * np.exp(1j * phase)
        dphi = np.angle(stft[k + 1]) - np.angle(stft[k]) - expected
        dphi -= 2 * np.pi * np.round(dphi / (2 * np.pi))
        phase = phase + expected + dphi
    frames = np.fft.irfft(out_frames, n=n_fft, axis=1) * window
    n_out = n_fft + hop * (len(steps) - 1)
    y = np.zeros(n_out)
    wsum = np.zeros(n_out)
    for i in range(len(steps)):
        y[i * hop : i * hop + n_fft] += frames[i]
        wsum[i * hop : i * hop + n_fft] += window**2
    y /= np.maximum(wsum, 1e-3)
    start = int(round(n_fft / rate))
    want = int(round(len(a) / rate))
    y = y[start : start + want]
    if len(y) < want:
        y = np.concatenate([y, np.zeros(want - len(y))])
    return y.astype(np.float32)


def pitch_shift(x: np.ndarray, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` keeping duration and timing (same length out)."""
    a = _check(x)
    ratio = 2.0 ** (semitones / 12.0)
    faster, _ = change_speed(a, ratio)        # pitch x ratio, duration / ratio
    y = time_stretch(faster, 1.0 / ratio)     # duration back to the original
    y = y[: len(a)] if len(y) >= len(a) else np.concatenate([y, np.zeros(len(a) - len(y), np.float32)])
    # The vocoder's phase smearing loses ~3 dB; keep the loudness of the input.
    return (y * np.sqrt(power(a) / (power(y) + 1e-12))).astype(np.float32)


# ---------------------------------------------------------------------------
# noise


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f power spectrum noise (shaped in the frequency domain)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n=n).astype(np.float32)


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum: 50 or 60 Hz with a few decaying harmonics and random phases."""
    base = rng.choice([50.0, 60.0])
    t = np.arange(n) / SAMPLE_RATE
    y = np.zeros(n)
    for h in range(1, 6):
        y += rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * base * h * t + rng.uniform(0, 2 * np.pi))
    return y.astype(np.float32)


def babble(n: int, rng: np.random.Generator, sources: Sequence[np.ndarray]) -> np.ndarray:
    """Several other utterances overlapped at random offsets (a crowd behind the speaker)."""
    usable = [np.asarray(s, np.float32) for s in sources if len(s) > SAMPLE_RATE // 10]
    if not usable:
        raise AugmentError("babble needs at least one source utterance longer than 0.1 s")
    y = np.zeros(n, dtype=np.float32)
    for _ in range(int(rng.integers(3, 7))):
        s = usable[int(rng.integers(len(usable)))]
        s = s / (np.sqrt(power(s)) + 1e-9)
        reps = int(np.ceil((n + len(s)) / len(s)))
        tiled = np.tile(s, reps)
        off = int(rng.integers(len(s)))
        y += tiled[off : off + n]
    return y


def add_noise(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix ``noise`` under ``x`` so that 10 log10(P_x / P_noise) == snr_db."""
    a = _check(x)
    if len(noise) != len(a):
        raise AugmentError(f"noise has {len(noise)} samples, audio {len(a)}")
    pn = power(noise)
    if pn == 0.0:
        return a.copy()
    scale = np.sqrt(power(a) / (pn * 10.0 ** (snr_db / 10.0)))
    return (a + scale * noise).astype(np.float32)


# ---------------------------------------------------------------------------
# rooms, channels, codecs


def room_impulse_response(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic RIR: direct path at t=0, sparse early reflections, then
    exponentially decaying noise that falls 60 dB in ``rt60`` seconds."""
    n = max(16, int(rt60 * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    onset = int(rng.uniform(0.002, 0.008) * SAMPLE_RATE)  # first reflection after the direct sound
    tail[:onset] = 0.0
    for _ in range(int(rng.integers(3, 8))):
        k = int(rng.uniform(0.003, 0.05) * SAMPLE_RATE)
        if k < n:
            tail[k] += rng.uniform(-0.6, 0.6)
    tail *= rng.uniform(0.2, 0.6) / (np.sqrt(np.sum(tail**2)) + 1e-9)  # direct-to-reverberant ratio
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with ``rir`` (same length out, RMS preserved)."""
    a = _check(x)
    n = len(a) + len(rir) - 1
    nfft = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(a, nfft) * np.fft.rfft(rir, nfft), nfft)[: len(a)]
    y *= np.sqrt(power(a) / (power(y) + 1e-12))
    return y.astype(np.float32)


def band_limit(x: np.ndarray, low_hz: float | None, high_hz: float | None, taper_hz: float = 100.0) -> np.ndarray:
    """Zero-phase FFT band-pass (no delay, so phone times stay put)."""
    a = _check(x)
    spec = np.fft.rfft(a.astype(np.float64))
    f = np.fft.rfftfreq(len(a), 1.0 / SAMPLE_RATE)
    gain = np.ones_like(f)
    if high_hz is not None:
        gain *= np.clip((high_hz - f) / taper_hz, 0.0, 1.0)
    if low_hz is not None:
        gain *= np.clip((f - (low_hz - taper_hz)) / taper_hz, 0.0, 1.0)
    return np.fft.irfft(spec * gain, n=len(a)).astype(np.float32)


def telephone(x: np.ndarray) -> np.ndarray:
    return band_limit(x, 300.0, 3400.0)


def lowpass_4k(x: np.ndarray) -> np.ndarray:
    return band_limit(x, None, 4000.0)


def apply_gain(x: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by ``gain_db`` and hard-clip to [-1, 1] (a too-hot microphone)."""
    return np.clip(_check(x) * np.float32(10.0 ** (gain_db / 20.0)), -1.0, 1.0).astype(np.float32)


def opus_roundtrip(x: np.ndarray, bitrate: int = 16_000) -> np.ndarray:
    """Encode to Opus (in an in-memory Ogg) and decode back, time-aligned.

    The codec's look-ahead is removed by the Ogg pre-skip; any residual shift
    is measured by cross-correlation and undone, so phone times stay valid.
    """
    import av

    a = _check(x)
    pcm = float_to_int16(a)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=SAMPLE_RATE)
        stream.bit_rate = int(bitrate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    decoded: list[np.ndarray] = []
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    with av.open(buf, mode="r", format="ogg") as inp:
        for frame in inp.decode(audio=0):
            for f in resampler.resample(frame):
                decoded.append(f.to_ndarray().reshape(-1))
    for f in resampler.resample(None):
        decoded.append(f.to_ndarray().reshape(-1))
    y = np.concatenate(decoded) if decoded else np.zeros(0, np.float32)
    lag = _best_lag(a, y, max_lag=960)
    y = y[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, np.float32), y])
    if len(y) < len(a):
        y = np.concatenate([y, np.zeros(len(a) - len(y), np.float32)])
    return y[: len(a)].astype(np.float32)


def _best_lag(ref: np.ndarray, y: np.ndarray, max_lag: int) -> int:
    """Lag L (|L| <= max_lag) maximising correlation of ref[t] with y[t + L]."""
    n = min(len(ref), len(y), 5 * SAMPLE_RATE)
    if n < 2 * max_lag or power(ref[:n]) == 0:
        return 0
    nfft = 1 << (2 * n).bit_length()
    corr = np.fft.irfft(np.conj(np.fft.rfft(ref[:n], nfft)) * np.fft.rfft(y[:n], nfft), nfft)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    vals = np.concatenate([corr[: max_lag + 1], corr[-max_lag:]])
    return int(lags[int(np.argmax(vals))])


# ---------------------------------------------------------------------------
# the random chain


def augment(
    audio16k: np.ndarray,
    rng: np.random.Generator,
    babble_sources: Sequence[np.ndarray] | None = None,
    applied: list[str] | None = None,
) -> tuple[np.ndarray, float]:
    """A random, realistic degradation of ``audio16k``.

    Returns ``(audio, time_scale)``: phone times of the input multiplied by
    ``time_scale`` are the phone times of the output (only the speed change
    moves them).  ``babble_sources``: other utterances for babble noise.
    ``applied`` (optional) collects a readable description of each op.
    """
    y = _check(audio16k)
    log = applied if applied is not None else []
    time_scale = 1.0
    if rng.random() < 0.5:
        factor = float(rng.uniform(0.88, 1.12))
        y, time_scale = change_speed(y, factor)
        log.append(f"speed x{factor:.3f}")
    if rng.random() < 0.3:
        semis = float(rng.uniform(-3.0, 3.0))
        y = pitch_shift(y, semis)
        log.append(f"pitch {semis:+.2f} st")
    if rng.random() < 0.35:
        rt60 = float(rng.uniform(0.15, 0.9))
        y = reverberate(y, room_impulse_response(rt60, rng))
        log.append(f"reverb rt60={rt60:.2f}s")
    if rng.random() < 0.6:
        kinds = ["white", "pink", "hum"] + (["babble", "babble"] if babble_sources else [])
        kind = kinds[int(rng.integers(len(kinds)))]
        snr = float(rng.uniform(0.0, 30.0)) if kind != "hum" else float(rng.uniform(10.0, 35.0))
        n = len(y)
        noise = {
            "white": lambda: white_noise(n, rng),
            "pink": lambda: pink_noise(n, rng),
            "hum": lambda: hum(n, rng),
            "babble": lambda: babble(n, rng, babble_sources or []),
        }[kind]()
        y = add_noise(y, noise, snr)
        log.append(f"{kind} noise snr={snr:.1f}dB")
    if rng.random() < 0.2:
        if rng.random() < 0.5:
            y = telephone(y)
            log.append("telephone 300-3400Hz")
        else:
            y = lowpass_4k(y)
            log.append("low-pass 4kHz")
    if rng.random() < 0.3:
        rate = int(rng.choice([8_000, 12_000, 16_000, 24_000, 32_000]))
        y = opus_roundtrip(y, rate)
        log.append(f"opus {rate // 1000}kb/s")
    if rng.random() < 0.8:
        # Mostly quieter/louder; 1 in 10 hot enough to clip.
        gain_db = float(rng.uniform(6.0, 18.0)) if rng.random() < 0.1 else float(rng.uniform(-20.0, 6.0))
        y = apply_gain(y, gain_db)
        log.append(f"gain {gain_db:+.1f}dB")
    return np.clip(y, -1.0, 1.0).astype(np.float32), time_scale
