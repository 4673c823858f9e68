// The On-air console: run a channel (a long-lived avatar stream) for its audience.
// Create/select/end a channel, pick avatar and voice, speak (text, script queue, quick replies,
// push-to-talk microphone), watch viewers, outputs and health, copy the broadcast/WHEP links.
// The console's own picture is a WHEP viewer of the channel with a sendrecv audio track: the
// push-to-talk switch enables that track, so the operator's voice drives the channel.
"use strict";

(() => {
  const I = window.lipstreamI18n;
  const { t } = I;
  const $ = (id) => document.getElementById(id);
  if (!$("onair-view")) return;

  const QUICK_KEY = "lipstream.quickReplies";
  const SCRIPT_KEY = "lipstream.script";
  const POLL_MS = 2000;

  const state = {
    available: null,      // false: this server has no channel API
    channels: [],
    channel: null,        // the selected ChannelInfo
    client: null,         // WhepClient
    events: null,         // EventSource
    poll: null,
    ticker: null,
    mic: null,            // {stream, track, ctx, analyser, timer}
    talking: false,
    avatars: [],
    avatar: "default",
    voices: [],           // curated entries present on this server: {id, label, sample}
    meter: null,
    health: null,         // {delayMs, quality} or null
    viewers: null,
    outputs: {},          // output_id -> OutputInfo (+ retryAt)
    script: loadJson(SCRIPT_KEY, []),   // [{id, text, skip, status}]
    utterances: {},       // utterance_id -> script item id
    quick: loadJson(QUICK_KEY, null),
    lastUtterance: null,  // the latest utterance this console sent
    spoken: [],           // utterance ids the channel finished speaking (latest 50)
  };
  window.lipstreamConsole = state;   // for debugging and the browser tests

  function loadJson(key, fallback) {
    try { const v = JSON.parse(localStorage.getItem(key)); return v ?? fallback; } catch (_) { return fallback; }
  }
  function saveJson(key, value) {
    try { localStorage.setItem(key, JSON.stringify(value)); } catch (_) { /* storage disabled */ }
  }

  async function api(method, url, body) {
    const init = { method, headers: window.lipstreamAuth.headers() };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(url, init);
    let data = {};
    try { data = await resp.json(); } catch (_) { /* empty body */ }
    if (resp.status === 401) window.lipstreamAuth.forget();
    if (!resp.ok) {
      const err = new Error(resp.status === 401 ? t("common.needs_token") : (data.error || `HTTP ${resp.status}`));
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  function message(text, bad = false) {
    $("oa-message").textContent = text || "";
    $("oa-message").classList.toggle("bad", bad);
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  // ---- avatars ----------------------------------------------------------------------------
  function avatarName(a) {
    return a.avatar_id === "default" ? t("avatar.default_name") : a.name;
  }

  async function loadAvatars() {
    try {
      const all = $("oa-show-all").checked ? "?all=1" : "";
      state.avatars = (await api("GET", `/avatars${all}`)).avatars;
      renderGallery();
    } catch (err) { message(t("onair.avatars_failed", { reason: err.message }), true); }
  }

  function renderGallery() {
    const cards = state.avatars.map((a) => {
      const chosen = a.avatar_id === state.avatar;
      const name = el("span", { class: "g-name", title: avatarName(a) }, avatarName(a));
      const actions = el("span", { class: "g-actions" });
      if (a.avatar_id !== "default") {
        actions.append(
          el("button", { type: "button", class: "g-rename", title: t("avatar.rename"), "aria-label": t("avatar.rename"),
                         onclick: (ev) => { ev.stopPropagation(); startRename(card, a); } }, "✎"),
          el("button", { type: "button", class: "g-delete", title: t("avatar.delete"), "aria-label": t("avatar.delete"),
                         onclick: (ev) => { ev.stopPropagation(); askDelete(ev.currentTarget, a); } }, "🗑"));
        if (!a.live) {
          actions.append(el("button", { type: "button", class: "g-add",
                                        onclick: (ev) => { ev.stopPropagation(); setLive(a, true); } }, t("avatar.add_live")));
        }
      }
      const card = el("div", { class: `g-card${chosen ? " chosen" : ""}${a.live ? "" : " studio-only"}`,
                               role: "radio", "aria-checked": String(chosen), tabindex: "0",
                               "data-avatar": a.avatar_id, onclick: () => chooseAvatar(a.avatar_id),
                               onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); chooseAvatar(a.avatar_id); } } },
        el("img", { src: window.lipstreamAuth.url(a.preview_url || `/avatars/${a.avatar_id}/preview.jpg`), alt: "", loading: "lazy" }),
        name, actions);
      return card;
    });
    $("oa-gallery").replaceChildren(...cards);
  }

  function chooseAvatar(id) {
    state.avatar = id;
    renderGallery();
    if (!state.channel) setPoster(id);
  }

  function startRename(card, a) {
    const input = el("input", { class: "g-rename-input", value: a.name, maxlength: "60", "aria-label": t("avatar.rename") });
    const name = card.querySelector(".g-name");
    name.replaceWith(input);
    input.focus();
    input.select();
    input.addEventListener("click", (ev) => ev.stopPropagation());
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      if (save && input.value.trim() && input.value !== a.name) {
        try { await api("PATCH", `/avatars/${a.avatar_id}`, { name: input.value }); }
        catch (err) { message(t("avatar.rename_failed", { reason: err.message }), true); }
      }
      loadAvatars();
    };
    input.addEventListener("keydown", (ev) => {
      ev.stopPropagation();
      if (ev.key === "Enter") { ev.preventDefault(); finish(true); }
      if (ev.key === "Escape") finish(false);
    });
    input.addEventListener("blur", () => finish(true));
  }

  // Two clicks delete: the first turns the button into "Delete?" for a few seconds.
  function askDelete(button, a) {
    if (button.dataset.armed) {
      api("DELETE", `/avatars/${a.avatar_id}`)
        .then(() => { if (state.avatar === a.avatar_id) state.avatar = "default"; loadAvatars(); })
        .catch((err) => message(t("avatar.delete_failed", { reason: err.message }), true));
      return;
    }
    button.dataset.armed = "1";
    button.textContent = t("avatar.confirm_delete");
    button.classList.add("armed");
    setTimeout(() => { if (button.isConnected) { delete button.dataset.armed; button.textContent = "🗑"; button.classList.remove("armed"); } }, 4000);
  }

  async function setLive(a, live) {
    try { await api("PATCH", `/avatars/${a.avatar_id}`, { live }); loadAvatars(); }
    catch (err) { message(err.message, true); }
  }

  function setPoster(avatarId) {
    const v = $("oa-video");
    if (avatarId) v.poster = window.lipstreamAuth.url(`/avatars/${avatarId}/preview.jpg?size=640`);
  }

  // ---- voices -------------------------------------------------------------------------------
  async function loadVoices() {
    try {
      const data = await api("GET", "/voices");
      const have = new Set(data.voices.map((v) => v.id));
      state.voices = I.curatedVoices(have);
      const own = data.voices.filter((v) => v.engine === "piper" && !state.voices.some((c) => c.id === v.id));
      for (const v of own) state.voices.push({ id: v.id, label: t("voice.own", { name: v.voice }), sample: t("voice.sample") });
      renderVoices();
    } catch (err) { message(t("onair.voices_failed", { reason: err.message }), true); }
  }

  function renderVoices() {
    const select = $("oa-voice");
    const keep = select.value || (state.channel && state.channel.voice) || "";
    select.replaceChildren(el("option", { value: "" }, t("voice.auto")),
      ...state.voices.map((v) => el("option", { value: v.id }, v.label)));
    select.value = state.voices.some((v) => v.id === keep) ? keep : "";
  }

  function voiceSample() {
    const v = state.voices.find((x) => x.id === $("oa-voice").value);
    return v ? v.sample : t("voice.sample");
  }

  $("oa-voice").addEventListener("change", async () => {
    if (!state.channel) return;
    try { await api("PATCH", `/channels/${state.channel.channel_id}`, { voice: $("oa-voice").value || null }); }
    catch (err) { message(err.message, true); }
  });

  // The preview plays here, in the operator's ears: the audience must not hear a voice being tried.
  let previewAudio = null;
  $("oa-voice-preview").addEventListener("click", async () => {
    const chosen = $("oa-voice").value || (window.lipstreamI18n.lang === "zh" ? "espeak:cmn" : "piper:joe");
    try {
      const resp = await fetch("/voices/preview", {
        method: "POST",
        headers: window.lipstreamAuth.headers({ "Content-Type": "application/json" }),
        body: JSON.stringify({ voice: chosen, text: voiceSample() }),
      });
      if (!resp.ok) throw new Error((await resp.json().catch(() => ({}))).error || resp.statusText);
      if (previewAudio) URL.revokeObjectURL(previewAudio.src);
      previewAudio = new Audio(URL.createObjectURL(await resp.blob()));
      await previewAudio.play();
    } catch (err) { message(err.message, true); }
  });

  // ---- channels -----------------------------------------------------------------------------
  async function loadChannels(selectId) {
    let data;
    try {
      data = await api("GET", "/channels");
    } catch (err) {
      if (err.status === 404 || err.status === 405) {
        state.available = false;
        message(t("onair.unavailable"), true);
        $("oa-create").disabled = true;
        return;
      }
      message(err.message, true);
      return;
    }
    state.available = true;
    state.channels = data.channels.filter((c) => c.state !== "ended");
    const select = $("oa-channel-select");
    select.replaceChildren(el("option", { value: "" }, t("onair.new_channel")),
      ...state.channels.map((c) => el("option", { value: c.channel_id }, `${c.name || c.channel_id} · ${t("state." + c.state)}`)));
    const want = selectId ?? (state.channel && state.channel.channel_id) ?? "";
    select.value = state.channels.some((c) => c.channel_id === want) ? want : "";
    if (select.value !== (state.channel ? state.channel.channel_id : "")) await selectChannel(select.value);
  }

  $("oa-channel-select").addEventListener("change", (ev) => selectChannel(ev.target.value));

  async function selectChannel(id) {
    leave();
    state.channel = id ? state.channels.find((c) => c.channel_id === id) || null : null;
    document.body.classList.toggle("on-air", !!state.channel);
    $("oa-new").hidden = !!state.channel;
    $("oa-create").hidden = !!state.channel;
    $("oa-live-controls").hidden = !state.channel;
    if (!state.channel) { renderChannel(); setPoster(state.avatar); return; }
    setPoster(state.channel.avatar);
    renderChannel();
    listen(state.channel.channel_id);
    state.poll = setInterval(refresh, POLL_MS);
    await watchChannel();
  }

  $("oa-create").addEventListener("click", async () => {
    const body = { avatar: state.avatar };
    const name = $("oa-name").value.trim();
    if (name) body.name = name;
    if ($("oa-voice").value) body.voice = $("oa-voice").value;
    $("oa-create").disabled = true;
    message(t("onair.creating"));
    try {
      const info = await api("POST", "/channels", body);
      message("");
      await loadChannels(info.channel_id);
    } catch (err) {
      message(t("onair.create_failed", { reason: err.message }), true);
    } finally {
      $("oa-create").disabled = state.available === false;
    }
  });

  $("oa-end").addEventListener("click", async (ev) => {
    const button = ev.currentTarget;
    if (!state.channel) return;
    if (!button.dataset.armed) {   // ending a stream is not undone: ask once more
      button.dataset.armed = "1";
      button.textContent = t("onair.end_confirm");
      setTimeout(() => { delete button.dataset.armed; button.textContent = t("onair.end"); }, 4000);
      return;
    }
    delete button.dataset.armed;
    button.textContent = t("onair.end");
    const id = state.channel.channel_id;
    try { await api("DELETE", `/channels/${id}`); } catch (err) { message(err.message, true); }
    await loadChannels("");
  });

  async function refresh() {
    if (!state.channel) return;
    const id = state.channel.channel_id;
    try {
      const info = await api("GET", `/channels/${id}`);
      if (!state.channel || state.channel.channel_id !== id) return;
      state.channel = info;
      state.viewers = info.viewers;
      for (const o of info.outputs || []) mergeOutput(o);
      // Each viewer's link as its receiver reports tell the server (round trip, loss) and the delay it adds.
      try { state.viewerList = (await api("GET", `/channels/${id}/viewers`)).viewers; } catch (_) { state.viewerList = []; }
      renderChannel();
      if (info.state === "ended") loadChannels("");
    } catch (err) {
      if (err.status === 404) loadChannels("");
    }
  }

  function mergeOutput(o) {
    const before = state.outputs[o.output_id] || {};
    const merged = { ...before, ...o };
    if ("retry_in_s" in o) {
      merged.retryAt = o.retry_in_s != null && (o.state === "reconnecting" || o.state === "connecting")
        ? Date.now() + o.retry_in_s * 1000 : null;
    }
    state.outputs[o.output_id] = merged;
  }

  // ---- the console's own viewer (WHEP) + push-to-talk --------------------------------------
  async function watchChannel() {
    const ch = state.channel;
    setStatus(t("status.connecting"));
    const stream = new MediaStream();
    let health = {};
    try { health = await api("GET", "/health"); } catch (_) { /* ICE servers are optional */ }
    const client = new window.lipstreamWhep.WhepClient({
      url: `/channels/${ch.channel_id}/whep`,
      headers: window.lipstreamAuth.headers(),
      iceServers: health.ice_servers || [],
      micTrack: state.mic ? state.mic.track : null,
      onTrack: (ev) => {
        stream.addTrack(ev.track);
        window.lipstreamDelay.applyTarget(ev.receiver);
      },
    });
    state.client = client;
    client.pc.addEventListener("connectionstatechange", () => {
      if (client !== state.client) return;
      const s = client.pc.connectionState;
      if (s === "connected") { setStatus(t("status.live"), "ok"); state.meter = new window.lipstreamDelay.DelayMeter(client.pc); }
      else if (s === "failed" || s === "closed" || s === "disconnected") { setStatus(t("status.lost"), "bad"); clearHealth(); }
    });
    try {
      await client.connect();
      $("oa-video").srcObject = stream;
      $("oa-video").play().catch(() => { $("oa-video").muted = true; $("oa-video").play().catch(() => {}); });
      state.ticker = setInterval(tick, 1000);
    } catch (err) {
      if (client === state.client) { setStatus(t("status.error", { reason: err.message }), "bad"); clearHealth(); }
    }
  }

  function leave() {
    if (state.events) state.events.close();
    state.events = null;
    clearInterval(state.poll);
    clearInterval(state.ticker);
    state.poll = state.ticker = null;
    if (state.client) state.client.close();
    state.client = null;
    pttOff();
    $("oa-video").srcObject = null;
    state.outputs = {};
    state.viewers = null;
    state.viewerList = [];
    clearHealth();
    setStatus(t("status.idle"));
  }

  function setStatus(text, kind = "") {
    $("oa-status").textContent = text;
    $("oa-status").className = `status ${kind}`;
  }

  async function micOn() {
    if (state.mic) return state.mic;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    const track = stream.getAudioTracks()[0];
    track.enabled = false;
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    ctx.createMediaStreamSource(stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const mic = { stream, track, ctx, analyser, level: 0 };
    // The meter shows the microphone even while not talking, so the operator can check it first.
    mic.timer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const x of samples) sum += x * x;
      const rms = Math.sqrt(sum / samples.length);
      mic.level = Math.min(1, rms * 4);
      $("oa-level").value = mic.level;
    }, 100);
    state.mic = mic;
    if (state.client && state.client.audioSender) await state.client.audioSender.replaceTrack(track);
    return mic;
  }

  async function pttOn() {
    if (!state.channel) return;
    try {
      const mic = await micOn();
      mic.track.enabled = true;
      state.talking = true;
      $("oa-ptt").classList.add("talking");
      $("oa-ptt").setAttribute("aria-pressed", "true");
      $("oa-ptt").textContent = t("ptt.talking");
    } catch (err) {
      message(t("ptt.unavailable", { reason: err.message }), true);
    }
  }

  function pttOff() {
    if (state.mic) state.mic.track.enabled = false;
    state.talking = false;
    $("oa-ptt").classList.remove("talking");
    $("oa-ptt").setAttribute("aria-pressed", "false");
    $("oa-ptt").textContent = t("ptt.hold");
  }

  const ptt = $("oa-ptt");
  ptt.addEventListener("pointerdown", (ev) => { ev.preventDefault(); try { ptt.setPointerCapture(ev.pointerId); } catch (_) { /* no such pointer */ } pttOn(); });
  ptt.addEventListener("pointerup", pttOff);
  ptt.addEventListener("pointercancel", pttOff);
  ptt.addEventListener("keydown", (ev) => { if ((ev.key === " " || ev.key === "Enter") && !ev.repeat) { ev.preventDefault(); pttOn(); } });
  ptt.addEventListener("keyup", (ev) => { if (ev.key === " " || ev.key === "Enter") { ev.preventDefault(); pttOff(); } });
  window.addEventListener("blur", pttOff);

  // ---- events, outputs, viewers, health ------------------------------------------------------
  function listen(id) {
    const es = new EventSource(window.lipstreamAuth.url(`/channels/${id}/events`));
    state.events = es;
    const data = (ev) => { try { return JSON.parse(ev.data); } catch (_) { return {}; } };
    es.addEventListener("viewers", (ev) => { state.viewers = data(ev).count; renderChannel(); });
    es.addEventListener("output", (ev) => {
      const d = data(ev);
      if (d.output_id) { mergeOutput(d); renderOutputs(); }
    });
    es.addEventListener("speech_start", (ev) => scriptStatus(data(ev).utterance_id, "speaking"));
    es.addEventListener("speech_end", (ev) => {
      const d = data(ev);
      if (!d.interrupted) state.spoken = [...state.spoken.slice(-49), d.utterance_id];
      scriptStatus(d.utterance_id, d.interrupted ? "pending" : "done");
    });
    es.addEventListener("speech_cancelled", (ev) => scriptStatus(data(ev).utterance_id, "pending"));
    es.addEventListener("error", (ev) => { if (ev.data) message(data(ev).message || "", true); });
    es.addEventListener("closed", () => loadChannels(""));
  }

  function outputWords(o) {
    const url = o.url || "";
    switch (o.state) {
      case "live":
        return o.bitrate_kbps != null ? t("output.live_rate", { url, rate: I.bitrate(o.bitrate_kbps) }) : t("output.live", { url });
      case "connecting": {
        // Never reached yet (a wrong address or key, the platform not ready): say when it tries again.
        if (o.retryAt == null) return t("output.connecting", { url });
        return t("output.connect_retry", { url, n: Math.max(0, Math.ceil((o.retryAt - Date.now()) / 1000)) });
      }
      case "reconnecting": {
        if (o.retryAt == null) return t("output.reconnecting_now", { url });
        return t("output.reconnecting", { url, n: Math.max(0, Math.ceil((o.retryAt - Date.now()) / 1000)) });
      }
      case "stopped": return t("output.stopped", { url });
      case "failed": return t("output.failed", { url, reason: o.error || o.message || "" });
      default: return url;
    }
  }

  function renderOutputs() {
    const list = Object.values(state.outputs).filter((o) => o.state !== "stopped");
    $("oa-outputs").replaceChildren(...list.map((o) =>
      el("li", { class: `output o-${o.state}`, "data-output": o.output_id },
        el("span", { class: "o-words" }, outputWords(o)),
        el("button", { type: "button", class: "danger o-stop", onclick: () => stopOutput(o.output_id) }, t("output.stop")))));
    $("oa-outputs-empty").hidden = list.length > 0;
  }

  async function stopOutput(oid) {
    if (!state.channel) return;
    try {
      await api("DELETE", `/channels/${state.channel.channel_id}/outputs/${oid}`);
      delete state.outputs[oid];
      renderOutputs();
    } catch (err) { message(err.message, true); }
  }

  $("oa-add-output").addEventListener("click", async () => {
    const url = $("oa-rtmp-url").value.trim();
    if (!state.channel) return;
    if (!/^rtmps?:\/\/\S+$/i.test(url)) { message(t("output.bad_url"), true); return; }
    try {
      const info = await api("POST", `/channels/${state.channel.channel_id}/outputs`, { url });
      mergeOutput(info);
      renderOutputs();
      $("oa-rtmp-url").value = "";
      message("");
    } catch (err) { message(t("output.add_failed", { reason: err.message }), true); }
  });

  function renderChannel() {
    const ch = state.channel;
    $("oa-viewers").textContent = ch && state.viewers != null ? t("onair.viewers", { n: state.viewers }) : "";
    renderViewerList();
    renderLinks();
    renderOutputs();
    renderHealth();
  }

  function viewerWords(v, k) {
    if (v.rtt_ms == null) return t("viewer.measuring", { n: k + 1 });
    const quality = v.lost_pct > 5 || v.rtt_ms > 300 ? "health.poor" : v.lost_pct > 1 || v.rtt_ms > 120 ? "health.fair" : "health.good";
    return t("viewer.line", { n: k + 1, delay: I.seconds(v.delay_ms / 1000, 2), quality: t(quality),
                              rtt: I.ms(v.rtt_ms), lost: I.number(v.lost_pct) });
  }

  function renderViewerList() {
    const list = state.channel ? (state.viewerList || []) : [];
    $("oa-viewer-list").replaceChildren(...list.map((v, k) => el("li", { "data-viewer": v.viewer_id }, viewerWords(v, k))));
  }

  function absolute(path) { return path ? new URL(path, window.location.origin).href : ""; }

  function renderLinks() {
    const ch = state.channel;
    const links = (ch && ch.links) || {};
    let broadcast = absolute(links.broadcast);
    const bg = $("oa-bg").value;
    if (broadcast && bg) broadcast += `${broadcast.includes("?") ? "&" : "?"}bg=${encodeURIComponent(bg)}`;
    $("oa-link-broadcast").value = broadcast;
    $("oa-link-whep").value = absolute(links.whep);
  }
  $("oa-bg").addEventListener("change", renderLinks);

  for (const button of document.querySelectorAll("#onair-view [data-copy]")) {
    button.addEventListener("click", async () => {
      const input = $(button.dataset.copy);
      if (!input.value) return;
      try { await navigator.clipboard.writeText(input.value); }
      catch (_) { input.select(); document.execCommand("copy"); }   // no clipboard API (plain http)
      button.textContent = t("common.copied");
      setTimeout(() => { button.textContent = t("common.copy"); }, 1500);
    });
  }

  async function tick() {
    for (const o of Object.values(state.outputs)) if (o.state === "reconnecting") { renderOutputs(); break; }
    const meter = state.meter;
    const s = meter ? await meter.sample() : null;
    if (!s || meter !== state.meter || !state.client) return;
    const total = window.lipstreamDelay.totalMs(s, null);
    state.health = { delayMs: total, quality: quality(s) };
    renderHealth();
  }

  function quality(s) {
    const rtt = s.rttMs ?? 0;
    const lost = s.concealedRatio ?? 0;
    if (rtt < 150 && lost < 0.02) return "good";
    if (rtt < 400 && lost < 0.08) return "fair";
    return "poor";
  }

  function renderHealth() {
    const h = state.health;
    const parts = [];
    if (h && h.delayMs != null) parts.push(t("health.delay", { s: I.seconds(h.delayMs / 1000) }));
    if (h) parts.push(t(`health.${h.quality}`));
    $("oa-health").textContent = parts.join(" · ");
  }

  // A figure from a closed connection would mislead: health goes blank.
  function clearHealth() {
    state.meter = null;
    state.health = null;
    renderHealth();
  }

  // ---- speaking ----------------------------------------------------------------------------
  async function say(text, extra = {}) {
    if (!state.channel || !text.trim()) return null;
    try {
      const r = await api("POST", `/channels/${state.channel.channel_id}/say`, { text, ...extra });
      state.lastUtterance = r.utterance_id;
      return r.utterance_id;
    } catch (err) {
      message(t("onair.say_failed", { reason: err.message }), true);
      return null;
    }
  }

  async function sendText() {
    const box = $("oa-text");
    const text = box.value.trim();
    if (!text) return;
    if (!state.channel) { message(t("onair.pick_first")); return; }
    box.value = "";
    if (await say(text) === null) box.value = text;
  }

  // Enter sends; Shift+Enter is a new line. An IME composing Chinese uses Enter to confirm a word:
  // that Enter is not a send.
  $("oa-text").addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter" || ev.shiftKey || ev.isComposing || ev.keyCode === 229) return;
    ev.preventDefault();
    sendText();
  });
  $("oa-send").addEventListener("click", sendText);
  $("oa-interrupt").addEventListener("click", async () => {
    if (!state.channel) return;
    try { await api("POST", `/channels/${state.channel.channel_id}/interrupt`); }
    catch (err) { message(err.message, true); }
  });

  // ---- quick replies -----------------------------------------------------------------------
  function quickReplies() { return state.quick ?? I.list("quick.defaults"); }

  function renderQuick() {
    $("oa-quick").replaceChildren(...quickReplies().map((text) =>
      el("button", { type: "button", class: "quick", title: text, onclick: () => say(text) }, text)));
  }

  $("oa-quick-edit").addEventListener("click", () => {
    const editor = $("oa-quick-editor");
    editor.hidden = !editor.hidden;
    if (!editor.hidden) { $("oa-quick-text").value = quickReplies().join("\n"); $("oa-quick-text").focus(); }
  });
  $("oa-quick-save").addEventListener("click", () => {
    state.quick = $("oa-quick-text").value.split("\n").map((s) => s.trim()).filter(Boolean).slice(0, 24);
    saveJson(QUICK_KEY, state.quick);
    $("oa-quick-editor").hidden = true;
    renderQuick();
  });
  $("oa-quick-reset").addEventListener("click", () => {
    state.quick = null;
    try { localStorage.removeItem(QUICK_KEY); } catch (_) { /* storage disabled */ }
    $("oa-quick-text").value = quickReplies().join("\n");
    renderQuick();
  });

  // ---- script queue ------------------------------------------------------------------------
  let nextId = state.script.reduce((m, it) => Math.max(m, it.id), 0) + 1;
  // A line sent but not spoken when the page was closed is to read again.
  for (const it of state.script) if (it.status === "sent" || it.status === "speaking") it.status = "pending";

  function saveScript() { saveJson(SCRIPT_KEY, state.script); }

  function addLines(text) {
    for (const line of text.split("\n").map((s) => s.trim()).filter(Boolean)) {
      state.script.push({ id: nextId++, text: line, skip: false, status: "pending" });
    }
    saveScript();
    renderScript();
  }

  function move(id, delta) {
    const i = state.script.findIndex((it) => it.id === id);
    const j = i + delta;
    if (i < 0 || j < 0 || j >= state.script.length) return;
    const [it] = state.script.splice(i, 1);
    state.script.splice(j, 0, it);
    saveScript();
    renderScript();
    document.querySelector(`#oa-queue [data-item="${id}"] .q-${delta < 0 ? "up" : "down"}`)?.focus();
  }

  function moveTo(id, beforeId) {
    const i = state.script.findIndex((it) => it.id === id);
    if (i < 0 || id === beforeId) return;
    const [it] = state.script.splice(i, 1);
    const j = beforeId == null ? state.script.length : state.script.findIndex((x) => x.id === beforeId);
    state.script.splice(j < 0 ? state.script.length : j, 0, it);
    saveScript();
    renderScript();
  }

  function scriptStatus(utteranceId, status) {
    const itemId = state.utterances[utteranceId];
    const it = state.script.find((x) => x.id === itemId);
    if (!it) return;
    it.status = status;
    saveScript();
    renderScript();
  }

  function nextPending() { return state.script.find((it) => !it.skip && it.status === "pending"); }

  async function read(it) {
    it.status = "sent";
    renderScript();
    const uid = await say(it.text);
    if (uid === null) it.status = "pending";
    else state.utterances[uid] = it.id;
    saveScript();
    renderScript();
    return uid !== null;
  }

  $("oa-read-next").addEventListener("click", async () => {
    if (!state.channel) { message(t("onair.pick_first")); return; }
    const it = nextPending();
    if (it) await read(it); else message(t("script.nothing_left"));
  });
  $("oa-read-all").addEventListener("click", async () => {
    if (!state.channel) { message(t("onair.pick_first")); return; }
    // The channel queues what it is sent, in order: send every pending line now.
    for (let it = nextPending(); it; it = nextPending()) if (!await read(it)) break;
  });
  $("oa-script-add-btn").addEventListener("click", () => { addLines($("oa-script-new").value); $("oa-script-new").value = ""; });
  $("oa-script-reset").addEventListener("click", () => {
    for (const it of state.script) it.status = "pending";
    saveScript();
    renderScript();
  });
  $("oa-script-clear").addEventListener("click", () => { state.script = []; saveScript(); renderScript(); });

  let dragged = null;
  function renderScript() {
    const items = state.script.map((it, index) => {
      const text = el("textarea", { class: "q-text", rows: "1", "aria-label": t("script.line", { n: index + 1 }) });
      text.value = it.text;
      text.addEventListener("input", () => { it.text = text.value; saveScript(); });
      const li = el("li", { class: `q-item q-${it.status}${it.skip ? " q-skipped" : ""}`, "data-item": it.id, draggable: "true" },
        el("span", { class: "q-handle", title: t("script.drag"), "aria-hidden": "true" }, "⠿"),
        text,
        el("span", { class: "q-state" }, t(`script.${it.skip ? "skipped" : it.status}`)),
        el("span", { class: "q-buttons" },
          el("button", { type: "button", class: "q-up", title: t("script.up"), "aria-label": t("script.up"), disabled: index === 0, onclick: () => move(it.id, -1) }, "↑"),
          el("button", { type: "button", class: "q-down", title: t("script.down"), "aria-label": t("script.down"), disabled: index === state.script.length - 1, onclick: () => move(it.id, +1) }, "↓"),
          el("button", { type: "button", class: "q-skip", "aria-pressed": String(it.skip),
                         onclick: () => { it.skip = !it.skip; saveScript(); renderScript(); } }, t(it.skip ? "script.unskip" : "script.skip")),
          el("button", { type: "button", class: "q-remove", title: t("script.remove"), "aria-label": t("script.remove"),
                         onclick: () => { state.script = state.script.filter((x) => x !== it); saveScript(); renderScript(); } }, "✕")));
      li.addEventListener("dragstart", (ev) => { dragged = it.id; ev.dataTransfer.effectAllowed = "move"; li.classList.add("dragging"); });
      li.addEventListener("dragend", () => { dragged = null; li.classList.remove("dragging"); });
      li.addEventListener("dragover", (ev) => { if (dragged !== null) ev.preventDefault(); });
      li.addEventListener("drop", (ev) => { ev.preventDefault(); if (dragged !== null) moveTo(dragged, it.id); });
      return li;
    });
    $("oa-queue").replaceChildren(...items);
    $("oa-script-empty").hidden = state.script.length > 0;
  }

  // ---- fullscreen, tab entry, language -----------------------------------------------------
  $("oa-fullscreen").addEventListener("click", () => window.lipstreamFullscreen($("oa-stage")));

  function rerender() {
    renderGallery();
    renderVoices();
    renderQuick();
    renderScript();
    renderChannel();
    if (!state.talking) pttOff();
    if (!state.channel) setStatus(t("status.idle"));
    else if (state.client && state.client.pc.connectionState === "connected") setStatus(t("status.live"), "ok");
    if (state.available === false) message(t("onair.unavailable"), true);
    const select = $("oa-channel-select");
    if (select.options.length) select.options[0].textContent = t("onair.new_channel");
  }
  I.onChange(rerender);

  $("tab-onair").addEventListener("click", () => { if (state.available === null) loadChannels(); });
  window.addEventListener("pagehide", () => { if (state.client) state.client.close(); });

  state.reload = loadChannels;
  rerender();
  setPoster(state.avatar);
  loadAvatars();
  loadVoices();
  $("oa-show-all").addEventListener("change", loadAvatars);
  if (!$("onair-view").hidden) loadChannels();
})();
