// The Studio view: one audio, many avatar videos -> one lip-synced MP4 per video.
// Plain DOM code, no build step.  Talks to the /studio HTTP API (see studio/routes.py).
(() => {
  "use strict";

  const root = document.getElementById("studio-root");
  if (!root) return;
  const I = window.lipstreamI18n;
  const { t } = I;
  const tr = (key) => ({ "data-i18n": key });   // a static label, filled (and re-filled) by lipstreamI18n.apply

  const state = {
    mode: "batch",          // "single" | "batch"
    audioSource: "file",    // "file" | "text"
    audioFile: null,
    videos: [],             // {file, url}
    batchId: null,
    events: null,
    page: 1,
    perPage: 12,
    selected: new Set(),
    config: { max_upload_bytes: 1 << 30 },
  };

  // ---------------------------------------------------------------- helpers
  const $ = (sel) => root.querySelector(sel);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  };
  const bytes = I.bytes;
  const seconds = (s) => (s === null || s === undefined ? "–" : I.duration(s));
  const when = (time) => I.dateTime(new Date(time * 1000));

  async function api(method, url, body) {
    const opts = { method, headers: window.lipstreamAuth.headers() };
    if (body instanceof FormData) opts.body = body;
    else if (body !== undefined) {
      opts.body = JSON.stringify(body);
      opts.headers["Content-Type"] = "application/json";
    }
    const res = await fetch(url, opts);
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(data.error || `${res.status} ${res.statusText}`);
    return data;
  }

  // XHR rather than fetch: it reports upload progress.
  function upload(url, file, onProgress) {
    return new Promise((resolve, reject) => {
      const form = new FormData();
      form.append("file", file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      const auth = window.lipstreamAuth.headers();
      for (const name in auth) xhr.setRequestHeader(name, auth[name]);
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      xhr.onload = () => {
        let data = {};
        try { data = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
        if (xhr.status >= 200 && xhr.status < 300) resolve(data);
        else reject(new Error(data.error || t("studio.http_error", { name: file.name, status: xhr.status })));
      };
      xhr.onerror = () => reject(new Error(t("studio.network_error", { name: file.name })));
      xhr.send(form);
    });
  }

  function showError(msg) {
    const box = $("#st-error");
    box.textContent = msg || "";
    box.hidden = !msg;
  }

  // ---------------------------------------------------------------- layout
  root.append(
    el("section", { class: "st-panel", id: "st-compose" },
      el("div", { class: "st-row st-head" },
        el("h2", tr("tab.studio")),
        el("div", { class: "st-toggle", role: "tablist" },
          el("button", { id: "st-mode-single", type: "button", onclick: () => setMode("single"), ...tr("studio.single") }),
          el("button", { id: "st-mode-batch", type: "button", onclick: () => setMode("batch"), ...tr("studio.batch") }))),
      el("p", { class: "st-hint", ...tr("studio.hint") }),
      el("div", { class: "st-grid" },
        el("div", { class: "st-box" },
          el("h3", tr("studio.audio")),
          el("div", { class: "st-toggle" },
            el("button", { id: "st-src-file", type: "button", onclick: () => setAudioSource("file"), ...tr("studio.src_file") }),
            el("button", { id: "st-src-text", type: "button", onclick: () => setAudioSource("text"), ...tr("studio.src_text") })),
          el("div", { id: "st-audio-file" },
            el("label", { class: "st-drop", id: "st-audio-drop" },
              el("input", { type: "file", id: "st-audio-input", accept: "audio/*,video/*" }),
              el("span", { id: "st-audio-label", ...tr("studio.drop_audio") })),
            el("audio", { id: "st-audio-preview", controls: true, hidden: true })),
          el("div", { id: "st-audio-text", hidden: true },
            el("textarea", { id: "st-text", rows: 4, "data-i18n-attr": "placeholder:studio.text_placeholder" }),
            el("select", { id: "st-voice" }))),
        el("div", { class: "st-box" },
          el("h3", {}, "2 · ", el("span", { id: "st-videos-title" })),
          el("label", { class: "st-drop", id: "st-video-drop" },
            el("input", { type: "file", id: "st-video-input", accept: "video/*,image/*", multiple: true }),
            el("span", tr("studio.drop_videos"))),
          el("ul", { class: "st-list", id: "st-video-list" }),
          el("div", { class: "st-row" },
            el("span", { id: "st-video-count", class: "st-muted" }),
            el("button", { type: "button", id: "st-clear", onclick: clearVideos, ...tr("studio.clear") })))),
      el("div", { class: "st-row" },
        el("button", { type: "button", id: "st-start", class: "st-primary", onclick: startBatch }, t("studio.start")),
        el("button", { type: "button", id: "st-cancel", hidden: true, onclick: cancelBatch, ...tr("studio.cancel") })),
      el("div", { id: "st-error", class: "st-error", hidden: true })),
    el("section", { class: "st-panel", id: "st-progress", hidden: true },
      el("div", { class: "st-row" },
        el("h3", { id: "st-progress-title" }, t("studio.progress")),
        el("span", { id: "st-eta", class: "st-muted" })),
      el("progress", { id: "st-overall", max: 1, value: 0 }),
      el("div", { id: "st-current", class: "st-muted" }),
      el("ul", { class: "st-list", id: "st-items" }),
      el("div", { class: "st-row" },
        el("a", { id: "st-batch-zip", class: "st-button", hidden: true, download: "", ...tr("studio.batch_zip") }))),
    el("section", { class: "st-panel", id: "st-history" },
      el("div", { class: "st-row" },
        el("h3", tr("studio.results")),
        el("span", { id: "st-usage", class: "st-muted" })),
      el("div", { class: "st-row" },
        el("label", {}, el("input", { type: "checkbox", id: "st-select-all", onchange: selectAll }), " ", el("span", tr("studio.select_page"))),
        el("a", { id: "st-zip-selected", class: "st-button", hidden: true, download: "" }),
        el("button", { type: "button", id: "st-delete-selected", hidden: true, onclick: deleteSelected, ...tr("studio.delete_selected") })),
      el("div", { class: "st-results", id: "st-results" }),
      el("div", { class: "st-row st-pager" },
        el("button", { type: "button", id: "st-prev", onclick: () => loadResults(state.page - 1), ...tr("studio.newer") }),
        el("span", { id: "st-page" }),
        el("button", { type: "button", id: "st-next", onclick: () => loadResults(state.page + 1), ...tr("studio.older") }))),
    el("dialog", { id: "st-player" },
      el("video", { id: "st-player-video", controls: true, playsinline: true }),
      el("div", { class: "st-row" },
        el("span", { id: "st-player-title" }),
        el("button", { type: "button", onclick: () => closePlayer(), ...tr("common.close") }))),
    el("details", { class: "st-panel", id: "st-logs", ontoggle: loadLogs },
      el("summary", tr("studio.job_log")),
      el("pre", { id: "st-log-lines" }),
      el("button", { type: "button", onclick: loadLogs, ...tr("studio.refresh") })),
  );
  I.apply(root);

  // ---------------------------------------------------------------- composing
  function setMode(mode) {
    state.mode = mode;
    $("#st-mode-single").classList.toggle("on", mode === "single");
    $("#st-mode-batch").classList.toggle("on", mode === "batch");
    $("#st-video-input").multiple = mode === "batch";
    $("#st-videos-title").textContent = t(mode === "batch" ? "studio.videos" : "studio.video");
    if (mode === "single" && state.videos.length > 1) {
      state.videos.slice(1).forEach((v) => URL.revokeObjectURL(v.url));
      state.videos = state.videos.slice(0, 1);
    }
    renderVideos();
  }

  function setAudioSource(src) {
    state.audioSource = src;
    $("#st-src-file").classList.toggle("on", src === "file");
    $("#st-src-text").classList.toggle("on", src === "text");
    $("#st-audio-file").hidden = src !== "file";
    $("#st-audio-text").hidden = src !== "text";
  }

  function tooBig(file) {
    if (file.size > state.config.max_upload_bytes) {
      showError(t("studio.too_big", { name: file.name, size: bytes(file.size), limit: bytes(state.config.max_upload_bytes) }));
      return true;
    }
    return false;
  }

  function setAudio(file) {
    if (!file || tooBig(file)) return;
    showError("");
    state.audioFile = file;
    $("#st-audio-label").removeAttribute("data-i18n");   // now the file's name, in any language
    $("#st-audio-label").textContent = `${file.name} (${bytes(file.size)})`;
    const player = $("#st-audio-preview");
    if (player.src) URL.revokeObjectURL(player.src);
    player.src = URL.createObjectURL(file);
    player.hidden = false;
  }

  function addVideos(files) {
    showError("");
    for (const file of files) {
      if (tooBig(file)) continue;
      if (state.mode === "single") {
        state.videos.forEach((v) => URL.revokeObjectURL(v.url));
        state.videos = [];
      }
      state.videos.push({ file, url: URL.createObjectURL(file) });
    }
    renderVideos();
  }

  function removeVideo(i) {
    URL.revokeObjectURL(state.videos[i].url);
    state.videos.splice(i, 1);
    renderVideos();
  }

  function clearVideos() {
    state.videos.forEach((v) => URL.revokeObjectURL(v.url));
    state.videos = [];
    renderVideos();
  }

  function renderVideos() {
    const list = $("#st-video-list");
    list.replaceChildren(...state.videos.map((v, i) => {
      const isImage = v.file.type.startsWith("image/");
      const preview = isImage
        ? el("img", { src: v.url, alt: "" })
        : el("video", { src: v.url, muted: true, preload: "metadata",
                        onmouseenter: (e) => e.target.play(), onmouseleave: (e) => e.target.pause() });
      return el("li", { class: "st-video" }, preview,
        el("span", { class: "st-name", title: v.file.name }, v.file.name),
        el("span", { class: "st-muted" }, bytes(v.file.size)),
        el("button", { type: "button", class: "st-remove", title: t("studio.remove"), "aria-label": t("studio.remove"), onclick: () => removeVideo(i) }, "✕"));
    }));
    const n = state.videos.length;
    $("#st-video-count").textContent = n ? t("studio.n_videos", { n }) : t("studio.no_videos");
  }

  function wireDrop(zone, onFiles) {
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      onFiles([...e.dataTransfer.files]);
    });
  }

  $("#st-audio-input").addEventListener("change", (e) => setAudio(e.target.files[0]));
  $("#st-video-input").addEventListener("change", (e) => { addVideos([...e.target.files]); e.target.value = ""; });
  wireDrop($("#st-audio-drop"), (files) => setAudio(files[0]));
  wireDrop($("#st-video-drop"), addVideos);

  // ---------------------------------------------------------------- running
  async function startBatch() {
    showError("");
    const text = $("#st-text").value.trim();
    if (state.audioSource === "file" && !state.audioFile) return showError(t("studio.need_audio"));
    if (state.audioSource === "text" && !text) return showError(t("studio.need_text"));
    if (!state.videos.length) return showError(t("studio.need_video"));
    const button = $("#st-start");
    button.disabled = true;
    try {
      const name = state.audioSource === "file" ? state.audioFile.name : text.slice(0, 40);
      const batch = await api("POST", "/studio/batches", { name });
      const id = batch.batch.id;
      button.textContent = t("studio.uploading_audio", { pct: 0 });
      if (state.audioSource === "file") {
        await upload(`/studio/batches/${id}/audio`, state.audioFile,
          (f) => { button.textContent = t("studio.uploading_audio", { pct: Math.round(f * 100) }); });
      } else {
        button.textContent = t("studio.synthesizing");
        await api("POST", `/studio/batches/${id}/tts`, { text, voice: $("#st-voice").value });
      }
      for (const [i, v] of state.videos.entries()) {
        await upload(`/studio/batches/${id}/videos`, v.file, (f) => {
          button.textContent = t("studio.uploading_video", { i: i + 1, n: state.videos.length, pct: Math.round(f * 100) });
        });
      }
      await api("POST", `/studio/batches/${id}/start`);
      follow(id);
      clearVideos();
    } catch (err) {
      showError(err.message);
    } finally {
      button.disabled = false;
      button.textContent = t("studio.start");
    }
  }

  async function cancelBatch() {
    if (!state.batchId) return;
    try { await api("POST", `/studio/batches/${state.batchId}/cancel`); } catch (err) { showError(err.message); }
  }

  function follow(id) {
    if (state.events) state.events.close();
    state.batchId = id;
    $("#st-progress").hidden = false;
    $("#st-cancel").hidden = false;
    $("#st-batch-zip").hidden = true;
    const es = new EventSource(window.lipstreamAuth.url(`/studio/batches/${id}/events`));
    state.events = es;
    let doneCount = 0;
    let lastLogs = 0;
    es.addEventListener("progress", (e) => {
      const snap = JSON.parse(e.data);
      renderProgress(snap);
      if (Date.now() - lastLogs > 2000) { lastLogs = Date.now(); loadLogs(); }  // only if open
      const finished = snap.counts.done;
      if (finished !== doneCount) { doneCount = finished; loadResults(1); }
    });
    es.addEventListener("end", () => {
      es.close();
      state.events = null;
      $("#st-cancel").hidden = true;
      loadResults(1);
    });
  }

  let lastSnap = null;
  function renderProgress(snap) {
    lastSnap = snap;
    const b = snap.batch;
    $("#st-progress-title").textContent = t("studio.batch_title", { name: b.name, status: t(`studio.batch_${b.status}`) });
    $("#st-overall").value = snap.progress;
    const c = snap.counts;
    const eta = snap.eta_s !== null ? t("studio.eta", { time: seconds(snap.eta_s) }) : "";
    $("#st-eta").textContent = t("studio.counts", { done: c.done, failed: c.failed, total: snap.items.length }) + eta;
    $("#st-current").textContent = snap.current_names.length ? t("studio.now", { names: snap.current_names.join(", ") }) : (b.error || "");
    $("#st-items").replaceChildren(...snap.items.map((it) =>
      el("li", { class: `st-item st-${it.status}`, "data-item": it.id },
        el("span", { class: "st-name", title: it.video_name }, it.video_name),
        el("progress", { max: 1, value: it.status === "done" ? 1 : it.progress }),
        el("span", { class: "st-status" }, it.status === "running" && it.stage ? I.tOr(`studio.stage_${it.stage}`, it.stage) : t(`studio.item_${it.status}`)),
        it.error ? el("div", { class: "st-item-error" }, it.error) : "")));
    const terminal = ["finished", "failed", "cancelled"].includes(b.status);
    $("#st-cancel").hidden = terminal;
    const zip = $("#st-batch-zip");
    zip.hidden = !(terminal && c.done > 0);
    zip.href = window.lipstreamAuth.url(`/studio/batches/${b.id}/zip`);
  }

  // ---------------------------------------------------------------- history
  async function loadResults(page = state.page) {
    try {
      const data = await api("GET", `/studio/results?page=${Math.max(1, page)}&per_page=${state.perPage}`);
      if (page > data.pages && data.pages >= 1 && page !== 1) return loadResults(data.pages);
      state.page = data.page;
      renderResults(data);
      loadUsage();
    } catch (err) {
      showError(err.message);
    }
  }

  function renderResults(data) {
    const grid = $("#st-results");
    if (!data.results.length) {
      grid.replaceChildren(el("p", { class: "st-muted" }, t("studio.no_results")));
    } else {
      grid.replaceChildren(...data.results.map((r) => el("div", { class: "st-card", "data-result": r.id },
        el("button", { type: "button", class: "st-thumb", title: t("studio.play"), onclick: () => play(r) },
          r.thumb_url ? el("img", { src: window.lipstreamAuth.url(r.thumb_url), alt: r.filename, loading: "lazy" }) : "▶",
          el("span", { class: "st-duration" }, seconds(r.duration))),
        el("div", { class: "st-card-body" },
          el("label", { class: "st-name", title: r.filename },
            el("input", { type: "checkbox", checked: state.selected.has(r.id),
                          onchange: (e) => toggleSelected(r.id, e.target.checked) }), " ", r.filename),
          el("div", { class: "st-muted" }, `${r.video_name} × ${r.audio_name}`),
          el("div", { class: "st-muted" }, `${when(r.created_at)} · ${bytes(r.size)} · ${r.width}×${r.height}`),
          el("div", { class: "st-row" },
            el("a", { href: window.lipstreamAuth.url(r.download_url), download: r.filename, class: "st-button" }, t("studio.download")),
            el("button", { type: "button", onclick: () => deleteResults([r.id]) }, t("studio.delete")))))));
    }
    $("#st-page").textContent = t("studio.page", { page: data.page, pages: data.pages, n: data.total });
    $("#st-prev").disabled = data.page <= 1;
    $("#st-next").disabled = data.page >= data.pages;
    $("#st-select-all").checked = false;
    updateSelection();
  }

  function toggleSelected(id, on) {
    if (on) state.selected.add(id); else state.selected.delete(id);
    updateSelection();
  }

  function selectAll(e) {
    root.querySelectorAll(".st-card").forEach((card) => {
      card.querySelector("input[type=checkbox]").checked = e.target.checked;
      toggleSelected(card.dataset.result, e.target.checked);
    });
  }

  function updateSelection() {
    const ids = [...state.selected];
    const zip = $("#st-zip-selected");
    zip.hidden = !ids.length;
    zip.href = window.lipstreamAuth.url(`/studio/zip?ids=${ids.join(",")}`);
    zip.textContent = t("studio.zip_selected", { n: ids.length });
    $("#st-delete-selected").hidden = !ids.length;
  }

  async function deleteResults(ids) {
    if (!confirm(t("studio.confirm_delete", { n: ids.length }))) return;
    try {
      await api("POST", "/studio/results/delete", { ids });
      ids.forEach((id) => state.selected.delete(id));
      loadResults();
    } catch (err) {
      showError(err.message);
    }
  }

  function deleteSelected() { deleteResults([...state.selected]); }

  function play(r) {
    const dialog = $("#st-player");
    const video = $("#st-player-video");
    video.src = window.lipstreamAuth.url(r.url);
    $("#st-player-title").textContent = `${r.filename} — ${r.video_name} × ${r.audio_name}`;
    if (dialog.showModal) dialog.showModal(); else dialog.setAttribute("open", "");
    video.play().catch(() => {});
  }

  function closePlayer() {
    const video = $("#st-player-video");
    video.pause();
    video.removeAttribute("src");
    video.load();
    $("#st-player").close();
  }

  async function loadUsage() {
    try {
      const u = await api("GET", "/studio/usage");
      const r = u.retention;
      const limits = [r.max_results ? t("studio.n_results", { n: r.max_results }) : "", r.max_bytes ? bytes(r.max_bytes) : "",
                      r.max_age_days ? t("studio.n_days", { n: r.max_age_days }) : ""].filter(Boolean).join(", ");
      $("#st-usage").textContent = t("studio.usage", { results: bytes(u.results_bytes), uploads: bytes(u.uploads_bytes),
                                                       cache: bytes(u.cache_bytes), free: bytes(u.free_bytes) })
        + (limits ? t("studio.kept", { limits }) : "");
    } catch (_) { /* usage is informational */ }
  }

  async function loadLogs() {
    if (!$("#st-logs").open) return;
    try {
      const data = await api("GET", "/studio/logs?lines=80");
      $("#st-log-lines").textContent = data.lines.join("\n") || t("studio.log_empty");
    } catch (err) {
      $("#st-log-lines").textContent = err.message;
    }
  }

  async function loadVoices() {
    const select = $("#st-voice");
    try {
      const data = await api("GET", "/studio/voices");
      select.replaceChildren(...data.voices.map((v) => el("option", { value: v.id, selected: v.default }, I.voiceLabel(v.id) || v.id)));
      if (!data.voices.length) $("#st-src-text").disabled = true;
    } catch (_) {
      $("#st-src-text").disabled = true;
    }
  }

  I.onChange(() => {
    setMode(state.mode);
    updateSelection();
    if (lastSnap) renderProgress(lastSnap);
    if (!$("#st-start").disabled) $("#st-start").textContent = t("studio.start");
    if (state.audioFile) $("#st-audio-label").textContent = `${state.audioFile.name} (${bytes(state.audioFile.size)})`;
    loadResults();
  });

  async function init() {
    setMode("batch");
    setAudioSource("file");
    try { state.config = await api("GET", "/studio/config"); } catch (_) { /* keep defaults */ }
    loadVoices();
    loadResults(1);
    // Reloading the page mid-batch picks the running batch up again.
    try {
      const data = await api("GET", "/studio/batches?limit=5");
      const active = data.batches.find((b) => ["queued", "running"].includes(b.batch.status));
      if (active) follow(active.batch.id);
    } catch (_) { /* nothing running */ }
  }

  init();
})();
