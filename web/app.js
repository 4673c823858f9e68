// lipstream live page: plain JavaScript, no build step.
// Connect → POST /offer (video recvonly + audio sendrecv, so the microphone can be
// switched on later without renegotiating), then events over SSE and text/interrupt
// over small JSON calls.
"use strict";

(() => {
  const I = window.lipstreamI18n;
  const { t } = I;
  const $ = (id) => document.getElementById(id);
  const state = {
    pc: null,
    sessionId: null,
    events: null,
    micTrack: null,
    audioSender: null,
    statsTimer: null,
    lastFrames: null,
    delayMeter: null,
    serverLatencyMs: null, // the server's mic → frame p50 (SSE stats); null without mic audio
    jitterTargets: {},     // kind → jitterBufferTarget read back from the receiver (null: not set)
    streamIds: {},         // kind → the remote stream id: one id means one audio/video sync group
    delay: null,           // the latest DelayMeter figures and the total, for the page and the benchmark
  };
  window.lipstream = state; // for debugging and the browser test

  // ---- fullscreen (the Live and On-air stages) -----------------------------------
  window.lipstreamFullscreen = (stage) => {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else if (stage.requestFullscreen) stage.requestFullscreen().catch(() => {});
    else stage.querySelector("video")?.webkitEnterFullscreen?.();   // iOS Safari: the video alone
  };
  $("live-fullscreen").addEventListener("click", () => window.lipstreamFullscreen($("live-stage")));

  // ---- tabs -------------------------------------------------------------------
  for (const tab of document.querySelectorAll(".tabs button")) {
    tab.addEventListener("click", () => {
      for (const other of document.querySelectorAll(".tabs button")) {
        const on = other === tab;
        other.setAttribute("aria-selected", String(on));
        $(other.dataset.view).hidden = !on;
      }
    });
  }

  // ---- helpers ----------------------------------------------------------------
  async function api(method, url, body) {
    const init = { method, headers: window.lipstreamAuth.headers() };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(url, init);
    let data = {};
    try { data = await resp.json(); } catch (e) { /* empty body */ }
    if (resp.status === 401) {
      window.lipstreamAuth.forget();
      throw new Error(t("common.needs_token"));
    }
    if (!resp.ok) throw new Error(data.error || `${resp.status} ${resp.statusText}`);
    return data;
  }

  function setStatus(text, kind = "") {
    $("status").textContent = text;
    $("status").className = `status ${kind}`;
  }

  function logEvent(text, kind = "") {
    const li = document.createElement("li");
    li.dataset.kind = kind;
    li.textContent = `${I.time(new Date())}  ${text}`;
    $("event-log").prepend(li);
    while ($("event-log").children.length > 30) $("event-log").lastChild.remove();
  }

  function setConnected(on) {
    $("connect").disabled = on;
    $("disconnect").disabled = !on;
    $("say").disabled = !on;
    $("interrupt").disabled = !on;
    $("avatar-select").disabled = on;
  }

  // ---- connection -------------------------------------------------------------
  function waitForIce(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", check);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(resolve, 3000); // host candidates are enough on a LAN
    });
  }

  async function connect() {
    setConnected(true);
    setStatus(t("status.connecting"));
    try {
      const health = await api("GET", "/health");
      const pc = new RTCPeerConnection({ iceServers: health.ice_servers || [] });
      state.pc = pc;
      const stream = new MediaStream();
      $("avatar-video").srcObject = stream;
      pc.addEventListener("track", (ev) => {
        stream.addTrack(ev.track);
        state.jitterTargets[ev.track.kind] = window.lipstreamDelay.applyTarget(ev.receiver);
        state.streamIds[ev.track.kind] = ev.streams[0] ? ev.streams[0].id : null;
      });
      pc.addEventListener("connectionstatechange", () => {
        const s = pc.connectionState;
        if (s === "connected") setStatus(t("status.live"), "ok");
        else if (s === "failed" || s === "closed") { setStatus(t("status.lost"), "bad"); disconnect(false); }
        else setStatus(t("status.connecting"));
      });
      pc.addTransceiver("video", { direction: "recvonly" });
      const audio = pc.addTransceiver("audio", { direction: "sendrecv" });
      state.audioSender = audio.sender;
      if ($("mic-toggle").checked) await micOn();

      await pc.setLocalDescription(await pc.createOffer());
      await waitForIce(pc);
      const answer = await api("POST", "/offer", {
        sdp: pc.localDescription.sdp,
        type: pc.localDescription.type,
        avatar: $("avatar-select").value,
      });
      state.sessionId = answer.session_id;
      await pc.setRemoteDescription({ sdp: window.lipstreamDelay.answerSdp(answer.sdp), type: answer.type });
      listen(answer.session_id);
      state.delayMeter = new window.lipstreamDelay.DelayMeter(pc);
      state.statsTimer = setInterval(receivedStats, 1000);
      logEvent(t("event.session", { id: answer.session_id }), "session");
    } catch (err) {
      setStatus(t("status.error", { reason: err.message }), "bad");
      await disconnect(false);
    }
  }

  async function disconnect(tellServer = true) {
    const id = state.sessionId;
    state.sessionId = null;
    if (state.events) state.events.close();
    state.events = null;
    clearInterval(state.statsTimer);
    clearStats();
    micOff();
    if (state.pc) state.pc.close();
    state.pc = null;
    if (tellServer && id) {
      try { await api("DELETE", `/sessions/${id}`); } catch (e) { /* already gone */ }
    }
    setConnected(false);
    if (tellServer) setStatus(t("status.not_connected"));
  }

  // ---- microphone -------------------------------------------------------------
  async function micOn() {
    if (state.micTrack || !state.audioSender) return;
    try {
      const media = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
      state.micTrack = media.getAudioTracks()[0];
      await state.audioSender.replaceTrack(state.micTrack);
      logEvent(t("event.mic_on"), "mic");
    } catch (err) {
      $("mic-toggle").checked = false;
      logEvent(t("ptt.unavailable", { reason: err.message }), "mic");
    }
  }

  function micOff() {
    if (!state.micTrack) return;
    if (state.audioSender) state.audioSender.replaceTrack(null).catch(() => {});
    state.micTrack.stop();
    state.micTrack = null;
    logEvent(t("event.mic_off"), "mic");
  }

  $("mic-toggle").addEventListener("change", (ev) => {
    if (!state.pc) return; // applied when connecting
    if (ev.target.checked) micOn(); else micOff();
  });

  // ---- events and stats -------------------------------------------------------
  function listen(id) {
    const es = new EventSource(window.lipstreamAuth.url(`/sessions/${id}/events`));
    state.events = es;
    es.addEventListener("stats", (ev) => showStats(JSON.parse(ev.data)));
    for (const kind of ["speech_start", "speech_end", "speech_cancelled", "error", "closed"]) {
      es.addEventListener(kind, (ev) => {
        const d = JSON.parse(ev.data);
        let text = t(`event.${kind}`);
        if (d.text) text += t("event.quote", { text: d.text.slice(0, 60) });
        if (d.latency_ms !== undefined) text += t("event.after_request", { ms: I.number(Math.round(d.latency_ms)) });
        if (d.interrupted) text += t("event.interrupted");
        if (d.message) text += t("event.detail", { text: d.message });
        if (d.reason) text += t("event.detail", { text: d.reason });
        logEvent(text, kind);
        if (kind === "closed") disconnect(false);
      });
    }
  }

  function showStats(s) {
    $("stat-fps").textContent = I.number(s.fps, 1);
    const lat = s.latency_ms || {};
    $("stat-latency").textContent = lat.p50 == null ? t("stats.no_mic")
      : t("stats.p50_p95", { p50: I.ms(lat.p50), p95: I.ms(lat.p95) });
    $("stat-buffered").textContent = I.ms(s.buffered_s * 1000);
    $("stat-speaking").textContent = t(s.speaking ? "common.yes" : "common.no");
    state.serverLatencyMs = lat.p50 ?? null;
  }

  // A figure from a closed session would mislead: every stat goes back to "–".
  function clearStats() {
    for (const dd of $("stats").querySelectorAll("dd")) dd.textContent = "–";
    $("delay-words").textContent = "";
    state.delayMeter = null;
    state.serverLatencyMs = null;
    state.lastFrames = null;
    state.delay = null;
    state.jitterTargets = {};
    state.streamIds = {};
  }

  async function showDelay() {
    const meter = state.delayMeter;
    const s = meter ? await meter.sample() : null;
    if (!s || meter !== state.delayMeter) return; // first sample, or disconnected meanwhile
    const withMic = state.micTrack !== null && state.serverLatencyMs !== null;
    const total = window.lipstreamDelay.totalMs(s, withMic ? state.serverLatencyMs : null);
    state.delay = { ...s, serverMs: withMic ? state.serverLatencyMs : null, totalMs: total };
    $("delay-words").textContent = window.lipstreamDelay.words(total, withMic);
    if (s.audioJitterMs !== null) {
      const buffer = I.ms(s.audioJitterMs + (s.playoutMs ?? 0));
      $("stat-browser").textContent = s.concealedRatio === null ? buffer
        : t("stats.concealed", { buffer, pct: I.number(100 * s.concealedRatio, 1) });
    }
    if (s.rttMs !== null) $("stat-rtt").textContent = I.ms(s.rttMs);
  }

  function receivedStats() {
    showDelay().catch((err) => console.warn(`stats: ${err.message}`));
    const video = $("avatar-video");
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    if (!q) return;
    const now = performance.now();
    if (state.lastFrames) {
      const fps = ((q.totalVideoFrames - state.lastFrames.n) * 1000) / (now - state.lastFrames.t);
      $("stat-rx-fps").textContent = I.number(fps, 1);
    }
    state.lastFrames = { n: q.totalVideoFrames, t: now };
  }

  // ---- speech -----------------------------------------------------------------
  $("say").addEventListener("click", async () => {
    const text = $("say-text").value.trim();
    if (!text || !state.sessionId) return;
    try {
      const body = { text, interrupt: $("say-interrupt").checked };
      if ($("voice-select").value) body.voice = $("voice-select").value;
      await api("POST", `/sessions/${state.sessionId}/say`, body);
    } catch (err) { logEvent(t("onair.say_failed", { reason: err.message }), "error"); }
  });

  $("interrupt").addEventListener("click", async () => {
    if (!state.sessionId) return;
    try { await api("POST", `/sessions/${state.sessionId}/interrupt`); }
    catch (err) { logEvent(t("live.interrupt_failed", { reason: err.message }), "error"); }
  });

  $("connect").addEventListener("click", connect);
  $("disconnect").addEventListener("click", () => disconnect(true));
  window.addEventListener("pagehide", () => {
    if (state.sessionId) fetch(`/sessions/${state.sessionId}`, { method: "DELETE", keepalive: true, headers: window.lipstreamAuth.headers() });
  });

  // ---- voices and avatars -----------------------------------------------------
  async function loadVoices() {
    try {
      const data = await api("GET", "/voices");
      const select = $("voice-select");
      for (const v of data.voices) {
        const opt = document.createElement("option");
        opt.value = v.id;
        opt.textContent = I.voiceLabel(v.id) || v.label;
        select.append(opt);
      }
    } catch (err) { logEvent(t("onair.voices_failed", { reason: err.message }), "error"); }
  }

  async function loadAvatars(selectId) {
    try {
      const data = await api("GET", "/avatars");
      const select = $("avatar-select");
      for (const a of data.avatars) {
        if (a.avatar_id === "default") continue;
        if ([...select.options].some((o) => o.value === a.avatar_id)) continue;
        const opt = document.createElement("option");
        opt.value = a.avatar_id;
        opt.textContent = t("avatar.option", { name: a.name, kind: t(`avatar.kind_${a.kind}`), w: a.width, h: a.height });
        select.append(opt);
      }
      if (selectId) select.value = selectId;
      setPoster();
    } catch (err) { logEvent(t("onair.avatars_failed", { reason: err.message }), "error"); }
  }

  $("avatar-upload").addEventListener("click", async () => {
    const file = $("avatar-file").files[0];
    if (!file) { $("avatar-message").textContent = t("live.choose_file"); return; }
    const form = new FormData();
    form.append("file", file);
    form.append("name", file.name.replace(/\.[^.]+$/, ""));
    const bar = $("avatar-progress");
    bar.hidden = false;
    bar.value = 0;
    $("avatar-message").textContent = t("live.uploading");
    try {
      const job = await api("POST", "/avatars", form);
      $("avatar-message").textContent = t("live.preparing");
      for (;;) {
        await new Promise((r) => setTimeout(r, 500));
        const s = await api("GET", job.progress_url);
        bar.value = s.progress;
        if (s.state === "done") {
          $("avatar-message").textContent = t("live.ready", { name: s.avatar.name })
            + (s.avatar.warnings.length ? t("event.detail", { text: s.avatar.warnings.join("; ") }) : "");
          await loadAvatars(s.avatar.avatar_id);
          break;
        }
        if (s.state === "failed") { $("avatar-message").textContent = t("live.prep_failed", { reason: s.error }); break; }
      }
    } catch (err) {
      $("avatar-message").textContent = t("live.upload_failed", { reason: err.message });
    }
    bar.hidden = true;
  });

  // The first view is the avatar's picture, not a black box.
  function setPoster() {
    const id = $("avatar-select").value || "default";
    $("avatar-video").poster = window.lipstreamAuth.url(`/avatars/${id}/preview.jpg?size=640`);
  }
  $("avatar-select").addEventListener("change", setPoster);

  I.onChange(() => {
    if (!state.pc) setStatus(t("status.not_connected"));
    else if (state.pc.connectionState === "connected") setStatus(t("status.live"), "ok");
  });
  if (!$("say-text").value) $("say-text").value = t("live.say_default");

  setPoster();
  loadVoices();
  loadAvatars();
})();
