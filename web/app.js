// lipstream live page: plain JavaScript, no build step.
// Connect → POST /offer (video recvonly + audio sendrecv, so the microphone can be
// switched on later without renegotiating), then events over SSE and text/interrupt
// over small JSON calls.
"use strict";

(() => {
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
      throw new Error("this server needs its token: open the link with #token=… that it printed at start-up");
    }
    if (!resp.ok) throw new Error(data.error || `${resp.status} ${resp.statusText}`);
    return data;
  }

  function setStatus(text, kind = "") {
    $("status").textContent = text;
    $("status").className = `status ${kind}`;
  }

  function logEvent(text) {
    const li = document.createElement("li");
    li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
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
    setStatus("connecting…");
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
        if (s === "connected") setStatus("live", "ok");
        else if (s === "failed" || s === "closed") { setStatus(`connection ${s}`, "bad"); disconnect(false); }
        else setStatus(s);
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
      await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
      listen(answer.session_id);
      state.delayMeter = new window.lipstreamDelay.DelayMeter(pc);
      state.statsTimer = setInterval(receivedStats, 1000);
      logEvent(`session ${answer.session_id}`);
    } catch (err) {
      setStatus(`error: ${err.message}`, "bad");
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
    if (tellServer) setStatus("not connected");
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
      logEvent("microphone on");
    } catch (err) {
      $("mic-toggle").checked = false;
      logEvent(`microphone unavailable: ${err.message}`);
    }
  }

  function micOff() {
    if (!state.micTrack) return;
    if (state.audioSender) state.audioSender.replaceTrack(null).catch(() => {});
    state.micTrack.stop();
    state.micTrack = null;
    logEvent("microphone off");
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
        let text = kind;
        if (d.text) text += `: “${d.text.slice(0, 60)}”`;
        if (d.latency_ms !== undefined) text += ` (${Math.round(d.latency_ms)} ms after the request)`;
        if (d.interrupted) text += " (interrupted)";
        if (d.message) text += `: ${d.message}`;
        if (d.reason) text += `: ${d.reason}`;
        logEvent(text);
        if (kind === "closed") disconnect(false);
      });
    }
  }

  function showStats(s) {
    $("stat-fps").textContent = s.fps.toFixed(1);
    const lat = s.latency_ms || {};
    $("stat-latency").textContent = lat.p50 == null ? "– (no mic audio)" : `${Math.round(lat.p50)} / ${Math.round(lat.p95)} ms`;
    $("stat-buffered").textContent = `${Math.round(s.buffered_s * 1000)} ms`;
    $("stat-speaking").textContent = s.speaking ? "yes" : "no";
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
      const concealed = s.concealedRatio === null ? "" : `, ${(100 * s.concealedRatio).toFixed(1)} % concealed`;
      $("stat-browser").textContent = `${Math.round(s.audioJitterMs + (s.playoutMs ?? 0))} ms${concealed}`;
    }
    if (s.rttMs !== null) $("stat-rtt").textContent = `${Math.round(s.rttMs)} ms`;
  }

  function receivedStats() {
    showDelay().catch((err) => console.warn(`stats: ${err.message}`));
    const video = $("avatar-video");
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    if (!q) return;
    const now = performance.now();
    if (state.lastFrames) {
      const fps = ((q.totalVideoFrames - state.lastFrames.n) * 1000) / (now - state.lastFrames.t);
      $("stat-rx-fps").textContent = fps.toFixed(1);
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
    } catch (err) { logEvent(`say failed: ${err.message}`); }
  });

  $("interrupt").addEventListener("click", async () => {
    if (!state.sessionId) return;
    try { await api("POST", `/sessions/${state.sessionId}/interrupt`); }
    catch (err) { logEvent(`interrupt failed: ${err.message}`); }
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
        opt.textContent = v.label;
        select.append(opt);
      }
    } catch (err) { logEvent(`voices: ${err.message}`); }
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
        opt.textContent = `${a.name} (${a.kind}, ${a.width}×${a.height})`;
        select.append(opt);
      }
      if (selectId) select.value = selectId;
    } catch (err) { logEvent(`avatars: ${err.message}`); }
  }

  $("avatar-upload").addEventListener("click", async () => {
    const file = $("avatar-file").files[0];
    if (!file) { $("avatar-message").textContent = "choose a video or photo first"; return; }
    const form = new FormData();
    form.append("file", file);
    form.append("name", file.name.replace(/\.[^.]+$/, ""));
    const bar = $("avatar-progress");
    bar.hidden = false;
    bar.value = 0;
    $("avatar-message").textContent = "uploading…";
    try {
      const job = await api("POST", "/avatars", form);
      $("avatar-message").textContent = "preparing (face tracking every frame)…";
      for (;;) {
        await new Promise((r) => setTimeout(r, 500));
        const s = await api("GET", job.progress_url);
        bar.value = s.progress;
        if (s.state === "done") {
          $("avatar-message").textContent = `ready: ${s.avatar.name}${s.avatar.warnings.length ? " — " + s.avatar.warnings.join("; ") : ""}`;
          await loadAvatars(s.avatar.avatar_id);
          break;
        }
        if (s.state === "failed") { $("avatar-message").textContent = `failed: ${s.error}`; break; }
      }
    } catch (err) {
      $("avatar-message").textContent = `upload failed: ${err.message}`;
    }
    bar.hidden = true;
  });

  loadVoices();
  loadAvatars();
})();
