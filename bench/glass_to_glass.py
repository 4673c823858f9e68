"""Glass to glass in a real browser: mic → ear and mic → lips, and the browser's share of them.

    python -m bench.glass_to_glass [--seconds 60] [--rounds 2] [--passes "jitter=default&ptime=default,"]
                                   [--lossy] [--no-record]

The server runs as ``run_live.py`` in its own process.  Headless Debian Chromium opens the live page
with a fake microphone that plays 24 short phrases of real speech (alsa-utils' recordings) separated
by 1 s of silence, and connects with it.  ``bench/glass_probe.js`` then records in the page:

- the envelope of the local microphone track and of the received audio track, in the same AudioWorklet
  render blocks (one clock): **mic → ear** is the lag from a phrase's onset at the microphone to its
  onset in the received audio.  The received track is tapped where WebAudio gets it, after the jitter
  buffer and decoder, just before the audio output (whose own latency is not included);
- every displayed frame of the avatar (requestVideoFrameCallback, expected display time), scored like
  the server-side tests score mouths (``testing.live_measure.MouthMeter``): **mic → lips** is the lag to
  the first frame whose mouth opens for the phrase, and **lips − voice**, the lag that best correlates the
  displayed mouth opening with the heard loudness over the whole pass (``testing.live_measure.best_lag``,
  as the server-side sync tests measure it): a phrase starting on "f" or "s" opens the mouth only at its
  vowel, which the onset lag counts and the correlation does not;
- the browser's share from getStats over the pass: jitter buffer delay and target (audio, video),
  audio playout delay, concealed samples and video freezes.

Each ``--passes`` entry is one pass: a live page query string (empty: the page as a user gets it), or
``channel``: the On-air console's push-to-talk microphone drives a new channel, and two WHEP viewers of it
listen -- the console's own view (jitter target 0, as the console sets it) and the broadcast page's
receiver (the same ``WhepClient``, receive-only, with the browser's own jitter buffer, as
``web/broadcast.js`` uses it), run inside the console's page so that every envelope shares the mic's
audio clock.
``jitter=default`` leaves Chromium's own jitter buffer target, a number sets
``RTCRtpReceiver.jitterBufferTarget`` in ms (the page's own default is 0); ``ptime=default`` drops the
server's request for 10 ms microphone packets (the browser then sends 20 ms ones).  The passes run
``--rounds`` times, alternating, so a slow minute of the shared machine does not land on one setting
alone; each setting's row pools its passes' phrases, and "per pass" shows the spread between sessions
(each session's microphone lands at its own phase of the frame clock).  Targets (issue 13): mic → ear
p95 ≤ 200 ms with ≤ 0.5 % concealed audio and no freeze; mic → lips within ±40 ms of mic → ear.

``--lossy`` runs the server behind a link with 2 % loss and up to 30 ms of jitter each way
(``bench.lossy_link``: user-space, as this kernel has no netem); target p95 < 400 ms, playing smoothly.
Its figures go to their own section.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from bench.live_common import ServerProcess, load_average, pct
from bench.report import record
from models.avatar.avatar import load_avatar
from testing.browser import Chromium, Page
from testing.live_measure import MouthMeter, best_lag
from testing.media import speech_with_gaps, write_wav

PROBE = Path(__file__).with_name("glass_probe.js")
VOICES = ("Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left", "Rear_Right", "Side_Left", "Side_Right")
PHRASES = 24
GAP_S = 1.0
THUMB = 48            # the MouthMeter thumbnail side
QUIET_BEFORE_S = 0.5  # an onset needs this much quiet before it: one per phrase, not per syllable
SEARCH_S = 1.0        # look for the echo of an onset this long after it
FPS = 25.0            # the live page's frame rate
LOSS_PCT, JITTER_MS = 2.0, 30.0   # --lossy: the link
LOSSY_WORDS = (f" behind a lossy link ({LOSS_PCT:g} % of datagrams dropped and each delayed by 0-{JITTER_MS:g} ms, "
               "uniformly, both ways; user-space in the server's ICE sockets, bench/lossy_link.py: no netem here)")


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
class Listener:
    """One receiver whose audio the probe taps next to the microphone."""

    name: str
    pc: str                  # JS: its RTCPeerConnection
    lips: bool = False       # the probe's video element shows this receiver's picture


@dataclass
class Recording:
    """What one pass recorded: envelopes on the audio clock, frames on the performance clock."""

    target: str
    listeners: list[Listener]
    env: list[list[float]] = field(default_factory=list)          # [ctx time, mic rms, heard rms per listener]
    clock: list[list[float]] = field(default_factory=list)        # [ctx time, performance time] (s)
    frame_times: list[float] = field(default_factory=list)        # performance time (s)
    scores: list[float] = field(default_factory=list)             # mouth opening per frame
    stats_before: dict = field(default_factory=dict)              # listener name → its getStats summary
    stats_after: dict = field(default_factory=dict)
    page_delays_ms: list[float] = field(default_factory=list)     # what the page told the person
    server_ms: list[float] = field(default_factory=list)          # of which the server's mic → frame (p50, from its stats)
    applied: dict = field(default_factory=dict)                   # listener name → jitterBufferTarget read back per kind
    same_stream: dict = field(default_factory=dict)               # listener name → audio and video in one stream
    mic: dict = field(default_factory=dict)                       # the server's mic figures at the pass's end


def stats_js(pc: str) -> str:
    return f"""({pc}).getStats().then((report) => {{
  const out = {{}};
  for (const s of report.values()) {{
    if (s.type === "inbound-rtp") out[s.kind] = s;
    if (s.type === "media-playout") out.playout = s;
  }}
  return out;
}})"""


def receiver_facts(pc: str) -> str:
    """JS: the jitter targets read back per kind, and the stream ids (``a=msid``) of the remote
    description's sections: one id for audio and video puts both in one sync group."""
    return f"""(() => {{
  const pc = {pc};
  const targets = {{}};
  for (const r of pc.getReceivers()) if (r.track) targets[r.track.kind] = ("jitterBufferTarget" in r) ? r.jitterBufferTarget : null;
  const streams = {{}};
  for (const part of pc.remoteDescription.sdp.split("\\r\\nm=").slice(1)) {{
    const msid = part.match(/\\r\\na=msid:(\\S+)/);
    if (msid && /^(audio|video) /.test(part)) streams[part.split(" ")[0]] = msid[1];
  }}
  return {{ targets, streams }};
}})()"""


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


PAGE_LISTENER = Listener("page", "window.lipstream.pc", lips=True)
CONSOLE_LISTENER = Listener("console", "window.lipstreamConsole.client.pc", lips=True)
BROADCAST_LISTENER = Listener("broadcast", "window.benchViewer.pc")


async def run_pass(browser: Chromium, url: str, spec: str, seconds: float, meter: MouthMeter) -> Recording:
    """One pass: ``channel`` (the On-air console's microphone drives a channel; its own WHEP view and a
    broadcast page's WHEP client listen) or a live page query string (its session's own view listens)."""
    if spec == "channel":
        rec = Recording(spec, [CONSOLE_LISTENER, BROADCAST_LISTENER])
        page, target, cid = await open_channel(browser, url)
        stats_url = f"{url}/channels/{cid}"
    else:
        rec = Recording(spec, [PAGE_LISTENER])
        page, target = await open_live_page(browser, url, spec)
        stats_url = f"{url}/sessions/{await page.evaluate('window.lipstream.sessionId')}"
    for listener in rec.listeners:
        facts = await page.evaluate(receiver_facts(listener.pc))
        rec.applied[listener.name] = facts["targets"]
        streams = facts["streams"]
        rec.same_stream[listener.name] = bool(streams.get("audio")) and streams.get("audio") == streams.get("video")
    mouth, upper = meter_boxes(meter)
    await page.evaluate(f"({PROBE.read_text()})({mouth}, {upper}, {THUMB}, {target})")
    for listener in rec.listeners:
        rec.stats_before[listener.name] = await page.evaluate(stats_js(listener.pc))
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        await asyncio.sleep(2.0)
        await take(page, meter, rec)
        if spec == "channel":
            if not await page.evaluate("window.lipstreamConsole.talking"):
                raise RuntimeError("push-to-talk was released during the pass")
            continue
        delay = await page.evaluate("window.lipstream.delay && [window.lipstream.delay.totalMs, window.lipstream.delay.serverMs]")
        if delay is not None and None not in delay:
            rec.page_delays_ms.append(float(delay[0]))
            rec.server_ms.append(float(delay[1]))
    for listener in rec.listeners:
        rec.stats_after[listener.name] = await page.evaluate(stats_js(listener.pc))
    async with aiohttp.ClientSession() as http, http.get(stats_url) as resp:
        stats = await resp.json()
    rec.mic = {k: stats[k] for k in ("mic_underruns", "mic_skipped_s", "mic_headroom_ms")}
    if spec == "channel":
        rec.server_ms.append(float(stats["latency_ms"]["p50"]))
    await page.evaluate("window.glassProbe.stop()")
    if spec == "channel":
        await page.evaluate("window.benchViewer.close()")
        async with aiohttp.ClientSession() as http, http.delete(stats_url) as resp:
            if resp.status != 200:   # each round makes its own channel: free its place for the next
                raise RuntimeError(f"DELETE {stats_url}: {resp.status} {await resp.text()}")
    else:
        await page.evaluate("document.getElementById('disconnect').click()")
        await page.wait_for("window.lipstream.sessionId === null")
    await page.send("Page.close")
    return rec


async def open_live_page(browser: Chromium, url: str, query: str) -> tuple[Page, str]:
    page = await browser.open(f"{url}/?{query}")
    await page.wait_for("document.readyState === 'complete' && !!window.lipstream && !!window.lipstreamDelay")
    await page.evaluate("document.getElementById('mic-toggle').checked = true")
    await page.evaluate("document.getElementById('connect').click()")
    await page.wait_for("window.lipstream.micTrack && document.getElementById('avatar-video').currentTime > 2", timeout=40)
    heard = "window.lipstream.pc.getReceivers().find((r) => r.track && r.track.kind === 'audio').track"
    return page, (f"{{ mic: window.lipstream.micTrack, heard: [{heard}], "
                  "video: document.getElementById('avatar-video') }")


async def open_channel(browser: Chromium, url: str) -> tuple[Page, str, str]:
    """A new channel on the default avatar, watched in the On-air console with push-to-talk held;
    next to it, in the same page (one audio clock), the broadcast page's receiver: the same
    ``WhepClient``, receive-only, at the browser's own jitter buffer, on the channel's viewer link."""
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/channels", json={"name": f"glass-{time.monotonic_ns()}"}) as resp:
            info = await resp.json()
            if resp.status != 201:
                raise RuntimeError(f"POST /channels: {resp.status} {info}")
    cid = json.dumps(info["channel_id"])
    page = await browser.open(f"{url}/?lang=en")
    await page.wait_for("document.readyState === 'complete' && !!window.lipstreamConsole && !!window.lipstreamWhep")
    await page.evaluate("document.getElementById('tab-onair').click()")
    await page.wait_for("window.lipstreamConsole.available !== null", timeout=20)
    await page.evaluate(f"window.lipstreamConsole.reload({cid})")
    await page.wait_for(f"window.lipstreamConsole.channel && window.lipstreamConsole.channel.channel_id === {cid}")
    await page.wait_for("document.getElementById('oa-video').currentTime > 2", timeout=60)
    await page.evaluate("document.getElementById('oa-ptt').dispatchEvent(new PointerEvent('pointerdown', {bubbles: true}))")
    await page.wait_for("window.lipstreamConsole.mic && window.lipstreamConsole.mic.track.enabled"
                        " && window.lipstreamConsole.client.audioSender.track === window.lipstreamConsole.mic.track",
                        timeout=10)
    await page.evaluate("""(async () => {
      const heard = new MediaStream();
      window.benchViewer = new window.lipstreamWhep.WhepClient({
        url: document.getElementById('oa-link-whep').value, onTrack: (ev) => heard.addTrack(ev.track) });
      window.benchViewerStream = heard;
      await window.benchViewer.connect();
    })()""", timeout=30)
    await page.wait_for("window.benchViewerStream.getAudioTracks().length === 1"
                        " && window.benchViewer.pc.connectionState === 'connected'", timeout=30)
    heard = lambda pc: f"{pc}.getReceivers().find((r) => r.track && r.track.kind === 'audio').track"  # noqa: E731
    return page, (f"{{ mic: window.lipstreamConsole.mic.track, heard: [{heard(CONSOLE_LISTENER.pc)}, "
                  f"{heard(BROADCAST_LISTENER.pc)}], video: document.getElementById('oa-video') }}"), info["channel_id"]


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
    sync_ms: float | None = None   # lips − voice over the whole pass, by cross-correlation
    sync_r: float | None = None


def lags(rec: Recording, k: int) -> Lags:
    """Lags of listener ``k`` (its lips only if the probe's video shows its picture)."""
    env = np.array(rec.env)
    t, mic, heard = env[:, 0], smooth(env[:, 1], 4), smooth(env[:, 2 + k], 4)   # 4 blocks ≈ 10 ms
    clock = np.array(rec.clock)
    to_perf = float(np.median(clock[:, 1] - clock[:, 0]))                  # audio clock → performance clock
    frames, scores = np.array(rec.frame_times) - to_perf, np.array(rec.scores)
    mouth_open = np.percentile(scores, 20) + 0.35 * (np.percentile(scores, 95) - np.percentile(scores, 20))
    mic_onsets = onsets(t, mic, level(mic, 26))
    mic_onsets = mic_onsets[mic_onsets < t[-1] - SEARCH_S]
    ear, lips, both = [], [], []
    for m in mic_onsets:
        e = first_after(t, heard, m, level(heard, 26))
        lip = first_after(frames, scores, m - 0.1, mouth_open) if rec.listeners[k].lips else None
        if e is not None:
            ear.append((e - m) * 1000)
        if lip is not None:
            lips.append((lip - m) * 1000)
        if e is not None and lip is not None:
            both.append((lip - e) * 1000)
    out = Lags(ear, lips, both, len(mic_onsets))
    if rec.listeners[k].lips and len(frames) > 25:
        # Onsets time the first opening frame, which for a phrase starting on "f" or "s" comes with the
        # vowel after it: phonetics, not sync. The whole pass's mouth opening against the loudness of
        # the voice as heard (as the server-side sync tests compare them) measures the offset itself.
        # A frame shows the mouth of its midpoint (models/mouth/timeline.py): half a frame after it appears.
        lag, r = best_lag(frames + 0.5 / FPS, scores, t, heard, max_lag=0.25)
        out.sync_ms, out.sync_r = -1000.0 * lag, r
    return out


def mean_ms(after: dict, before: dict, total: str, count: str) -> float:
    n = after.get(count, 0) - before.get(count, 0)
    return 1000 * (after.get(total, 0) - before.get(total, 0)) / n if n > 0 and total in after else float("nan")


def browser_share(rec: Recording, k: int) -> dict[str, float]:
    before, after = rec.stats_before[rec.listeners[k].name], rec.stats_after[rec.listeners[k].name]
    a0, a1 = before.get("audio", {}), after.get("audio", {})
    v0, v1 = before.get("video", {}), after.get("video", {})
    p0, p1 = before.get("playout", {}), after.get("playout", {})
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


LABELS = {
    "page": "live page `?{}`",
    "console": "On-air console's own view (WHEP, push-to-talk)",
    "broadcast": "broadcast page's WHEP client (receive-only, browser's own buffer)",
}


def row(recs: list[Recording], k: int) -> str:
    """Listener ``k`` of one setting: its passes' phrases pooled; browser figures averaged over the passes."""
    name = recs[0].listeners[k].name
    lgs, shs = [lags(r, k) for r in recs], [browser_share(r, k) for r in recs]
    ear = [x for lg in lgs for x in lg.ear_ms]
    lips = [x for lg in lgs for x in lg.lips_ms]
    both = [x for lg in lgs for x in lg.lips_minus_ear_ms]
    sh = {k: float(np.nanmean([d[k] for d in shs])) for k in shs[0] if k not in ("freezes", "freeze_s")}
    freezes, freeze_s = sum(d["freezes"] for d in shs), sum(d["freeze_s"] for d in shs)
    f = lambda xs: f"{pct(xs, 50):.0f} / {pct(xs, 95):.0f}" if xs else "–"  # noqa: E731
    per_pass = ", ".join(f"{pct(lg.ear_ms, 50):.0f}" for lg in lgs if lg.ear_ms)
    sync = ", ".join(f"{lg.sync_ms:+.0f} (r {lg.sync_r:.2f})" for lg in lgs if lg.sync_ms is not None) or "–"
    server = [x for r in recs for x in r.server_ms]
    page = [x for r in recs for x in r.page_delays_ms]
    applied = ", ".join(f"{kind} {v}" for kind, v in sorted(recs[0].applied[name].items())) or "–"
    mic = (f"{sum(r.mic['mic_underruns'] for r in recs)}, {sum(r.mic['mic_skipped_s'] for r in recs):.2f} s, "
           + "/".join(f"{r.mic['mic_headroom_ms']:.0f}" for r in recs))
    label = LABELS[name].format(recs[0].target) if recs[0].target else "live page as served"
    return (f"| {label} | {applied} | {len(ear)}/{sum(lg.phrases for lg in lgs)} | {f(ear)} | {per_pass} | "
            f"{f(lips)} | {f(both)} | {sync} | {sh['audio_jb']:.0f} ({sh['audio_target']:.0f}) | "
            f"{sh['video_jb']:.0f} ({sh['video_target']:.0f}) | {sh['playout']:.0f} | {sh['concealed_pct']:.2f} % | "
            f"{freezes} ({freeze_s:.2f} s) | {pct(server, 50) if server else float('nan'):.0f} | "
            f"{mic} | {pct(page, 50) if page else float('nan'):.0f} | "
            f"{'yes' if all(r.same_stream[name] for r in recs) else 'no'} |")


# ---------------------------------------------------------------------------


async def main_async(seconds: float, passes: list[str], rounds: int, lossy: bool, do_record: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="lipstream-g2g-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        wav = microphone_file(Path(tmp))
        launcher = ("bench.lossy_link", "--loss-pct", str(LOSS_PCT), "--jitter-ms", str(JITTER_MS)) if lossy else ()
        server = await ServerProcess.start(data, launcher=launcher)
        try:
            meter = MouthMeter(load_avatar("default", data / "avatars"))
            async with Chromium.launch(fake_audio=wav) as browser:
                recs = [await run_pass(browser, server.url, query, seconds, meter)
                        for _ in range(rounds) for query in passes]
        finally:
            server.stop()
    header = ("| listener | jitter target read back (ms) | phrases | mic → ear p50 / p95 ms | per pass p50 ms | "
              "mic → lips p50 / p95 ms | lips − ear p50 / p95 ms | lips − voice per pass, cross-correlation ms | "
              "audio jitter buffer (target) ms | "
              "video jitter buffer (target) ms | audio playout ms | concealed | freezes | "
              "server mic → frame (its stats: p50) ms | server mic: underruns, silence dropped, headroom ms per pass | "
              "page says (ms, p50) | one sync group |")
    lines = [
        f"Headless Debian Chromium on loopback{LOSSY_WORDS if lossy else ''}, live page with a fake microphone (24 alsa-utils phrases, 1 s apart, "
        f"looped), {seconds:.0f} s per pass, {rounds} round(s) of alternating passes in one run, load "
        f"{load_average():.2f}. Server, browser and "
        "measurement share the cores. mic → ear: phrase onset at the mic track → onset in the received track "
        "(WebAudio, after the jitter buffer; output device latency not included). mic → lips: → first displayed frame "
        "whose mouth opens (MouthMeter score); as a phrase that starts on \"f\" or \"s\" opens the mouth only "
        "at its vowel, lips − voice is also measured over each whole pass: the lag that best correlates the displayed "
        "mouth opening with the loudness of the voice as heard (positive: lips after voice). "
        "Browser figures: getStats means over the pass.",
        "",
        header,
        "|" + "---|" * (header.count("|") - 1),
        *[row([r for r in recs if r.target == spec], k) for spec in passes
          for k in range(len(next(r for r in recs if r.target == spec).listeners))],
    ]
    print("\n".join(lines))
    if do_record:
        record("bench/glass_to_glass.py" + (" --lossy" if lossy else ""), lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured time per pass")
    ap.add_argument("--passes", default="jitter=default&ptime=default,,channel",
                    help="comma-separated passes: a live page query string, or 'channel' (console + broadcast client); "
                         "default: the live page before, as served, then a channel")
    ap.add_argument("--rounds", type=int, default=2, help="times the passes run, alternating")
    ap.add_argument("--lossy", action="store_true", help=f"{LOSS_PCT:g} %% loss and 0-{JITTER_MS:g} ms jitter each way")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    asyncio.run(main_async(args.seconds, args.passes.split(","), max(1, args.rounds), args.lossy, not args.no_record))


if __name__ == "__main__":
    main()
