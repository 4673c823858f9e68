// Every user-visible string of the page (Live, On air, Studio, the broadcast page), in English and
// 简体中文, and the language machinery: t(key, params), data-i18n attributes, number/duration formats.
//
// The language: ?lang=en|zh (this page view only, for links and tests), else the one chosen with the
// switch (localStorage), else the browser's (zh* → 中文). HTML marks its strings with
// data-i18n="key" (text) and data-i18n-attr="placeholder:key;title:key"; apply() fills them, and
// onChange(fn) lets scripts re-render what they built. "{name}" in a string is a parameter; a key with
// "_one"/"_other" variants is chosen by params.n.
"use strict";

(() => {
  const STORE = "lipstream.lang";
  const LANGUAGES = { en: "English", zh: "简体中文" };   // each named in itself

  const en = {
    "tab.live": "Live", "tab.onair": "On air", "tab.studio": "Studio",
    "common.language": "Language", "common.fullscreen": "Full screen", "common.interrupt": "Interrupt",
    "common.copy": "Copy", "common.copied": "Copied", "common.save": "Save", "common.close": "Close",
    "common.yes": "yes", "common.no": "no",
    "common.needs_token": "This server needs its token: open the link with #token=… that it printed at start-up.",

    "status.not_connected": "not connected", "status.connecting": "connecting…", "status.live": "live",
    "status.lost": "connection lost", "status.error": "error: {reason}", "status.idle": "no channel selected",

    "live.connection": "Connection", "live.avatar": "Avatar", "live.connect": "Connect", "live.disconnect": "Disconnect",
    "live.mic": "Microphone (the avatar speaks with your voice)", "live.speak_text": "Speak text",
    "live.say_placeholder": "Type something for the avatar to say…",
    "live.say_default": "Hello! I am a digital human, and I run on two CPU cores.",
    "live.interrupt_first": "interrupt first", "live.say": "Say", "live.new_avatar": "New avatar",
    "live.upload": "Upload & prepare", "live.stats": "Live stats", "live.choose_file": "Choose a video or photo first.",
    "live.uploading": "uploading…", "live.preparing": "preparing (face tracking every frame)…",
    "live.ready": "ready: {name}", "live.prep_failed": "failed: {reason}", "live.upload_failed": "upload failed: {reason}",
    "live.interrupt_failed": "interrupt failed: {reason}",

    "stats.fps": "fps", "stats.latency": "latency p50 / p95", "stats.buffered": "buffered", "stats.speaking": "speaking",
    "stats.rx_fps": "received fps", "stats.rtt": "round trip", "stats.browser": "browser buffer",
    "stats.no_mic": "– (no mic audio)", "stats.p50_p95": "{p50} / {p95}", "stats.concealed": "{buffer}, {pct} % concealed",

    "event.session": "session {id}", "event.mic_on": "microphone on", "event.mic_off": "microphone off",
    "event.speech_start": "speaking", "event.speech_end": "finished speaking", "event.speech_cancelled": "cancelled",
    "event.error": "error", "event.closed": "session ended", "event.quote": ": “{text}”",
    "event.after_request": " ({ms} after the request)", "event.interrupted": " (interrupted)", "event.detail": ": {text}",

    "delay.heard": "You are heard {s} later.", "delay.reaches": "The avatar reaches you {s} after the server sends it.",

    "avatar.default_name": "Astronaut", "avatar.default_option": "Astronaut (default)",
    "avatar.option": "{name} ({kind}, {w}×{h})", "avatar.kind_video": "video", "avatar.kind_photo": "photo",
    "avatar.rename": "Rename", "avatar.delete": "Delete", "avatar.confirm_delete": "Delete?",
    "avatar.add_live": "Add to live avatars", "avatar.show_studio": "show studio avatars",
    "avatar.rename_failed": "Could not rename: {reason}", "avatar.delete_failed": "Could not delete: {reason}",

    "voice.auto": "automatic (by the text's language)", "voice.preview": "Preview",
    "voice.preview_hint": "Speaks a short sample on the channel (its audience hears it too)",
    "voice.own": "{name} (own voice)", "voice.sample": "Hello! This is how I sound.",

    "onair.channel": "Channel", "onair.pick_channel": "Channel", "onair.new_channel": "— new channel —",
    "onair.name": "Name", "onair.name_placeholder": "e.g. Evening show", "onair.avatar": "Avatar",
    "onair.voice": "Voice", "onair.create": "Go live", "onair.end": "End channel", "onair.end_confirm": "Click again to end",
    "onair.creating": "Starting the channel…", "onair.create_failed": "Could not start the channel: {reason}",
    "onair.unavailable": "This server has no channels (update it to use On air).",
    "onair.avatars_failed": "Could not load the avatars: {reason}", "onair.voices_failed": "Could not load the voices: {reason}",
    "onair.speak": "Speak", "onair.text_placeholder": "Type, then Enter to say it (Shift+Enter: new line)",
    "onair.send": "Say", "onair.say_failed": "Could not say it: {reason}", "onair.pick_first": "Start or pick a channel first.",
    "onair.viewers_one": "{n} viewer", "onair.viewers_other": "{n} viewers",

    "state.starting": "starting", "state.live": "live", "state.ended": "ended",

    "ptt.hold": "Hold to talk", "ptt.talking": "Talking… release to stop", "ptt.level": "Microphone level",
    "ptt.unavailable": "Microphone unavailable: {reason}",

    "quick.title": "Quick replies", "quick.edit": "Edit", "quick.reset": "Back to the defaults",
    "quick.placeholder": "One reply per line",
    "quick.defaults": ["Welcome to the stream!", "Thanks for the follow!", "Please like and share.",
                       "Let me check that for you.", "See you next time!"],

    "script.title": "Script", "script.placeholder": "Paste the script: one line per sentence",
    "script.add": "Add lines", "script.read_next": "Read next", "script.read_all": "Read all",
    "script.empty": "No lines yet.", "script.reset": "Mark all unread", "script.clear": "Clear all",
    "script.nothing_left": "Every line has been read.", "script.line": "Line {n}", "script.drag": "Drag to reorder",
    "script.up": "Move up", "script.down": "Move down", "script.skip": "Skip", "script.unskip": "Unskip",
    "script.remove": "Remove", "script.pending": "to read", "script.sent": "queued", "script.speaking": "speaking",
    "script.done": "read", "script.skipped": "skipped",

    "output.title": "Outputs (RTMP)", "output.none": "Not streaming to any platform.", "output.url": "Stream URL (with the key)",
    "output.url_placeholder": "rtmp://live.example.com/app/stream-key", "output.add": "Start streaming",
    "output.stop": "Stop", "output.bad_url": "The stream URL must start with rtmp:// or rtmps://",
    "output.add_failed": "Could not start streaming: {reason}",
    "output.live": "live on {url}", "output.live_rate": "live on {url}, {rate}", "output.connecting": "connecting to {url}…",
    "output.connect_retry": "cannot reach {url}: trying again in {n} s",
    "output.reconnecting": "{url}: reconnecting in {n} s", "output.reconnecting_now": "{url}: reconnecting…",
    "output.stopped": "{url}: stopped", "output.failed": "{url}: failed ({reason})",

    "links.title": "Links", "links.broadcast": "Broadcast page (OBS browser source)", "links.background": "Background",
    "links.bg_none": "as recorded", "links.bg_green": "green screen", "links.bg_blue": "blue screen",
    "links.whep": "WHEP (OBS WHEP source, players)",
    "links.hint": "Anyone with these links can watch. In OBS: Sources → Browser, paste the broadcast page.",

    "health.delay": "delay {s}", "health.good": "good connection", "health.fair": "fair connection",
    "health.poor": "poor connection",
    "viewer.line": "viewer {n}: {quality}, {delay} behind the server, round trip {rtt}, {lost} % lost",
    "viewer.measuring": "viewer {n}: measuring…",

    "broadcast.retrying": "{reason} Retrying in {n} s.", "broadcast.lost": "The connection was lost.",
    "broadcast.stalled": "The picture stopped.", "broadcast.unreachable": "The server cannot be reached.",
    "broadcast.bad_key": "The link's key is not valid.", "broadcast.no_such_channel": "This channel is not running.",
    "broadcast.no_channel": "This link names no channel.",

    "studio.single": "Single", "studio.batch": "Batch",
    "studio.hint": "One audio drives every video: each video becomes one lip-synced MP4.",
    "studio.audio": "1 · Audio", "studio.src_file": "Upload file", "studio.src_text": "Type text",
    "studio.drop_audio": "Drop an audio file here or click to choose",
    "studio.text_placeholder": "Type what the avatars should say…", "studio.videos": "Videos", "studio.video": "Video",
    "studio.drop_videos": "Drop videos (or photos) here or click to choose", "studio.clear": "Clear all",
    "studio.start": "Start", "studio.cancel": "Cancel batch", "studio.progress": "Progress",
    "studio.batch_zip": "Download this batch as ZIP", "studio.results": "Results", "studio.select_page": "select page",
    "studio.delete_selected": "Delete selected", "studio.newer": "‹ Newer", "studio.older": "Older ›",
    "studio.job_log": "Job log", "studio.refresh": "Refresh", "studio.remove": "remove",
    "studio.no_videos": "no videos", "studio.n_videos_one": "{n} video", "studio.n_videos_other": "{n} videos",
    "studio.too_big": "{name} is {size}; the limit is {limit}", "studio.need_audio": "Choose an audio file first.",
    "studio.need_text": "Type the text to speak first.", "studio.need_video": "Add at least one video.",
    "studio.uploading_audio": "Uploading audio {pct}%", "studio.synthesizing": "Synthesizing speech…",
    "studio.uploading_video": "Uploading video {i}/{n} {pct}%",
    "studio.http_error": "{name}: HTTP {status}", "studio.network_error": "{name}: upload failed (network)",
    "studio.batch_title": "{name} — {status}", "studio.eta": " · about {time} left",
    "studio.counts": "{done} done · {failed} failed · {total} total", "studio.now": "Now: {names}",
    "studio.batch_draft": "draft", "studio.batch_queued": "queued", "studio.batch_running": "running",
    "studio.batch_finished": "finished", "studio.batch_failed": "failed", "studio.batch_cancelled": "cancelled",
    "studio.item_pending": "waiting", "studio.item_queued": "queued", "studio.item_running": "rendering",
    "studio.item_done": "done", "studio.item_failed": "failed", "studio.item_cancelled": "cancelled",
    "studio.stage_starting": "starting", "studio.stage_preparing": "preparing",
    "studio.stage_waiting for the audio analysis": "waiting for the audio analysis",
    "studio.stage_rendering": "rendering", "studio.stage_finishing": "finishing",
    "studio.stage_resumed after restart": "resumed after restart",
    "studio.no_results": "No results yet.", "studio.play": "play", "studio.download": "Download", "studio.delete": "Delete",
    "studio.page_one": "page {page} of {pages} · {n} result", "studio.page_other": "page {page} of {pages} · {n} results",
    "studio.zip_selected": "ZIP selected ({n})",
    "studio.confirm_delete_one": "Delete {n} result?", "studio.confirm_delete_other": "Delete {n} results?",
    "studio.n_results": "{n} results", "studio.n_days": "{n} days",
    "studio.usage": "disk: results {results} · uploads {uploads} · cache {cache} · free {free}",
    "studio.kept": " · kept: {limits}", "studio.log_empty": "(empty)",

    "unit.ms": "{n} ms", "unit.s": "{n} s", "unit.min_s": "{m} min {s} s",
    "unit.bytes": ["B", "KB", "MB", "GB", "TB"], "unit.kbps": "{n} kb/s", "unit.mbps": "{n} Mb/s",
  };

  const zh = {
    "tab.live": "实时", "tab.onair": "直播", "tab.studio": "工作室",
    "common.language": "语言", "common.fullscreen": "全屏", "common.interrupt": "打断",
    "common.copy": "复制", "common.copied": "已复制", "common.save": "保存", "common.close": "关闭",
    "common.yes": "是", "common.no": "否",
    "common.needs_token": "此服务器需要令牌：请打开它启动时打印的带 #token=… 的链接。",

    "status.not_connected": "未连接", "status.connecting": "连接中…", "status.live": "直播中",
    "status.lost": "连接已断开", "status.error": "出错：{reason}", "status.idle": "未选择频道",

    "live.connection": "连接", "live.avatar": "数字人", "live.connect": "连接", "live.disconnect": "断开",
    "live.mic": "麦克风（数字人用你的声音说话）", "live.speak_text": "朗读文字",
    "live.say_placeholder": "输入要让数字人说的话…",
    "live.say_default": "你好！我是一个数字人，只用两个 CPU 核心就能运行。",
    "live.interrupt_first": "先打断", "live.say": "说", "live.new_avatar": "新数字人",
    "live.upload": "上传并处理", "live.stats": "实时数据", "live.choose_file": "请先选择一个视频或照片。",
    "live.uploading": "上传中…", "live.preparing": "处理中（逐帧人脸跟踪）…",
    "live.ready": "已就绪：{name}", "live.prep_failed": "失败：{reason}", "live.upload_failed": "上传失败：{reason}",
    "live.interrupt_failed": "打断失败：{reason}",

    "stats.fps": "帧率", "stats.latency": "延迟 p50 / p95", "stats.buffered": "缓冲", "stats.speaking": "正在说话",
    "stats.rx_fps": "接收帧率", "stats.rtt": "往返时间", "stats.browser": "浏览器缓冲",
    "stats.no_mic": "–（无麦克风音频）", "stats.p50_p95": "{p50} / {p95}", "stats.concealed": "{buffer}，{pct}% 被补偿",

    "event.session": "会话 {id}", "event.mic_on": "麦克风已打开", "event.mic_off": "麦克风已关闭",
    "event.speech_start": "开始说话", "event.speech_end": "说完了", "event.speech_cancelled": "已取消",
    "event.error": "错误", "event.closed": "会话已结束", "event.quote": "：“{text}”",
    "event.after_request": "（请求后 {ms}）", "event.interrupted": "（被打断）", "event.detail": "：{text}",

    "delay.heard": "你的声音在 {s}后被听到。", "delay.reaches": "服务器发出后 {s}到达你这里。",

    "avatar.default_name": "宇航员", "avatar.default_option": "宇航员（默认）",
    "avatar.option": "{name}（{kind}，{w}×{h}）", "avatar.kind_video": "视频", "avatar.kind_photo": "照片",
    "avatar.rename": "重命名", "avatar.delete": "删除", "avatar.confirm_delete": "确定删除？",
    "avatar.add_live": "加入直播数字人", "avatar.show_studio": "显示工作室的数字人",
    "avatar.rename_failed": "无法重命名：{reason}", "avatar.delete_failed": "无法删除：{reason}",

    "voice.auto": "自动（按文字的语言）", "voice.preview": "试听",
    "voice.preview_hint": "在频道上说一段示例（观众也会听到）",
    "voice.own": "{name}（自有声音）", "voice.sample": "你好！这是我的声音。",

    "onair.channel": "频道", "onair.pick_channel": "频道", "onair.new_channel": "— 新频道 —",
    "onair.name": "名称", "onair.name_placeholder": "例如：晚间直播", "onair.avatar": "数字人",
    "onair.voice": "声音", "onair.create": "开始直播", "onair.end": "结束频道", "onair.end_confirm": "再点一次结束",
    "onair.creating": "正在开启频道…", "onair.create_failed": "无法开启频道：{reason}",
    "onair.unavailable": "此服务器不支持频道（请更新后使用直播功能）。",
    "onair.avatars_failed": "无法加载数字人：{reason}", "onair.voices_failed": "无法加载声音：{reason}",
    "onair.speak": "说话", "onair.text_placeholder": "输入文字，按 Enter 发送（Shift+Enter 换行）",
    "onair.send": "说", "onair.say_failed": "无法朗读：{reason}", "onair.pick_first": "请先开始或选择一个频道。",
    "onair.viewers": "{n} 位观众",

    "state.starting": "启动中", "state.live": "直播中", "state.ended": "已结束",

    "ptt.hold": "按住说话", "ptt.talking": "正在说话…松开结束", "ptt.level": "麦克风音量",
    "ptt.unavailable": "麦克风不可用：{reason}",

    "quick.title": "快捷回复", "quick.edit": "编辑", "quick.reset": "恢复默认",
    "quick.placeholder": "每行一条回复",
    "quick.defaults": ["欢迎来到直播间！", "感谢关注！", "喜欢的话请点赞分享。", "我帮您查一下。", "下次再见！"],

    "script.title": "台词", "script.placeholder": "粘贴台词：每句一行",
    "script.add": "添加", "script.read_next": "读下一句", "script.read_all": "全部朗读",
    "script.empty": "还没有台词。", "script.reset": "全部标为未读", "script.clear": "全部清除",
    "script.nothing_left": "所有台词都读完了。", "script.line": "第 {n} 句", "script.drag": "拖动排序",
    "script.up": "上移", "script.down": "下移", "script.skip": "跳过", "script.unskip": "取消跳过",
    "script.remove": "删除", "script.pending": "待读", "script.sent": "已排队", "script.speaking": "朗读中",
    "script.done": "已读", "script.skipped": "已跳过",

    "output.title": "推流（RTMP）", "output.none": "尚未推流到任何平台。", "output.url": "推流地址（含串流密钥）",
    "output.url_placeholder": "rtmp://live.example.com/app/串流密钥", "output.add": "开始推流",
    "output.stop": "停止", "output.bad_url": "推流地址必须以 rtmp:// 或 rtmps:// 开头",
    "output.add_failed": "无法开始推流：{reason}",
    "output.live": "正在推流到 {url}", "output.live_rate": "正在推流到 {url}，{rate}", "output.connecting": "正在连接 {url}…",
    "output.connect_retry": "无法连接 {url}：{n} 秒后重试",
    "output.reconnecting": "{url}：{n} 秒后重连", "output.reconnecting_now": "{url}：正在重连…",
    "output.stopped": "{url}：已停止", "output.failed": "{url}：失败（{reason}）",

    "links.title": "链接", "links.broadcast": "直播画面页（OBS 浏览器源）", "links.background": "背景",
    "links.bg_none": "原样", "links.bg_green": "绿幕", "links.bg_blue": "蓝幕",
    "links.whep": "WHEP（OBS WHEP 源、播放器）",
    "links.hint": "任何拿到链接的人都能观看。在 OBS 中：来源 → 浏览器，粘贴直播画面页链接。",

    "health.delay": "延迟 {s}", "health.good": "连接良好", "health.fair": "连接一般", "health.poor": "连接较差",
    "viewer.line": "观众 {n}：{quality}，比服务器晚 {delay}，往返 {rtt}，丢包 {lost}%",
    "viewer.measuring": "观众 {n}：正在测量…",

    "broadcast.retrying": "{reason}{n} 秒后重试。", "broadcast.lost": "连接已断开。",
    "broadcast.stalled": "画面停止了。", "broadcast.unreachable": "无法连接服务器。",
    "broadcast.bad_key": "链接中的密钥无效。", "broadcast.no_such_channel": "此频道未在运行。",
    "broadcast.no_channel": "此链接没有指定频道。",

    "studio.single": "单个", "studio.batch": "批量",
    "studio.hint": "一段音频驱动所有视频：每个视频生成一个口型同步的 MP4。",
    "studio.audio": "1 · 音频", "studio.src_file": "上传文件", "studio.src_text": "输入文字",
    "studio.drop_audio": "把音频文件拖到这里，或点击选择",
    "studio.text_placeholder": "输入数字人要说的话…", "studio.videos": "视频", "studio.video": "视频",
    "studio.drop_videos": "把视频（或照片）拖到这里，或点击选择", "studio.clear": "全部清除",
    "studio.start": "开始", "studio.cancel": "取消批次", "studio.progress": "进度",
    "studio.batch_zip": "下载本批次 ZIP", "studio.results": "结果", "studio.select_page": "选择本页",
    "studio.delete_selected": "删除所选", "studio.newer": "‹ 较新", "studio.older": "较旧 ›",
    "studio.job_log": "任务日志", "studio.refresh": "刷新", "studio.remove": "移除",
    "studio.no_videos": "没有视频", "studio.n_videos": "{n} 个视频",
    "studio.too_big": "{name} 大小为 {size}；上限是 {limit}", "studio.need_audio": "请先选择音频文件。",
    "studio.need_text": "请先输入要朗读的文字。", "studio.need_video": "请至少添加一个视频。",
    "studio.uploading_audio": "正在上传音频 {pct}%", "studio.synthesizing": "正在合成语音…",
    "studio.uploading_video": "正在上传视频 {i}/{n} {pct}%",
    "studio.http_error": "{name}：HTTP {status}", "studio.network_error": "{name}：上传失败（网络）",
    "studio.batch_title": "{name} — {status}", "studio.eta": " · 大约还剩 {time}",
    "studio.counts": "{done} 个完成 · {failed} 个失败 · 共 {total} 个", "studio.now": "正在处理：{names}",
    "studio.batch_draft": "草稿", "studio.batch_queued": "排队中", "studio.batch_running": "进行中",
    "studio.batch_finished": "已完成", "studio.batch_failed": "失败", "studio.batch_cancelled": "已取消",
    "studio.item_pending": "等待中", "studio.item_queued": "排队中", "studio.item_running": "渲染中",
    "studio.item_done": "完成", "studio.item_failed": "失败", "studio.item_cancelled": "已取消",
    "studio.stage_starting": "启动中", "studio.stage_preparing": "准备中",
    "studio.stage_waiting for the audio analysis": "等待音频分析",
    "studio.stage_rendering": "渲染中", "studio.stage_finishing": "收尾中",
    "studio.stage_resumed after restart": "重启后继续",
    "studio.no_results": "还没有结果。", "studio.play": "播放", "studio.download": "下载", "studio.delete": "删除",
    "studio.page": "第 {page} / {pages} 页 · 共 {n} 个结果",
    "studio.zip_selected": "打包所选（{n}）", "studio.confirm_delete": "删除 {n} 个结果？",
    "studio.n_results": "{n} 个结果", "studio.n_days": "{n} 天",
    "studio.usage": "磁盘：结果 {results} · 上传 {uploads} · 缓存 {cache} · 剩余 {free}",
    "studio.kept": " · 保留：{limits}", "studio.log_empty": "（空）",

    "unit.ms": "{n} 毫秒", "unit.s": "{n} 秒", "unit.min_s": "{m} 分 {s} 秒",
    "unit.bytes": ["B", "KB", "MB", "GB", "TB"], "unit.kbps": "{n} kb/s", "unit.mbps": "{n} Mb/s",
  };

  const DICTS = { en, zh };

  // The voice picker: a short list named by language (each in itself), mapped to the registry's
  // "engine:voice" names; only those GET /voices lists are offered. The first name present wins.
  const VOICES = [
    { label: "中文 (普通话)", ids: ["espeak:cmn", "espeak:zh"], sample: "你好！我是你的数字人主播，很高兴见到你。" },
    { label: "粵語", ids: ["espeak:yue"], sample: "你好！我係你嘅數字人主播。" },
    { label: "English", ids: ["piper:joe", "espeak:en-us", "espeak:en"], sample: "Hello! I am your digital host. Nice to meet you." },
    { label: "日本語", ids: ["espeak:ja"], sample: "こんにちは。デジタルヒューマンです。" },
    { label: "한국어", ids: ["espeak:ko"], sample: "안녕하세요. 디지털 휴먼입니다." },
    { label: "Español", ids: ["espeak:es"], sample: "¡Hola! Soy tu presentador digital." },
    { label: "Français", ids: ["espeak:fr", "espeak:fr-fr"], sample: "Bonjour ! Je suis votre présentateur numérique." },
    { label: "Deutsch", ids: ["espeak:de"], sample: "Hallo! Ich bin Ihr digitaler Moderator." },
  ];

  function detect() {
    const query = new URLSearchParams(window.location.search).get("lang");
    if (query && DICTS[query]) return query;
    try { const saved = localStorage.getItem(STORE); if (DICTS[saved]) return saved; } catch (_) { /* no storage */ }
    const browser = (navigator.languages && navigator.languages[0]) || navigator.language || "en";
    return browser.toLowerCase().startsWith("zh") ? "zh" : "en";
  }

  let lang = detect();
  const listeners = [];

  function lookup(key, params) {
    const dict = DICTS[lang];
    if (params && typeof params.n === "number") {
      const plural = `${key}_${params.n === 1 ? "one" : "other"}`;
      if (plural in dict) return dict[plural];
    }
    if (key in dict) return dict[key];
    return undefined;
  }

  function fill(text, params) {
    if (!params) return text;
    return text.replace(/\{(\w+)\}/g, (m, name) => {
      const v = params[name];
      if (v === undefined || v === null) return m;
      return typeof v === "number" ? number(v) : String(v);
    });
  }

  // The string of `key` in the current language. A missing key shows as itself (and warns), so a
  // gap is visible rather than blank.
  function t(key, params) {
    const text = lookup(key, params);
    if (typeof text !== "string") {
      console.warn(`i18n: no ${lang} string for ${key}`);
      return key;
    }
    return fill(text, params);
  }

  // t(key), or `fallback` when the key is unknown (server-supplied words with an optional translation).
  function tOr(key, fallback, params) {
    const text = lookup(key, params);
    return typeof text === "string" ? fill(text, params) : fallback;
  }

  function list(key) {
    const v = DICTS[lang][key];
    return Array.isArray(v) ? v.slice() : [];
  }

  const locale = () => (lang === "zh" ? "zh-CN" : "en");
  function number(n, digits = 0) {
    return new Intl.NumberFormat(locale(), { minimumFractionDigits: digits, maximumFractionDigits: digits }).format(n);
  }
  const ms = (n) => t("unit.ms", { n: Math.round(n) });
  const seconds = (s, digits = 1) => fill(DICTS[lang]["unit.s"], { n: number(s, digits) });
  function duration(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return fill(DICTS[lang]["unit.s"], { n: String(s) });
    return fill(DICTS[lang]["unit.min_s"], { m: String(Math.floor(s / 60)), s: String(s % 60).padStart(2, "0") });
  }
  function bytes(n) {
    const units = DICTS[lang]["unit.bytes"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${number(n, i ? 1 : 0)} ${units[i]}`;
  }
  function bitrate(kbps) {
    return kbps >= 1000 ? t("unit.mbps", { n: number(kbps / 1000, 1) }) : t("unit.kbps", { n: number(kbps, 0) });
  }
  const time = (d) => d.toLocaleTimeString(locale());
  const dateTime = (d) => d.toLocaleString(locale());

  function curatedVoices(available) {
    const out = [];
    for (const v of VOICES) {
      const id = v.ids.find((x) => available.has(x));
      if (id) out.push({ id, label: v.label, sample: v.sample });
    }
    return out;
  }

  function voiceLabel(id) {
    const v = VOICES.find((x) => x.ids.includes(id));
    return v ? v.label : null;
  }

  // Fill every data-i18n / data-i18n-attr element under `root`.
  function apply(root = document) {
    for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of root.querySelectorAll("[data-i18n-attr]")) {
      for (const pair of node.dataset.i18nAttr.split(";")) {
        const [attr, key] = pair.split(":").map((x) => x.trim());
        if (attr && key) node.setAttribute(attr, t(key));
      }
    }
    if (root === document) document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  }

  function setLang(next, remember = true) {
    if (!DICTS[next]) return;
    lang = next;
    if (remember) { try { localStorage.setItem(STORE, next); } catch (_) { /* no storage */ } }
    apply(document);
    const select = document.getElementById("lang-select");
    if (select) select.value = lang;
    for (const fn of listeners) {
      try { fn(lang); } catch (err) { console.error(err); }
    }
  }

  function onChange(fn) { listeners.push(fn); }

  function mountSwitch() {
    const select = document.getElementById("lang-select");
    if (!select) return;
    select.replaceChildren(...Object.entries(LANGUAGES).map(([code, name]) => {
      const opt = document.createElement("option");
      opt.value = code;
      opt.textContent = name;
      return opt;
    }));
    select.value = lang;
    select.addEventListener("change", () => setLang(select.value));
  }

  window.lipstreamI18n = {
    t, tOr, list, apply, setLang, onChange, curatedVoices, voiceLabel,
    number, ms, seconds, duration, bytes, bitrate, time, dateTime,
    get lang() { return lang; },
    languages: LANGUAGES,
    dictionaries: DICTS,   // for the tests: both languages have every key
  };

  // Scripts load with "defer", after the document is parsed: the page's own strings are there now.
  apply(document);
  mountSwitch();
})();
