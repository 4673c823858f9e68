"""Each augmentation does what it says, measurably, and deterministically."""

import numpy as np
import pytest

from models.training import augment as A

SR = 16_000


def tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speechlike(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Bursts of harmonic 'vowels' separated by silences (a stand-in with structure)."""
    rng = np.random.default_rng(seed)
    x = np.zeros(int(seconds * SR), np.float32)
    t0 = 0
    while t0 < len(x) - SR // 5:
        n = int(rng.integers(SR // 10, SR // 4))
        f0 = rng.uniform(100, 220)
        t = np.arange(n) / SR
        burst = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 12)) * np.hanning(n)
        x[t0 : t0 + n] += 0.3 * burst.astype(np.float32)
        t0 += n + int(rng.integers(SR // 20, SR // 6))
    return x


def band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum())


def envelope(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.convolve(x.astype(np.float64) ** 2, np.ones(320) / 320, "same"))[::160]


def best_envelope_lag(a: np.ndarray, b: np.ndarray, max_lag: int = 8) -> int:
    ea, eb = envelope(a), envelope(b)
    n = min(len(ea), len(eb)) - 2 * max_lag
    scores = [np.dot(ea[max_lag : max_lag + n], eb[max_lag + l : max_lag + l + n]) for l in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


@pytest.mark.parametrize("kind", ["white", "pink", "hum", "babble"])
@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_noise_hits_requested_snr(kind, snr):
    rng = np.random.default_rng(1)
    x = speechlike()
    n = len(x)
    noise = {
        "white": lambda: A.white_noise(n, rng),
        "pink": lambda: A.pink_noise(n, rng),
        "hum": lambda: A.hum(n, rng),
        "babble": lambda: A.babble(n, rng, [speechlike(1.3, 5), speechlike(0.9, 6)]),
    }[kind]()
    y = A.add_noise(x, noise, snr)
    measured = 10 * np.log10(A.power(x) / A.power(y - x))
    assert measured == pytest.approx(snr, abs=0.1)


def test_pink_noise_is_pink():
    n = A.pink_noise(SR * 4, np.random.default_rng(0))
    # 1/f: equal energy per octave, so 100-200 Hz ~ 1600-3200 Hz, unlike white noise.
    ratio = band_energy(n, 100, 200) / band_energy(n, 1600, 3200)
    assert 0.7 < ratio < 1.4
    w = A.white_noise(SR * 4, np.random.default_rng(0))
    assert band_energy(w, 100, 200) / band_energy(w, 1600, 3200) < 0.1


@pytest.mark.parametrize("factor", [0.85, 1.0, 1.15])
def test_speed_changes_duration_and_pitch_by_factor(factor):
    x = tone(440.0, 1.0)
    y, time_scale = A.change_speed(x, factor)
    assert len(y) == round(len(x) / factor)
    assert time_scale == pytest.approx(1 / factor, rel=1e-3)
    peak = np.argmax(np.abs(np.fft.rfft(y))) * SR / len(y)
    assert peak == pytest.approx(440.0 * factor, abs=2.0)


def test_speed_scales_event_times():
    x = np.zeros(SR, np.float32)
    x[8000:8160] = tone(1000, 0.01)  # a click at 0.5 s
    y, ts = A.change_speed(x, 1.25)
    onset = np.argmax(envelope(y) > 0.5 * envelope(y).max()) * 160 / SR
    assert onset == pytest.approx(0.5 * ts, abs=0.012)


@pytest.mark.parametrize("semitones", [-3.0, 2.0])
def test_pitch_shift_moves_pitch_keeps_timing(semitones):
    x = tone(300.0, 1.0) * np.repeat([0, 1, 0, 1, 1, 0, 1, 0], SR // 8).astype(np.float32)
    y = A.pitch_shift(x, semitones)
    assert len(y) == len(x)
    want = 300.0 * 2 ** (semitones / 12)
    peak = np.argmax(np.abs(np.fft.rfft(y))) * SR / len(y)
    assert peak == pytest.approx(want, rel=0.03)
    assert abs(best_envelope_lag(x, y)) <= 1  # within 10 ms


def test_reverb_has_requested_decay_and_no_delay():
    rng = np.random.default_rng(3)
    for rt60 in (0.2, 0.8):
        rir = A.room_impulse_response(rt60, rng)
        assert rir[0] == 1.0 and len(rir) == int(rt60 * SR)
        # Schroeder backward integration: energy decay curve falls ~20 dB in rt60/3.
        edc = np.cumsum(rir[1:][::-1] ** 2)[::-1]
        edc_db = 10 * np.log10(edc / edc[0])
        t20 = np.argmax(edc_db < -20) / SR
        assert t20 == pytest.approx(rt60 / 3, rel=0.35)
    x = speechlike()
    y = A.reverberate(x, A.room_impulse_response(0.6, rng))
    assert best_envelope_lag(x, y) in (0, 1)
    assert A.power(y) == pytest.approx(A.power(x), rel=1e-3)
    # The tail fills the silences between bursts.
    quiet = envelope(x) < 1e-4
    assert envelope(y)[quiet].mean() > 10 * envelope(x)[quiet].mean() + 1e-4


def test_band_limits_remove_out_of_band_energy():
    x = A.white_noise(SR * 2, np.random.default_rng(4)) * 0.1
    lp = A.lowpass_4k(x)
    assert band_energy(lp, 4100, 8000) < 1e-3 * band_energy(x, 4100, 8000)
    assert band_energy(lp, 500, 3800) > 0.95 * band_energy(x, 500, 3800)
    tel = A.telephone(x)
    assert band_energy(tel, 0, 200) < 1e-3 * band_energy(x, 0, 200)
    assert band_energy(tel, 3500, 8000) < 1e-3 * band_energy(x, 3500, 8000)
    assert band_energy(tel, 400, 3300) > 0.95 * band_energy(x, 400, 3300)


def test_gain_and_clipping():
    x = tone(200, 0.5, amp=0.5)
    quiet = A.apply_gain(x, -20.0)
    assert np.abs(quiet).max() == pytest.approx(0.05, rel=1e-3)
    hot = A.apply_gain(x, 12.0)
    assert np.abs(hot).max() == 1.0
    assert np.mean(np.abs(hot) >= 1.0) > 0.3  # a lot of it is clipped


def test_opus_roundtrip_is_lossy_but_aligned():
    x = speechlike(2.0)
    y = A.opus_roundtrip(x, 12_000)
    assert len(y) == len(x)
    assert not np.allclose(x, y, atol=1e-3)
    assert np.corrcoef(x, y)[0, 1] > 0.8
    assert A._best_lag(x, y, 480) == 0
    # Lossy, and more so at a lower bitrate.
    snr12 = 10 * np.log10(A.power(x) / A.power(y - x))
    y32 = A.opus_roundtrip(x, 32_000)
    snr32 = 10 * np.log10(A.power(x) / A.power(y32 - x))
    assert 3 < snr12 < snr32


def test_augment_is_deterministic_and_reports_time_scale():
    x = speechlike(1.5)
    a1, s1 = A.augment(x, np.random.default_rng(42), [speechlike(1.0, 9)])
    a2, s2 = A.augment(x, np.random.default_rng(42), [speechlike(1.0, 9)])
    assert s1 == s2 and np.array_equal(a1, a2)
    scales = []
    for seed in range(30):
        log: list[str] = []
        y, ts = A.augment(x, np.random.default_rng(seed), applied=log)
        assert y.dtype == np.float32 and np.abs(y).max() <= 1.0 and np.all(np.isfinite(y))
        assert len(y) == round(len(x) * ts)
        assert (ts != 1.0) == any(op.startswith("speed") for op in log)
        scales.append(ts)
    assert min(scales) < 0.97 and max(scales) > 1.03


@pytest.mark.parametrize("bad", [np.zeros(0, np.float32), np.zeros((10, 2), np.float32), np.array([0.0, np.nan])])
def test_bad_input_is_a_clear_error(bad):
    with pytest.raises(A.AugmentError):
        A.augment(bad, np.random.default_rng(0))
