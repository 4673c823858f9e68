"""Unit tests of the live server's pieces that need no network: the audio feed
(jitter buffer, clips, phase locking), the media clock, the tracks' stamping,
sentence splitting, the mic jitter buffer and SSE encoding."""

from __future__ import annotations

import asyncio
import json
from fractions import Fraction

import numpy as np
import pytest
from aiortc.rtp import RtpPacket

from live.engine.audio_feed import AudioFeed, Clip, FeedConfig
from live.rtc.media_clock import MediaClock
from live.rtc.mic_jitter import MicJitterBuffer
from live.rtc.tracks import AvatarAudioTrack
from live.server.events import EventHub
from live.server.speech_queue import split_sentences, trim_leading_silence

RATE = 16_000


def _tone(n: int, amp: float = 0.3) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * 220 * np.arange(n) / RATE)).astype(np.float32)


# -- AudioFeed ---------------------------------------------------------------------


def test_clips_are_handed_out_lazily_with_exact_markers():
    feed = AudioFeed()
    feed.add_clip(Clip("u1", _tone(1000), "hello", first=True, last=False))
    feed.add_clip(Clip("u1", _tone(500), "hello", first=False, last=True))
    got = feed.take(640, now=0.0)
    assert len(got.samples) == 640 and feed.position == 640
    assert [(m.kind, m.position) for m in got.markers] == [("start", 0)]
    got = feed.take(2000, now=0.0)
    assert len(got.samples) == 860          # only real speech; the engine pads the rest
    assert [(m.kind, m.position) for m in got.markers] == [("end", 1499)]
    assert len(feed.take(640, now=0.0).samples) == 0


def test_mic_waits_for_a_full_need_then_flows_and_counts_underruns():
    feed = AudioFeed()
    feed.add_mic(_tone(320), arrival=0.0)
    assert len(feed.take(1600, now=0.01).samples) == 0 and not feed.mic_flowing
    for k in range(1, 5):
        feed.add_mic(_tone(320), arrival=0.02 * k)
    got = feed.take(1600, now=0.1)
    assert feed.mic_flowing and len(got.samples) == 1600
    assert [pos for pos, _ in got.mic_chunks] == [0, 320, 640, 960, 1280]
    feed.add_mic(_tone(320), arrival=0.12)
    got = feed.take(640, now=0.13)          # only half of the need has arrived
    assert len(got.samples) == 320
    feed.note_padding(320)
    assert feed.underruns == 1 and feed.position == 1600 + 640


def _frames_against_a_mic(feed: AudioFeed, seconds: float, late_by_s: float, jitter_s: float = 0.0,
                          speech: bool = False, seed: int = 0) -> list[float]:
    """A microphone sends 10 ms chunks (each up to ``jitter_s`` late, delivered in order); frames
    take 40 ms each at their moment on a clock that runs ``late_by_s`` behind the microphone, or
    when their audio completes if that is at most 35 ms later (else they are padded), as the
    worker does with the server's requests.  Returns each whole frame's wait: seconds between the arrival of
    the chunk that completed its audio and the frame taking it."""
    rng = np.random.default_rng(seed)
    n_chunks = int(seconds * 100)
    sent = 0.01 * np.arange(1, n_chunks + 1)
    arrivals = np.maximum.accumulate(sent + 0.002 + rng.uniform(0, jitter_s, n_chunks))
    added, taken, waits = 0, 0, []

    def arrive_until(t: float) -> None:
        nonlocal added
        while added < n_chunks and arrivals[added] <= t:
            feed.add_mic(_tone(160) if speech else np.zeros(160, np.float32), float(arrivals[added]))
            added += 1

    for i in range(int(seconds * 25) - 4):
        moment = now = late_by_s + 0.04 * (i + 1)
        arrive_until(now)
        got = len(feed.take(640, now).samples)
        while got < 640 and feed.mic_flowing and arrivals[added] <= moment + 0.035:
            now = float(arrivals[added])            # wait for the rest, as the worker does
            arrive_until(now)
            got += len(feed.take(640 - got, now).samples)
        taken += got
        if got < 640:
            feed.note_padding(640 - got)
            continue
        completing = (taken + feed.skipped_samples - 1) // 160
        waits.append(now - float(arrivals[completing]))
    return waits


def test_the_phase_locks_so_frames_wait_for_their_moment_no_longer_than_the_headroom():
    # The microphone started 33 ms early against the frame clock: unlocked, every frame's
    # audio would wait that long for its moment, for the whole call.
    unlocked = AudioFeed(FeedConfig(min_headroom_s=1.0))
    assert min(_frames_against_a_mic(unlocked, 4.0, late_by_s=0.035)) > 0.03
    feed = AudioFeed()
    waits = _frames_against_a_mic(feed, 4.0, late_by_s=0.035)
    assert max(waits) <= feed.headroom_s() + 0.002 + 1e-9
    assert feed.underruns == 0
    # Nothing was dropped beyond what the phase needed.
    assert 0 < feed.skipped_samples < 0.035 * RATE


def test_a_jittery_link_keeps_more_headroom():
    feed = AudioFeed()
    waits = _frames_against_a_mic(feed, 6.0, late_by_s=0.035, jitter_s=0.025, seed=1)
    assert 0.015 < feed.headroom_s() < 0.03
    assert float(np.median(waits[25:])) > 0.005
    quiet = AudioFeed()
    waits = _frames_against_a_mic(quiet, 6.0, late_by_s=0.035, seed=1)
    assert quiet.headroom_s() == quiet.config.min_headroom_s
    assert max(waits[25:]) < 0.006


def test_speech_is_never_dropped_to_lock_the_phase():
    feed = AudioFeed()
    waits = _frames_against_a_mic(feed, 2.0, late_by_s=0.035, speech=True)
    assert feed.skipped_samples == 0
    assert min(waits[5:]) > 0.02    # the monologue keeps its phase until its next pause


def test_a_pause_in_arrivals_restarts_the_jitter_estimate():
    from live.engine.arrival_jitter import ArrivalJitter

    jitter = ArrivalJitter()
    for k in range(50):
        jitter.add(160, 0.01 * k + (0.02 if k % 7 == 0 else 0.0))
    assert jitter.spread_s() == pytest.approx(0.02, abs=1e-6)
    for k in range(50):                 # the sender resumes after a second of nothing sent
        jitter.add(160, 2.0 + 0.01 * k)
    assert jitter.spread_s() == pytest.approx(0.0, abs=1e-6)


def test_mic_and_clip_are_mixed_and_interrupt_forgets_both():
    feed = AudioFeed()
    feed.add_mic(np.full(2000, 0.1, np.float32), 0.0)
    feed.add_clip(Clip("u2", np.full(5000, 0.2, np.float32), "x"))
    got = feed.take(1600, now=0.0)
    assert np.allclose(got.samples, 0.3)
    dropped = feed.interrupt(cut=640)
    assert [c.utterance_id for c in dropped] == ["u2"]
    assert feed.position == 640 and feed.mic_backlog == 0 and feed.clip_backlog == 0 and not feed.mic_flowing


def test_mic_stops_being_flowing_after_timeout():
    feed = AudioFeed(FeedConfig(mic_timeout_s=0.25))
    feed.add_mic(_tone(1600), 0.0)
    feed.take(1600, now=0.01)
    assert feed.mic_flowing
    feed.take(640, now=1.0)
    assert not feed.mic_flowing


# -- clock and tracks ----------------------------------------------------------------


def test_media_clock_derives_timestamps_from_the_index_without_drift():
    clock = MediaClock(25.0)
    clock.begin(at=100.0)
    ten_hours = 25 * 3600 * 10
    assert clock.video_pts(ten_hours) == ten_hours * 3600
    assert clock.audio_pts(ten_hours) == ten_hours * 640
    assert clock.time_of_frame(ten_hours) == pytest.approx(100.0 + 36000.0)
    ntsc = MediaClock(30.0)
    # 30 fps: frame sizes alternate 533/534 samples but never accumulate an error.
    assert ntsc.audio_pts(30 * 3600) == 16_000 * 3600
    assert ntsc.video_pts(30 * 3600) == 90_000 * 3600


async def test_audio_track_numbers_packets_continuously_and_silences_on_interrupt():
    clock = MediaClock(25.0)
    clock.begin()
    track = AvatarAudioTrack(clock)
    for i in range(3):
        track.put(i, [bytes([i, 0]), bytes([i, 1])])
    assert track.queued_packets == 6
    first = await track.recv()
    assert first.pts == 0 and first.time_base == Fraction(1, 48_000) and bytes(first) == bytes([0, 0])
    assert track.silence_pending(b"quiet") == 5
    rest = [await track.recv() for _ in range(5)]
    assert [p.pts for p in rest] == [960 * k for k in range(1, 6)]
    assert all(bytes(p) == b"quiet" for p in rest)
    track.stop()


def test_speech_encoder_makes_one_packet_per_20ms_that_decodes_back():
    from live.rtc.audio_codec import MicDecoder, SpeechEncoder, silence_packet

    enc, dec = SpeechEncoder(), MicDecoder()
    t = np.arange(16_000) / 16_000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    packets = [p for k in range(25) for p in enc.encode(tone[k * 640 : (k + 1) * 640])]
    assert len(packets) == 50                      # 1 s of 25 fps frames -> 50 packets, none held back
    out = np.concatenate([dec.decode(p) for p in packets])
    assert abs(len(out) - 16_000) < 400
    spec = np.abs(np.fft.rfft(out[4000:12000]))
    assert abs(np.argmax(spec) * 16_000 / 8000 - 440) < 5
    dec.decode(silence_packet())                   # the decoder's overlap fades the tone out...
    assert np.abs(dec.decode(silence_packet())).max() < 1e-3   # ...then it is silent


def test_sentences_split_and_a_long_first_sentence_starts_with_a_clause():
    assert split_sentences("Hello there. How are you?  Fine!") == ["Hello there.", "How are you?", "Fine!"]
    long = "Although the weather was terrible all week, we still went out to the lake and swam. Then home."
    parts = split_sentences(long)
    assert parts[0] == "Although the weather was terrible all week," and parts[-1] == "Then home."
    assert split_sentences("你好。今天天气很好！") == ["你好。", "今天天气很好！"]
    assert split_sentences("   ") == []


def test_leading_silence_is_trimmed_to_10ms():
    audio = np.concatenate([np.zeros(1600, np.float32), _tone(1600)])
    out = trim_leading_silence(audio)
    assert len(out) == 1600 + 160


# -- mic jitter buffer ---------------------------------------------------------------


def _packet(seq: int) -> RtpPacket:
    p = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960)
    p._data = bytes([seq % 256])  # type: ignore[attr-defined]
    return p


def test_mic_jitter_buffer_hands_packets_on_at_once_in_order_and_fills_holes_it_gives_up():
    now = [0.0]
    got = []
    jb = MicJitterBuffer(lambda payload, t: got.append(payload[0] if payload else None), clock=lambda: now[0])
    for seq in (10, 11):
        assert jb.add(_packet(seq)) == (False, None)        # nothing for aiortc's decoder
    assert got == [10, 11]                                   # no 80 ms prefetch
    now[0] = 0.01
    jb.add(_packet(13))
    assert got == [10, 11]                                   # 12 is missing: wait a little
    now[0] = 0.03
    jb.add(_packet(12))
    assert got == [10, 11, 12, 13]                           # late but in time: both go at once
    for k, seq in enumerate((15, 16, 17, 18)):               # 14 is lost
        now[0] = 0.05 + 0.01 * k
        jb.add(_packet(seq))
        assert got[-1] == 13, "waits up to 40 ms for the missing packet"
    now[0] = 0.091
    jb.add(_packet(19))
    # Given up after 40 ms: an empty payload takes its place, so the stream keeps its length.
    assert got[-6:] == [None, 15, 16, 17, 18, 19] and jb.skipped == 1
    jb.add(_packet(14))
    assert got[-1] == 19                                     # too late now


def test_mic_decoder_fills_a_lost_packet_with_as_much_silence_as_the_packet_before():
    from live.rtc.audio_codec import MicDecoder, SpeechEncoder

    enc, dec = SpeechEncoder(), MicDecoder()
    assert len(dec.decode(b"")) == 0                          # nothing to go by yet
    packets = enc.encode(_tone(3200))
    sizes = [len(dec.decode(p)) for p in packets]
    lost = dec.decode(b"")
    assert len(lost) == sizes[-1] == 320 and not lost.any()


# -- events ------------------------------------------------------------------------


async def test_event_hub_fans_out_and_bounds_slow_subscribers():
    hub = EventHub()
    q = hub.subscribe()
    ev = hub.publish("speech_start", utterance_id="u1", text="hi")
    raw = ev.encode().decode()
    assert raw.startswith("id: 1\nevent: speech_start\ndata: ") and raw.endswith("\n\n")
    assert json.loads(raw.split("data: ", 1)[1])["text"] == "hi"
    for k in range(500):
        hub.publish("stats", k=k)
    assert q.qsize() == 256
    hub.close()
    items = [q.get_nowait() for _ in range(q.qsize())]
    assert items[-1] is None
    assert [e.kind for e in hub.history] == ["speech_start"]
    late = hub.subscribe()
    assert await asyncio.wait_for(late.get(), 1) is None


def test_video_encoder_follows_the_bandwidth_estimate_down_but_never_above_its_ceiling():
    from live.rtc.video_encoder import VideoEncoder, default_bitrate

    frame = np.full((768, 512), 128, np.uint8)
    enc = VideoEncoder("vp8", 512, 512, 25.0)
    assert enc.bitrate == enc.ceiling == default_bitrate(512, 512)
    first = enc.encode(frame, 0)
    assert first and not enc.will_send_keyframe
    enc.set_bitrate(1_500_000)                 # a good link: REMB climbs; the rate stays put
    assert enc.bitrate == enc.ceiling and not enc.will_send_keyframe
    enc.set_bitrate(300_000)                   # a congested one: follow it down (a new keyframe)
    assert enc.bitrate == 300_000 and enc.will_send_keyframe
    assert enc.encode(frame, 3600)
    enc.set_bitrate(10_000)
    assert enc.bitrate >= 200_000              # never below a usable minimum


def test_catch_up_skips_every_other_picture_only_while_behind():
    from live.worker.catch_up import CatchUpPolicy

    policy = CatchUpPolicy(behind_frames=2.0)
    fps = 25.0
    assert all(policy.draw(0.079, fps) for _ in range(5))           # under two frame periods: all drawn
    late = [policy.draw(0.5, fps) for _ in range(6)]
    assert late == [False, True, False, True, False, True]         # never two skips in a row
    assert policy.skipped == 3
    assert policy.draw(0.0, fps) and policy.draw(0.0, fps)          # back on time: all drawn again


def test_the_answer_asks_for_10_ms_microphone_packets_only_where_we_receive_audio():
    from live.rtc.signaling import MIC_PTIME_MS, ask_short_packets

    sdp = "\r\n".join([
        "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=sendrecv", "a=rtpmap:111 opus/48000/2",
        "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:1", "a=sendonly", "a=rtpmap:96 VP8/90000",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:2", "a=sendonly", "a=ptime:20", "a=rtpmap:111 opus/48000/2",
        "",
    ])
    out = ask_short_packets(sdp).split("\r\n")
    sections = "\r\n".join(out).split("m=")[1:]
    assert f"a=ptime:{MIC_PTIME_MS}" in sections[0]            # the microphone's section
    assert "a=ptime" not in sections[1]                         # video
    assert "a=ptime" not in sections[2]                         # audio we only send
    assert out[-1] == "" and out[:4] == sdp.split("\r\n")[:4]   # the rest untouched, CRLF kept
