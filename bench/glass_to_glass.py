"""Glass to glass in a real browser: mic → ear and mic → lips, and the browser's share of them.

    python -m bench.glass_to_glass [--seconds 60] [--targets default,0] [--no-record]

The server runs as ``run_live.py`` in its own process.  Headless Debian Chromium opens the live page
with a fake microphone that plays 24 short phrases of real speech (alsa-utils' recordings) separated
by 1 s of silence, and connects with it.  ``bench/glass_probe.js`` then records in the page:

- the envelope of the local microphone track and of the received audio track, in the same AudioWorklet
  render blocks (one clock): **mic → ear** is the lag from a phrase's onset at the microphone to its
  onset in the received audio.  The received track is tapped where WebAudio gets it, after the jitter
  buffer and decoder, just before the audio output (whose own latency is not included);
- every displayed frame of the avatar (requestVideoFrameCallback, expected display time), scored like
  the server-side tests score mouths (``testing.live_measure.MouthMeter``): **mic → lips** is the lag to
  the first frame whose mouth opens for the phrase;
- the browser's share from getStats over the pass: jitter buffer delay and target (audio, video),
  audio playout delay, concealed samples and video freezes.

Each ``--targets`` entry is one pass with the page's ``?jitter=`` parameter: ``default`` leaves
Chromium's own jitter buffer target (before), a number sets ``RTCRtpReceiver.jitterBufferTarget``
in ms (after; the page's own default is 0).  Targets (issue 13): mic → ear p95 ≤ 200 ms with ≤ 0.5 %
concealed audio and no freeze; mic → lips within ±40 ms of mic → ear.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.live_common import ServerProcess, load_average, pct
from bench.report import record
from models.avatar.avatar import load_avatar
from testing.browser import Chromium, Page
from testing.live_measure import MouthMeter
from testing.media import speech_with_gaps, write_wav

PROBE = Path(__file__).with_name("glass_probe.js")
VOICES = ("Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left", "Rear_Right", "Side_Left", "Side_Right")
PHRASES = 24
GAP_S = 1.0
THUMB = 48            # the MouthMeter thumbnail side
QUIET_BEFORE_S = 0.5  # an onset needs this much quiet before it: one per phrase, not per syllable
SEARCH_S = 1.0        # look for the echo of an onset this long after it


# ---------------------------------------------------------------------------
# the fake microphone


def microphone_file(folder: Path) -> Path:
    """24 real phrases, 1 s apart: Chromium loops the file, so any window of the pass holds phrases."""
    names = [VOICES[i % len(VOICES)] for i in range(PHRASES)]
    track = speech_with_gaps(names, gaps=(GAP_S,) * (PHRASES - 1), lead=GAP_S / 2, tail=GAP_S / 2)
    return write_wav(folder / "mic.wav", track.audio, track.rate)


# ---------------------------------------------------------------------------
# one pass in the page


@dataclass
class Recording:
    """What one pass recorded: envelopes on the audio clock, frames on the performance clock."""

    target: str
    env: list[list[float]] = field(default_factory=list)          # [ctx time, mic rms, heard rms]
    clock: list[list[float]] = field(default_factory=list)        # [ctx time, performance time] (s)
    frame_times: list[float] = field(default_factory=list)        # performance time (s)
    scores: list[float] = field(default_factory=list)             # mouth opening per frame
    stats_before: dict = field(default_factory=dict)
    stats_after: dict = field(default_factory=dict)
    page_delays_ms: list[float] = field(default_factory=list)     # what the page told the person
    applied: dict = field(default_factory=dict)                   # jitterBufferTarget read back per kind
    same_stream: bool = False


STATS_JS = """window.lipstream.pc.getStats().then((report) => {
  const out = {};
  for (const s of report.values()) {
    if (s.type === "inbound-rtp") out[s.kind] = s;
    if (s.type === "media-playout") out.playout = s;
  }
  return out;
})"""


async def take(page: Page, meter: MouthMeter, rec: Recording) -> None:
    """Move the probe's data into ``rec``, scoring each frame's mouth on the way."""
    batch = await page.evaluate("window.glassProbe.take()", timeout=60)
    rec.env += batch["env"]
    rec.clock += batch["clock"]
    pixels = np.frombuffer(base64.b64decode(batch["pixels"]), dtype=np.uint8)
    x0, y0, x1, y1 = meter_boxes(meter)[0]
    per_frame = THUMB * THUMB + (x1 - x0) * (y1 - y0)
    for i, t in enumerate(batch["frames"]):
        chunk = pixels[i * per_frame : (i + 1) * per_frame].astype(np.float32)
        rec.frame_times.append(t)
        rec.scores.append(mouth_score(meter, chunk[: THUMB * THUMB], chunk[THUMB * THUMB :].reshape(y1 - y0, x1 - x0)))


def meter_boxes(meter: MouthMeter) -> tuple[list[int], list[int]]:
    """The mouth box and the face-above-the-mouth box, clipped to the frame as MouthMeter crops them."""
    clip = lambda box: [max(0, box[0]), max(0, box[1]), box[2], box[3]]  # noqa: E731
    return clip(meter.mouth), clip(meter.upper)


def mouth_score(meter: MouthMeter, thumb: np.ndarray, mouth: np.ndarray) -> float:
    """MouthMeter.score on the page's grabs: nearest closed-mouth loop frame by the face above the
    mouth, then the mean difference inside the mouth box."""
    k = int(np.argmin(np.abs(meter.thumbs - thumb[None, :]).mean(axis=1)))
    ref = meter.mouths[k]
    h, w = min(ref.shape[0], mouth.shape[0]), min(ref.shape[1], mouth.shape[1])
    return float(np.abs(mouth[:h, :w] - ref[:h, :w]).mean())


async def run_pass(browser: Chromium, url: str, target: str, seconds: float, meter: MouthMeter) -> Recording:
    rec = Recording(target)
    page = await browser.open(f"{url}/?jitter={target}")
    await page.wait_for("document.readyState === 'complete' && !!window.lipstream && !!window.lipstreamDelay")
    await page.evaluate("document.getElementById('mic-toggle').checked = true")
    await page.evaluate("document.getElementById('connect').click()")
    await page.wait_for("window.lipstream.micTrack && document.getElementById('avatar-video').currentTime > 2", timeout=40)
    rec.applied = await page.evaluate("window.lipstream.jitterTargets")
    ids = await page.evaluate("window.lipstream.streamIds")
    rec.same_stream = bool(ids.get("audio")) and ids.get("audio") == ids.get("video")
    mouth, upper = meter_boxes(meter)
    await page.evaluate(f"({PROBE.read_text()})({mouth}, {upper}, {THUMB})")
    rec.stats_before = await page.evaluate(STATS_JS)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        await asyncio.sleep(2.0)
        await take(page, meter, rec)
        delay = await page.evaluate("window.lipstream.delay && window.lipstream.delay.totalMs")
        if delay is not None and await page.evaluate("window.lipstream.delay.serverMs !== null"):
            rec.page_delays_ms.append(float(delay))
    rec.stats_after = await page.evaluate(STATS_JS)
    await page.evaluate("window.glassProbe.stop()")
    await page.evaluate("document.getElementById('disconnect').click()")
    await page.wait_for("window.lipstream.sessionId === null")
    await page.send("Page.close")
    return rec


# ---------------------------------------------------------------------------
# analysis


def onsets(t: np.ndarray, env: np.ndarray, threshold: float) -> np.ndarray:
    """Times where ``env`` rises above ``threshold`` after at least QUIET_BEFORE_S below it."""
    loud = env > threshold
    out, last_loud = [], -np.inf
    for ti, is_loud in zip(t, loud):
        if is_loud:
            if ti - last_loud >= QUIET_BEFORE_S:
                out.append(ti)
            last_loud = ti
    return np.array(out)


def first_after(times: np.ndarray, values: np.ndarray, start: float, threshold: float) -> float | None:
    idx = np.flatnonzero((times >= start) & (times < start + SEARCH_S) & (values > threshold))
    return float(times[idx[0]]) if len(idx) else None


def smooth(x: np.ndarray, n: int) -> np.ndarray:
    return np.convolve(x, np.ones(n) / n, mode="same")


def level(env: np.ndarray, db_below_peak: float) -> float:
    """A threshold ``db_below_peak`` under the loud part (the 99th percentile: one click is no peak)."""
    return float(np.percentile(env, 99)) * 10 ** (-db_below_peak / 20)


@dataclass
class Lags:
    ear_ms: list[float]
    lips_ms: list[float]
    lips_minus_ear_ms: list[float]
    phrases: int


def lags(rec: Recording) -> Lags:
    env = np.array(rec.env)
    t, mic, heard = env[:, 0], smooth(env[:, 1], 4), smooth(env[:, 2], 4)   # 4 blocks ≈ 10 ms
    clock = np.array(rec.clock)
    to_perf = float(np.median(clock[:, 1] - clock[:, 0]))                  # audio clock → performance clock
    frames, scores = np.array(rec.frame_times) - to_perf, np.array(rec.scores)
    mouth_open = np.percentile(scores, 20) + 0.35 * (np.percentile(scores, 95) - np.percentile(scores, 20))
    mic_onsets = onsets(t, mic, level(mic, 26))
    mic_onsets = mic_onsets[mic_onsets < t[-1] - SEARCH_S]
    ear, lips, both = [], [], []
    for m in mic_onsets:
        e = first_after(t, heard, m, level(heard, 26))
        lip = first_after(frames, scores, m - 0.1, mouth_open)
        if e is not None:
            ear.append((e - m) * 1000)
        if lip is not None:
            lips.append((lip - m) * 1000)
        if e is not None and lip is not None:
            both.append((lip - e) * 1000)
    return Lags(ear, lips, both, len(mic_onsets))


def mean_ms(after: dict, before: dict, total: str, count: str) -> float:
    n = after.get(count, 0) - before.get(count, 0)
    return 1000 * (after.get(total, 0) - before.get(total, 0)) / n if n > 0 and total in after else float("nan")


def browser_share(rec: Recording) -> dict[str, float]:
    a0, a1 = rec.stats_before.get("audio", {}), rec.stats_after.get("audio", {})
    v0, v1 = rec.stats_before.get("video", {}), rec.stats_after.get("video", {})
    p0, p1 = rec.stats_before.get("playout", {}), rec.stats_after.get("playout", {})
    received = a1.get("totalSamplesReceived", 0) - a0.get("totalSamplesReceived", 0)
    concealed = a1.get("concealedSamples", 0) - a0.get("concealedSamples", 0)
    return {
        "audio_jb": mean_ms(a1, a0, "jitterBufferDelay", "jitterBufferEmittedCount"),
        "audio_target": mean_ms(a1, a0, "jitterBufferTargetDelay", "jitterBufferEmittedCount"),
        "video_jb": mean_ms(v1, v0, "jitterBufferDelay", "jitterBufferEmittedCount"),
        "video_target": mean_ms(v1, v0, "jitterBufferTargetDelay", "jitterBufferEmittedCount"),
        "playout": mean_ms(p1, p0, "totalPlayoutDelay", "totalSamplesCount"),
        "concealed_pct": 100 * concealed / received if received else float("nan"),
        "freezes": v1.get("freezeCount", 0) - v0.get("freezeCount", 0),
        "freeze_s": v1.get("totalFreezesDuration", 0) - v0.get("totalFreezesDuration", 0),
    }


def row(rec: Recording) -> str:
    lg, sh = lags(rec), browser_share(rec)
    f = lambda xs: f"{pct(xs, 50):.0f} / {pct(xs, 95):.0f}"  # noqa: E731
    page = f"{pct(rec.page_delays_ms, 50):.0f}" if rec.page_delays_ms else "–"
    applied = ", ".join(f"{k} {v}" for k, v in sorted(rec.applied.items())) or "–"
    return (f"| {rec.target} | {applied} | {len(lg.ear_ms)}/{lg.phrases} | {f(lg.ear_ms)} | {f(lg.lips_ms)} | "
            f"{f(lg.lips_minus_ear_ms)} | {sh['audio_jb']:.0f} ({sh['audio_target']:.0f}) | "
            f"{sh['video_jb']:.0f} ({sh['video_target']:.0f}) | {sh['playout']:.0f} | {sh['concealed_pct']:.2f} % | "
            f"{sh['freezes']} ({sh['freeze_s']:.2f} s) | {page} | {'yes' if rec.same_stream else 'no'} |")


# ---------------------------------------------------------------------------


async def main_async(seconds: float, targets: list[str], do_record: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="lipstream-g2g-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        wav = microphone_file(Path(tmp))
        server = await ServerProcess.start(data)
        try:
            meter = MouthMeter(load_avatar("default", data / "avatars"))
            async with Chromium.launch(fake_audio=wav) as browser:
                recs = [await run_pass(browser, server.url, target, seconds, meter) for target in targets]
        finally:
            server.stop()
    header = ("| jitter target | read back (ms) | phrases | mic → ear p50 / p95 ms | mic → lips p50 / p95 ms | "
              "lips − ear p50 / p95 ms | audio jitter buffer (target) ms | video jitter buffer (target) ms | "
              "audio playout ms | concealed | freezes | page says (ms, p50) | one sync group |")
    lines = [
        f"Headless Debian Chromium on loopback, live page with a fake microphone (24 alsa-utils phrases, 1 s apart, "
        f"looped), {seconds:.0f} s per pass, passes in one run, load {load_average():.2f}. Server, browser and "
        "measurement share the cores. mic → ear: phrase onset at the mic track → onset in the received track "
        "(WebAudio, after the jitter buffer; output device latency not included). mic → lips: → first displayed frame "
        "whose mouth opens (MouthMeter score). Browser figures: getStats means over the pass.",
        "",
        header,
        "|" + "---|" * (header.count("|") - 1),
        *[row(r) for r in recs],
    ]
    print("\n".join(lines))
    if do_record:
        record("bench/glass_to_glass.py", lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured time per pass")
    ap.add_argument("--targets", default="default,0", help="comma-separated ?jitter= values, one pass each")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    asyncio.run(main_async(args.seconds, args.targets.split(","), not args.no_record))


if __name__ == "__main__":
    main()
