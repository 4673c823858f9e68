"""The On-air console and the broadcast page in headless Chromium (CJK fonts installed): both
languages (every string in web/i18n.js, none left in English on the Chinese page), the language
switch, phone width, Enter/Shift+Enter, the script queue, push-to-talk, outputs, links, health,
the avatar gallery, and the OBS broadcast page with its reconnects.
"""

from __future__ import annotations

import asyncio
import html.parser
import json
import re
import shutil
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from testing.browser import Chromium, Page, chromium_path
from testing.media import speech_with_gaps, write_wav

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.skipif(chromium_path() is None, reason="Debian chromium is not installed"),
]

WEB = Path(__file__).resolve().parent.parent / "web"
REPORTS = Path(__file__).resolve().parent.parent / "reports"
STUDIO_ID = "0123456789abcdef"
READY = "document.readyState === 'complete' && !!window.lipstreamConsole && !!window.lipstreamI18n"


async def _json(url: str, method: str, path: str, **kw) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url + path, **kw) as resp:
            return resp.status, await resp.json(content_type=None)


async def _channel(url: str, **body) -> dict:
    status, info = await _json(url, "POST", "/channels", json=body)
    assert status == 201, info
    return info


async def _open_onair(browser: Chromium, url: str, query: str = "?lang=en") -> Page:
    page = await browser.open(f"{url}/{query}")
    await page.wait_for(READY)
    await page.evaluate("document.getElementById('tab-onair').click()")
    await page.wait_for("window.lipstreamConsole.available !== null", timeout=20)
    return page


async def _select(page: Page, channel_id: str) -> None:
    """Pick the channel in the console's list (the list is read again: the test made the channel)."""
    await page.evaluate(f"window.lipstreamConsole.reload({json.dumps(channel_id)})")
    await page.wait_for(f"window.lipstreamConsole.channel && window.lipstreamConsole.channel.channel_id === {json.dumps(channel_id)}"
                        f" && document.getElementById('oa-channel-select').value === {json.dumps(channel_id)}")


async def _wait_playing(page: Page, video: str = "oa-video", seconds: float = 1.0) -> None:
    await page.wait_for(f"document.getElementById('{video}').currentTime > {seconds}", timeout=60)


# -- strings ----------------------------------------------------------------------------------------

class _VisibleText(html.parser.HTMLParser):
    """Text nodes of an HTML file outside <script>/<style>/<title>/<h1> (the brand)."""

    def __init__(self) -> None:
        super().__init__()
        self.skip = 0
        self.texts: list[str] = []
        self.attrs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "title", "h1"):
            self.skip += 1
        for name, value in attrs:
            if name in ("placeholder", "title", "aria-label", "alt") and value:
                self.attrs.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style", "title", "h1"):
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip and data.strip():
            self.texts.append(data.strip())


def test_the_html_has_no_hard_coded_words():
    """Every word of the pages comes from web/i18n.js: the HTML holds keys, not text."""
    for name in ("index.html", "broadcast.html"):
        parser = _VisibleText()
        parser.feed((WEB / name).read_text())
        words = [t for t in parser.texts + parser.attrs if re.search(r"[A-Za-z\u4e00-\u9fff]", t)]
        assert not words, (name, words)


def _keys_used_in_sources() -> set[str]:
    keys: set[str] = set()
    for path in list(WEB.glob("*.js")) + list(WEB.glob("*.html")):
        if path.name == "i18n.js":
            continue
        text = path.read_text()
        keys |= set(re.findall(r"""\bt\(\s*["']([a-z_]+\.[A-Za-z0-9_ .]+)["']""", text))
        keys |= set(re.findall(r"""(?:tr|I\.list|tOr)\(\s*["']([a-z_]+\.[A-Za-z0-9_ .]+)["']""", text))
        keys |= set(re.findall(r'data-i18n="([^"]+)"', text))
        for attr in re.findall(r'data-i18n-attr"?\s*[:=]\s*"([^"]+)"', text):
            keys |= {pair.split(":")[1].strip() for pair in attr.split(";")}
    return keys


async def test_both_languages_have_every_key_and_the_chinese_page_has_no_english(live_server):
    async with Chromium.launch(lang="zh-CN") as browser:
        page = await browser.open(live_server.url + "/")
        await page.wait_for(READY)
        dicts = await page.evaluate("window.lipstreamI18n.dictionaries")
        assert await page.evaluate("window.lipstreamI18n.lang") == "zh"   # followed the browser's language

        def base(keys):
            return {re.sub(r"_(one|other)$", "", k) for k in keys}
        assert base(dicts["en"]) == base(dicts["zh"]), base(dicts["en"]) ^ base(dicts["zh"])
        used = _keys_used_in_sources()
        assert len(used) > 150
        missing = sorted(k for k in used if k not in base(dicts["en"]))
        assert not missing, missing

        # Fill the dynamic parts: voices, avatars, quick replies, a script line, the studio.
        await page.wait_for("document.querySelectorAll('#oa-voice option').length > 1")
        await page.wait_for("document.querySelectorAll('#oa-gallery .g-card').length > 0")
        await page.evaluate("document.getElementById('oa-script-new').value = '第一句'; "
                            "document.getElementById('oa-script-add-btn').click()")
        await page.wait_for("document.querySelectorAll('#st-results p, #st-results .st-card').length > 0", timeout=30)
        # Every text node and label of the whole page (hidden views too), bar names that are the same
        # in every language: the brand, protocols, keys, language endonyms, URLs.
        english = await page.evaluate(r"""(() => {
            const allowed = /^(lipstream|WHEP|RTMP|RTMPS|OBS|Enter|Shift|HTTP|ZIP|MP4|CPU|English|Español|Français|Deutsch|p50|p95|kb|Mb|KB|MB|GB|TB|rtmp|rtmps)$/;
            const out = [];
            const check = (text, where) => {
              const words = text.replace(/\S+:\/\/\S+/g, "").match(/[A-Za-z][A-Za-z0-9]+/g) || [];
              const bad = words.filter(w => !allowed.test(w));
              if (bad.length) out.push(`${where}: ${text.slice(0, 80)}`);
            };
            const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            for (let n = walker.nextNode(); n; n = walker.nextNode()) {
              const p = n.parentElement;
              if (!p || p.closest('script,style,h1,#lang-select,#oa-voice,#voice-select,#st-voice,#st-log-lines')) continue;
              if (n.textContent.trim()) check(n.textContent, p.id || p.className || p.tagName);
            }
            for (const e of document.querySelectorAll('[placeholder],[title],[aria-label]')) {
              for (const a of ['placeholder', 'title', 'aria-label']) if (e.getAttribute(a)) check(e.getAttribute(a), `${e.id || e.tagName}@${a}`);
            }
            return out;
        })()""")
        assert not english, english
        assert await page.evaluate("document.documentElement.lang") == "zh-CN"
        assert not page.exceptions, page.exceptions


async def test_the_language_switch_is_remembered(live_server):
    async with Chromium.launch(lang="en-US") as browser:
        page = await browser.open(live_server.url + "/")
        await page.wait_for(READY)
        assert await page.evaluate("document.getElementById('tab-onair').textContent") == "On air"
        await page.evaluate("const s = document.getElementById('lang-select'); s.value = 'zh';"
                            " s.dispatchEvent(new Event('change'))")
        assert await page.evaluate("document.getElementById('tab-onair').textContent") == "直播"
        # Scripts re-render what they built: the status, the quick replies, the studio's buttons.
        assert await page.evaluate("document.getElementById('oa-ptt').textContent") == "按住说话"
        assert await page.evaluate("document.getElementById('st-start').textContent") == "开始"
        # A mark the reload wipes: READY alone could still be true of the old document.
        await page.evaluate("window.beforeReload = true; location.reload()")
        await page.wait_for(f"!window.beforeReload && ({READY})")
        assert await page.evaluate("window.lipstreamI18n.lang") == "zh"
        assert await page.evaluate("document.getElementById('tab-live').textContent") == "实时"
        assert await page.evaluate("localStorage.getItem('lipstream.lang')") == "zh"
        # ?lang= wins for one view without changing what is remembered.
        page2 = await browser.open(live_server.url + "/?lang=en")
        await page2.wait_for(READY)
        assert await page2.evaluate("document.getElementById('tab-live').textContent") == "Live"
        assert await page2.evaluate("localStorage.getItem('lipstream.lang')") == "zh"


# -- layout -----------------------------------------------------------------------------------------

async def _no_overflow(page: Page) -> list[int]:
    return await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


async def test_every_view_fits_a_phone_and_shows_the_avatar_not_a_black_box(live_server):
    async with Chromium.launch(lang="zh-CN") as browser:   # Chinese labels are the wider ones here
        page = await browser.open(live_server.url + "/")
        await page.set_viewport(390, 844)
        await page.wait_for(READY)
        await page.wait_for("document.querySelectorAll('#voice-select option').length > 2")
        # The first view is the avatar's preview image (a poster that loads), on Live and On air.
        for video in ("avatar-video", "oa-video"):
            poster = await page.evaluate(f"document.getElementById('{video}').poster")
            assert "/avatars/default/preview.jpg" in poster
            ok = await page.evaluate(f"new Promise(r => {{ const i = new Image(); i.onload = () => r(i.naturalWidth);"
                                     f" i.onerror = () => r(0); i.src = {json.dumps(poster)}; }})")
            assert ok >= 320, ok
        for tab in ("tab-live", "tab-onair", "tab-studio"):
            await page.evaluate(f"document.getElementById('{tab}').click()")
            await page.evaluate("document.getElementById('oa-script-new').value = '一二三四五六七八九十'.repeat(8);"
                                " document.getElementById('oa-script-add-btn').click()")
            widths = await _no_overflow(page)
            assert widths[1] == 390 and widths[0] <= widths[1], (tab, widths)


# -- speaking, queue, PTT, outputs, links, health ---------------------------------------------------

async def test_enter_sends_and_shift_enter_makes_a_new_line(live_server):
    channel = await _channel(live_server.url, name="keys")
    async with Chromium.launch() as browser:
        page = await _open_onair(browser, live_server.url)
        await _select(page, channel["channel_id"])
        await page.evaluate("const t = document.getElementById('oa-text'); t.value = 'Hello there.'; t.focus();"
                            " t.setSelectionRange(t.value.length, t.value.length)")
        await page.press("Enter", shift=True)
        assert await page.evaluate("document.getElementById('oa-text').value") == "Hello there.\n"
        assert await page.evaluate("window.lipstreamConsole.lastUtterance ?? null") is None
        await page.evaluate("document.getElementById('oa-text').value += 'Second line.'")
        await page.press("Enter")
        await page.wait_for("document.getElementById('oa-text').value === ''")
        uid = await page.wait_for("window.lipstreamConsole.lastUtterance")
        assert await page.wait_for(f"window.lipstreamConsole.spoken.includes('{uid}')", timeout=60)
        assert not page.exceptions, page.exceptions


async def test_script_queue_reorders_skips_and_reads_in_order(live_server):
    channel = await _channel(live_server.url, name="script")
    async with Chromium.launch() as browser:
        page = await _open_onair(browser, live_server.url)
        await page.evaluate("document.getElementById('oa-script-new').value = 'One.\\nTwo.\\n\\nThree.';"
                            " document.getElementById('oa-script-add-btn').click()")
        texts = "[...document.querySelectorAll('#oa-queue .q-text')].map(t => t.value)"
        assert await page.evaluate(texts) == ["One.", "Two.", "Three."]
        await page.evaluate("document.querySelector('#oa-queue li:nth-child(1) .q-down').click()")
        assert await page.evaluate(texts) == ["Two.", "One.", "Three."]
        await page.evaluate("document.querySelector('#oa-queue li:nth-child(3) .q-up').click()")
        assert await page.evaluate(texts) == ["Two.", "Three.", "One."]
        await page.evaluate("document.querySelector('#oa-queue li:nth-child(1) .q-skip').click()")
        # An edit is kept; the queue survives a reload.
        await page.evaluate("const t = document.querySelector('#oa-queue li:nth-child(2) .q-text');"
                            " t.value = 'Three, edited.'; t.dispatchEvent(new Event('input'))")
        await page.evaluate("window.beforeReload = true; location.reload()")
        await page.wait_for(f"!window.beforeReload && ({READY})")
        await page.evaluate("document.getElementById('tab-onair').click()")
        assert await page.evaluate(texts) == ["Two.", "Three, edited.", "One."]
        assert await page.evaluate("[...document.querySelectorAll('#oa-queue li')].map(l => l.classList.contains('q-skipped'))") \
            == [True, False, False]

        await _select(page, channel["channel_id"])
        await page.evaluate("document.getElementById('oa-read-next').click()")
        # The skipped line is passed over; the next one is spoken (the channel's SSE says when).
        await page.wait_for("document.querySelector('#oa-queue li:nth-child(2)').classList.contains('q-done')", timeout=90)
        states = await page.evaluate("[...document.querySelectorAll('#oa-queue li')].map(l => l.className)")
        assert "q-pending" in states[0] and "q-skipped" in states[0] and "q-pending" in states[2], states
        await page.evaluate("document.getElementById('oa-read-all').click()")
        await page.wait_for("document.querySelector('#oa-queue li:nth-child(3)').classList.contains('q-done')", timeout=90)
        assert "q-skipped" in await page.evaluate("document.querySelector('#oa-queue li:nth-child(1)').className")


async def test_push_to_talk_level_meter_outputs_links_and_health(live_server, tmp_path):
    track = speech_with_gaps(("Front_Center", "Rear_Left"), gaps=(0.4,), lead=0.2, tail=0.2)
    wav = write_wav(tmp_path / "mic.wav", np.tile(track.audio, 4), 16_000)
    channel = await _channel(live_server.url, name="ptt")
    async with Chromium.launch(fake_audio=wav) as browser:
        page = await _open_onair(browser, live_server.url)
        await _select(page, channel["channel_id"])
        await _wait_playing(page)
        health = await page.wait_for("document.getElementById('oa-health').textContent", timeout=20)
        assert re.fullmatch(r"delay \d+\.\d s · (good|fair|poor) connection", health), health
        await page.wait_for("document.getElementById('oa-viewers').textContent === '1 viewer'", timeout=20)
        # Per viewer: its link in plain words, from the receiver reports the server gets.
        line = await page.wait_for("(l => l && /round trip/.test(l.textContent) && l.textContent)"
                                   "(document.querySelector('#oa-viewer-list li'))", timeout=30)
        assert re.fullmatch(r"viewer 1: (good|fair|poor) connection, \d+\.\d\d s behind the server, "
                            r"round trip \d+ ms, \d+ % lost", line), line

        # Links: absolute, with the view key; the background choice goes into the broadcast link.
        links = await page.evaluate("[document.getElementById('oa-link-broadcast').value, document.getElementById('oa-link-whep').value]")
        key = channel["view_key"]
        assert links == [f"{live_server.url}/broadcast/{channel['channel_id']}?key={key}",
                         f"{live_server.url}/channels/{channel['channel_id']}/whep?key={key}"]
        await page.evaluate("const s = document.getElementById('oa-bg'); s.value = 'green'; s.dispatchEvent(new Event('change'))")
        assert (await page.evaluate("document.getElementById('oa-link-broadcast').value")).endswith("&bg=green")

        # Push-to-talk: the microphone is off until pressed, on while held, off on release.
        await page.evaluate("document.getElementById('oa-ptt').dispatchEvent(new PointerEvent('pointerdown', {bubbles: true}))")
        await page.wait_for("window.lipstreamConsole.mic && window.lipstreamConsole.mic.track.enabled", timeout=10)
        await page.wait_for("document.getElementById('oa-level').value > 0.01", timeout=10)
        sender = await page.evaluate("window.lipstreamConsole.client.audioSender.track === window.lipstreamConsole.mic.track")
        assert sender
        await page.evaluate("document.getElementById('oa-ptt').dispatchEvent(new PointerEvent('pointerup', {bubbles: true}))")
        assert await page.evaluate("window.lipstreamConsole.mic.track.enabled") is False

        # Ending the channel clears every figure.
        await page.evaluate("document.getElementById('oa-end').click(); document.getElementById('oa-end').click()")
        await page.wait_for("window.lipstreamConsole.channel === null", timeout=20)
        assert await page.evaluate("[document.getElementById('oa-health').textContent, document.getElementById('oa-viewers').textContent]") == ["", ""]
        await asyncio.sleep(1.5)   # a late stats tick must not bring a figure back
        assert await page.evaluate("document.getElementById('oa-health').textContent") == ""
        assert not page.exceptions, page.exceptions


async def test_outputs_show_their_state_in_plain_words_and_stop(live_server):
    """A real nginx-rtmp ingest: live with its rate, an outage counted down, live again, stopped."""
    from testing.rtmp_server import RtmpServer, unavailable_reason

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    channel = await _channel(live_server.url, name="outputs")
    words_js = "document.querySelector('#oa-outputs .o-words')?.textContent || ''"
    with RtmpServer() as ingest:
        async with Chromium.launch() as browser:
            page = await _open_onair(browser, live_server.url)
            await _select(page, channel["channel_id"])
            assert await page.evaluate("document.getElementById('oa-outputs-empty').hidden") is False
            # A bad URL is refused by the page with a reason.
            await page.evaluate("document.getElementById('oa-rtmp-url').value = 'http://example.com/x';"
                                " document.getElementById('oa-add-output').click()")
            assert "rtmp://" in await page.evaluate("document.getElementById('oa-message').textContent")
            # An ingest that is not there: said in plain words, with the next try counted down.
            await page.evaluate("document.getElementById('oa-rtmp-url').value = 'rtmp://127.0.0.1:9/live/other-key';"
                                " document.getElementById('oa-add-output').click()")
            await page.wait_for(f"/cannot reach rtmp:\\/\\/127\\.0\\.0\\.1:9\\/live\\/.* trying again in \\d+ s/.test({words_js})",
                                timeout=30)
            await page.evaluate("document.querySelector('#oa-outputs .o-stop').click()")
            await page.wait_for("document.querySelectorAll('#oa-outputs li').length === 0", timeout=20)

            await page.evaluate(f"document.getElementById('oa-rtmp-url').value = {json.dumps(ingest.url('secret-key'))};"
                                " document.getElementById('oa-add-output').click()")
            words = await page.wait_for(f"/live on .*Mb\\/s|live on .*kb\\/s/.test({words_js}) && {words_js}", timeout=30)
            assert f"rtmp://127.0.0.1:{ingest.port}/live/" in words and "secret-key" not in words, words
            await asyncio.to_thread(ingest.kill)
            await page.wait_for(f"/reconnecting in \\d+ s|reconnecting…/.test({words_js})", timeout=30)
            await asyncio.to_thread(ingest.start)
            await page.wait_for(f"/live on/.test({words_js})", timeout=30)
            await page.evaluate("document.querySelector('#oa-outputs .o-stop').click()")
            await page.wait_for("document.querySelectorAll('#oa-outputs li').length === 0", timeout=20)
            status, listing = await _json(live_server.url, "GET", f"/channels/{channel['channel_id']}/outputs")
            assert listing["outputs"] == [], listing
            assert not page.exceptions, page.exceptions


async def test_console_screenshots_in_both_languages(live_server, tmp_path):
    channel = await _channel(live_server.url, name="Evening show")
    shots = []
    for lang in ("en", "zh"):
        async with Chromium.launch() as browser:
            page = await _open_onair(browser, live_server.url, f"?lang={lang}")
            await page.set_viewport(1280, 900)
            await page.evaluate("document.getElementById('oa-script-new').value = "
                                + json.dumps("Welcome, everyone!\n欢迎大家来到直播间！\nToday: the new phone.")
                                + "; document.getElementById('oa-script-add-btn').click()")
            await _select(page, channel["channel_id"])
            await _wait_playing(page)
            await page.wait_for("document.getElementById('oa-health').textContent", timeout=20)
            await page.wait_for("[...document.querySelectorAll('#oa-gallery img')].every(i => i.complete && i.naturalWidth > 0)")
            shot = await page.screenshot(tmp_path / f"console_{lang}.png")
            REPORTS.mkdir(exist_ok=True)
            shutil.copyfile(shot, REPORTS / f"console_{lang}.png")
            shots.append(shot)
            assert not page.exceptions, page.exceptions
    assert all(s.stat().st_size > 20_000 for s in shots)


# -- avatars ----------------------------------------------------------------------------------------

async def test_gallery_renames_deletes_and_adds_studio_avatars(make_server, tmp_path, avatar_root):
    root = tmp_path / "avatars"
    shutil.copytree(avatar_root / "default", root / "default")
    shutil.copytree(avatar_root / "default", root / STUDIO_ID)
    info = json.loads((root / STUDIO_ID / "info.json").read_text())
    info.update(avatar_id=STUDIO_ID, name="presenter")
    (root / STUDIO_ID / "info.json").write_text(json.dumps(info))
    server = await make_server(avatar_root=root)
    cards = "[...document.querySelectorAll('#oa-gallery .g-card')].map(c => c.dataset.avatar + ':' + c.querySelector('.g-name, input').textContent)"
    async with Chromium.launch() as browser:
        page = await _open_onair(browser, server.url)
        await page.wait_for("document.querySelectorAll('#oa-gallery .g-card').length === 1")
        assert await page.evaluate(cards) == ["default:Astronaut"]   # the studio's video is not offered
        await page.evaluate("const c = document.getElementById('oa-show-all'); c.checked = true; c.dispatchEvent(new Event('change'))")
        await page.wait_for("document.querySelectorAll('#oa-gallery .g-card').length === 2")
        await page.evaluate(f"document.querySelector('[data-avatar=\"{STUDIO_ID}\"] .g-add').click()")
        await page.wait_for(f"!document.querySelector('[data-avatar=\"{STUDIO_ID}\"]').classList.contains('studio-only')")

        await page.evaluate(f"document.querySelector('[data-avatar=\"{STUDIO_ID}\"] .g-rename').click()")
        await page.evaluate("const i = document.querySelector('.g-rename-input'); i.value = '小美';")
        await page.evaluate("document.querySelector('.g-rename-input').focus()")
        await page.press("Enter")
        await page.wait_for(f"document.querySelector('[data-avatar=\"{STUDIO_ID}\"] .g-name')?.textContent === '小美'")
        status, listing = await _json(server.url, "GET", "/avatars")
        assert {a["avatar_id"]: a["name"] for a in listing["avatars"]} == {"default": "Astronaut", STUDIO_ID: "小美"}

        assert await page.evaluate("document.querySelector('[data-avatar=\"default\"] .g-delete')") is None
        await page.evaluate(f"document.querySelector('[data-avatar=\"{STUDIO_ID}\"] .g-delete').click()")
        assert (root / STUDIO_ID).exists()   # the first click only asks
        await page.evaluate(f"document.querySelector('[data-avatar=\"{STUDIO_ID}\"] .g-delete').click()")
        await page.wait_for("document.querySelectorAll('#oa-gallery .g-card').length === 1")
        assert not (root / STUDIO_ID).exists()
        assert not page.exceptions, page.exceptions


# -- the broadcast page -----------------------------------------------------------------------------

async def test_broadcast_page_plays_with_sound_and_reconnects_by_itself(live_server):
    channel = await _channel(live_server.url, name="obs")
    link = f"{live_server.url}{channel['links']['broadcast']}&bg=green"
    async with Chromium.launch() as browser:   # launched with autoplay allowed, as OBS does
        async with aiohttp.ClientSession() as http:
            async with http.get(link) as resp:
                assert resp.status == 200 and resp.content_type == "text/html", resp.status
        page = await browser.open(link)
        await page.wait_for("window.lipstreamBroadcast && window.lipstreamBroadcast.connected", timeout=30)
        await _wait_playing(page, "bc-video")
        look = await page.evaluate("""(() => { const v = document.getElementById('bc-video');
            const r = v.getBoundingClientRect();
            return {muted: v.muted, controls: v.controls, w: r.width, h: r.height, iw: innerWidth, ih: innerHeight,
                    sw: document.documentElement.scrollWidth, sh: document.documentElement.scrollHeight,
                    note: document.getElementById('bc-note').hidden, body: getComputedStyle(document.body).backgroundColor,
                    url: window.lipstreamBroadcast.client.url}; })()""")
        assert look["muted"] is False and look["controls"] is False and look["note"] is True, look
        assert (look["w"], look["h"]) == (look["iw"], look["ih"]) and look["sw"] <= look["iw"] and look["sh"] <= look["ih"]
        assert look["body"] == "rgb(0, 0, 0)"
        assert f"key={channel['view_key']}" in look["url"] and "bg=green" in look["url"], look

        # The server drops this viewer: the page notices and connects again by itself.
        resource = await page.evaluate("window.lipstreamBroadcast.client.resource")
        async with aiohttp.ClientSession() as http:
            async with http.delete(resource) as resp:
                assert resp.status in (200, 204), await resp.text()
        await page.wait_for("window.lipstreamBroadcast.connects >= 2", timeout=60)
        t0 = await page.evaluate("document.getElementById('bc-video').currentTime")
        await page.wait_for(f"document.getElementById('bc-video').currentTime > {t0} + 1", timeout=30)

        # A channel that is not running: it says so, in words, and keeps trying.
        bad = await browser.open(f"{live_server.url}/broadcast/nosuchchannel0000?key=k&lang=en")
        note = await bad.wait_for("(n => n && !n.hidden && n.textContent)(document.getElementById('bc-note'))", timeout=30)
        assert re.fullmatch(r"This channel is not running\. Retrying in \d+ s\.", note), note
        await bad.wait_for("window.lipstreamBroadcast.attempts >= 2", timeout=30)
