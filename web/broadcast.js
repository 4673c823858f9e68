// The broadcast page (/broadcast/{channel}?key=…[&bg=green][&fit=cover]): an OBS Browser Source.
// Video only, full-bleed, no controls. It connects over WHEP by itself and reconnects with backoff
// when the connection drops, the picture stalls, or the server restarts. OBS lets a page play sound;
// an ordinary browser may refuse unmuted autoplay, so the page then plays muted and unmutes on the
// first click. Text appears only while it cannot connect.
"use strict";

(() => {
  const { t } = window.lipstreamI18n;
  const video = document.getElementById("bc-video");
  const note = document.getElementById("bc-note");
  const params = new URLSearchParams(window.location.search);
  const channel = decodeURIComponent(window.location.pathname.split("/").filter(Boolean).pop() || "");
  const STALL_MS = 6000;            // connected, but no new frame for this long: start over
  const BACKOFF_MS = [1000, 2000, 4000, 8000, 10000];

  if (params.get("fit") === "cover") video.classList.add("cover");

  const state = { connected: false, attempts: 0, connects: 0, client: null, lastError: null, retryAt: null };
  window.lipstreamBroadcast = state;   // for tests and debugging

  function whepUrl() {
    const q = new URLSearchParams();
    if (params.get("key")) q.set("key", params.get("key"));
    if (params.get("bg")) q.set("bg", params.get("bg"));
    return `/channels/${encodeURIComponent(channel)}/whep?${q}`;
  }

  function say(text) {
    note.textContent = text;
    note.hidden = !text;
  }

  async function play() {
    try {
      await video.play();
    } catch (_) {
      video.muted = true;   // a normal browser tab: picture now, sound after a click
      video.play().catch(() => {});
      document.addEventListener("click", () => { video.muted = false; video.play().catch(() => {}); }, { once: true });
    }
  }

  let timer = null;
  function retry() {
    if (timer) return;
    if (state.client) state.client.close();
    state.client = null;
    state.connected = false;
    const wait = BACKOFF_MS[Math.min(state.attempts, BACKOFF_MS.length - 1)] * (0.8 + 0.4 * Math.random());
    state.attempts += 1;
    state.retryAt = Date.now() + wait;
    const tick = () => {
      const left = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
      say(state.lastError ? t("broadcast.retrying", { reason: state.lastError, n: left }) : "");
    };
    tick();
    const countdown = setInterval(tick, 500);
    timer = setTimeout(() => { clearInterval(countdown); timer = null; connect(); }, wait);
  }

  function watch(client) {
    let frames = -1;
    let since = Date.now();
    const check = setInterval(async () => {
      if (client !== state.client) { clearInterval(check); return; }
      const s = client.pc.connectionState;
      if (s === "failed" || s === "closed") { state.lastError = t("broadcast.lost"); clearInterval(check); retry(); return; }
      const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality().totalVideoFrames : 0;
      if (q !== frames) { frames = q; since = Date.now(); return; }
      if (Date.now() - since > STALL_MS) { state.lastError = t("broadcast.stalled"); clearInterval(check); retry(); }
    }, 1000);
  }

  async function connect() {
    if (!channel) { say(t("broadcast.no_channel")); return; }
    const stream = new MediaStream();
    const client = new window.lipstreamWhep.WhepClient({
      url: whepUrl(),
      onTrack: (ev) => { stream.addTrack(ev.track); },
    });
    state.client = client;
    client.pc.addEventListener("connectionstatechange", () => {
      if (client !== state.client) return;
      if (client.pc.connectionState === "connected") {
        state.connected = true;
        state.attempts = 0;
        state.connects += 1;
        state.lastError = null;
        say("");
      }
    });
    try {
      await client.connect();
      video.srcObject = stream;
      play();
      watch(client);
    } catch (err) {
      if (client !== state.client) return;
      state.lastError = err.status === 0 ? t("broadcast.unreachable")
        : (err.status === 401 || err.status === 403) ? t("broadcast.bad_key")
        : err.status === 404 ? t("broadcast.no_such_channel") : err.message;
      retry();
    }
  }

  window.addEventListener("pagehide", () => { if (state.client) state.client.close(); });
  connect();
})();
