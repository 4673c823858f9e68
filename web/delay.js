// How far behind a person their double speaks, from what this browser and the server measure.
//
// The delay a person notices is mouth → server → ear: the server's own mic → frame latency (its SSE
// `stats`), the network round trip, and the browser's share: the receive jitter buffer and the audio
// playout. The browser's share is the largest part on a LAN, and the page can lower it: Chromium lets a
// page set RTCRtpReceiver.jitterBufferTarget (ms). Audio and video stay in one sync group because the
// server sends both tracks under one stream id (aiortc uses one per peer connection), so lowering the
// target does not split lips from voice.
//
// `?jitter=default` leaves the browser's own target (for benchmarks: the "before"); `?jitter=<ms>` sets
// another one.
"use strict";

(() => {
  // Chromium treats the target as a floor under its adaptive buffer, so 0 asks for the least the measured
  // arrival jitter allows and never adds delay. On loopback it played without freezes and with no more
  // concealment than the browser's default (bench/glass_to_glass.py, BENCHMARKS.md); what is left of the
  // buffer follows the jitter of the server's packet timing.
  const DEFAULT_TARGET_MS = 0;

  function targetMs() {
    const q = new URLSearchParams(window.location.search).get("jitter");
    if (q === "default") return null;
    if (q !== null && q.trim() !== "" && Number.isFinite(Number(q))) return Math.max(0, Number(q));
    return DEFAULT_TARGET_MS;
  }

  function supported() {
    return typeof RTCRtpReceiver !== "undefined" && "jitterBufferTarget" in RTCRtpReceiver.prototype;
  }

  // Sets the target on one receiver; returns the value read back (null: unsupported or left alone).
  function applyTarget(receiver, ms = targetMs()) {
    if (ms === null || !supported()) return null;
    try {
      receiver.jitterBufferTarget = ms;
      return receiver.jitterBufferTarget;
    } catch (err) {
      console.warn(`jitterBufferTarget ${ms} ms refused: ${err.message}`);
      return null;
    }
  }

  // The server's answer asks for 10 ms microphone packets (a=ptime: a sample then waits at most 10 ms
  // in the browser's Opus encoder instead of 20). `?ptime=default` drops the request, so the browser
  // sends its own 20 ms packets: for benchmarks, the "before".
  function answerSdp(sdp) {
    if (new URLSearchParams(window.location.search).get("ptime") !== "default") return sdp;
    return sdp.split("\r\n").filter((line) => !line.startsWith("a=ptime:")).join("\r\n");
  }

  // Totals from one getStats report, per media kind: the browser counts since the start, so the
  // meter works on differences between two samples.
  function totals(report) {
    const t = { rttMs: null, audio: {}, video: {}, playout: {} };
    for (const s of report.values()) {
      if (s.type === "transport" && s.selectedCandidatePairId) {
        const pair = report.get(s.selectedCandidatePairId);
        if (pair && pair.currentRoundTripTime !== undefined) t.rttMs = pair.currentRoundTripTime * 1000;
      } else if (s.type === "inbound-rtp" && (s.kind === "audio" || s.kind === "video")) {
        t[s.kind] = s;
      } else if (s.type === "media-playout") {
        t.playout = s;
      }
    }
    return t;
  }

  // Mean of a total per counted item over the interval between two samples, in ms.
  function meanMs(now, before, sumKey, countKey) {
    const n = (now[countKey] || 0) - (before[countKey] || 0);
    if (!(n > 0) || now[sumKey] === undefined) return null;
    return (1000 * ((now[sumKey] || 0) - (before[sumKey] || 0))) / n;
  }

  // The browser's share and the round trip over the last interval.
  function share(now, before) {
    const concealed = (now.audio.concealedSamples || 0) - (before.audio.concealedSamples || 0);
    const received = (now.audio.totalSamplesReceived || 0) - (before.audio.totalSamplesReceived || 0);
    return {
      rttMs: now.rttMs,
      audioJitterMs: meanMs(now.audio, before.audio, "jitterBufferDelay", "jitterBufferEmittedCount"),
      audioTargetMs: meanMs(now.audio, before.audio, "jitterBufferTargetDelay", "jitterBufferEmittedCount"),
      videoJitterMs: meanMs(now.video, before.video, "jitterBufferDelay", "jitterBufferEmittedCount"),
      playoutMs: meanMs(now.playout, before.playout, "totalPlayoutDelay", "totalSamplesCount"),
      concealedRatio: received > 0 ? concealed / received : null,
      freezes: now.video.freezeCount ?? null,
    };
  }

  // Mouth → ear in ms: server mic latency (null without a microphone) + round trip + the browser's share.
  function totalMs(s, serverMs) {
    if (s.rttMs === null || s.audioJitterMs === null) return null;
    return (serverMs ?? 0) + s.rttMs + s.audioJitterMs + (s.playoutMs ?? 0);
  }

  function words(ms, withMic) {
    if (ms === null) return "";
    const I = window.lipstreamI18n;
    const s = I.seconds(Math.max(ms, 0) / 1000);
    return I.t(withMic ? "delay.heard" : "delay.reaches", { s });
  }

  class DelayMeter {
    constructor(pc) {
      this.pc = pc;
      this.before = null;
    }

    // One sample: the browser's share since the last call, or null on the first call.
    async sample() {
      if (!this.pc) return null;
      const now = totals(await this.pc.getStats());
      const out = this.before ? share(now, this.before) : null;
      this.before = now;
      return out;
    }
  }

  window.lipstreamDelay = { targetMs, supported, applyTarget, answerSdp, DelayMeter, totalMs, words };
})();
