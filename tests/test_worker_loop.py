"""The worker loop on its own, over a socket pair in this process (no server, no WebRTC).

``WorkerLoop`` runs in a thread with the real avatar, model and encoders; the test
is the server side of the protocol (``live.worker.protocol``) and checks what a
session relies on: frames answered in order, catch-up frames advance without a
picture, interrupts drop queued speech and close the lips, and a frame waits for
late microphone audio until its deadline but no longer.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np
import pytest

from live.engine.audio_feed import Clip, FeedConfig
from live.worker.loop import WorkerLoop
from live.worker.protocol import (
    ClipAudio,
    FrameReady,
    Interrupt,
    Interrupted,
    MicAudio,
    Ready,
    KeyframeRequest,
    RenderRequest,
    SetVariants,
    Stop,
    VideoVariant,
    WorkerError,
    WorkerSpec,
)
from testing.media import speech_with_gaps

pytestmark = pytest.mark.timeout(120)


@dataclass
class Worker:
    conn: Connection         # the server's end
    loop: WorkerLoop         # the worker's state, for the timeline only
    thread: threading.Thread

    def send(self, msg: object) -> None:
        self.conn.send(msg)

    def reply(self, timeout: float = 30.0) -> object:
        assert self.conn.poll(timeout), f"no reply from the worker in {timeout} s"
        return self.conn.recv()

    def frame(self, timeout: float = 30.0) -> FrameReady:
        msg = self.reply(timeout)
        assert isinstance(msg, FrameReady), msg
        return msg

    def need(self, index: int) -> int:
        """Stream samples frame ``index`` needs (its audio plus the model's look-ahead)."""
        return self.loop.timeline.samples_needed(index)


@pytest.fixture
def worker(avatar_root) -> Iterator[Worker]:
    import torch

    threads = torch.get_num_threads()
    ours, theirs = socket.socketpair()
    conn, child = Connection(ours.detach()), Connection(theirs.detach())
    # A mic that is never declared stopped: only its audio or the deadline end a wait.
    spec = WorkerSpec("default", avatar_root, 25.0, feed=FeedConfig(mic_timeout_s=60.0))
    loop = WorkerLoop(child, spec)
    thread = threading.Thread(target=loop.run, daemon=True, name="worker-loop")
    thread.start()
    w = Worker(conn, loop, thread)
    assert isinstance(w.reply(), Ready)
    yield w
    conn.send(Stop())
    thread.join(10)
    assert not thread.is_alive(), "the worker loop did not stop on Stop"
    conn.close()
    child.close()
    torch.set_num_threads(threads)


def _speech(seconds: float | None = None) -> np.ndarray:
    audio = speech_with_gaps(("Front_Center", "Rear_Left"), gaps=(0.2,), lead=0.0, tail=0.0).audio
    return audio if seconds is None else audio[: int(seconds * 16_000)]


def test_frames_behind_the_clock_are_answered_at_once_in_order_and_catch_up_frames_have_no_picture(worker):
    past = time.monotonic() - 10.0      # every request is long overdue
    draw = [True, False, True, False, True, True]
    for i, d in enumerate(draw):
        worker.send(RenderRequest(i, past, past, epoch=0, image=d))
    frames = [worker.frame() for _ in draw]
    assert [f.index for f in frames] == list(range(len(draw)))
    assert [f.has_image for f in frames] == draw
    for f, d in zip(frames, draw):
        assert bool(f.pictures and f.pictures[0].data) == d, "a catch-up frame must not carry a picture, a drawn one must"
        assert len(f.audio_packets) == 2, "every frame carries its 40 ms of sound, drawn or not"
        assert len(f.pcm) == 2 * 640, "every frame carries its 640 samples of PCM for outputs that encode their own"
    assert frames[0].pictures[0].keyframe and not frames[2].pictures[0].keyframe
    # The engine is at frame 6: a request for any other frame is an error, not a wrong frame.
    worker.send(RenderRequest(9, past, past, epoch=0))
    assert isinstance(worker.reply(), WorkerError)


def test_interrupt_drops_queued_speech_acknowledges_and_closes_the_lips(worker):
    worker.send(ClipAudio(Clip("u1", _speech(), "hello", first=True, last=True)))
    past = time.monotonic() - 10.0
    for i in range(15):
        worker.send(RenderRequest(i, past, past, epoch=0))
    before = [worker.frame() for _ in range(15)]
    assert any(m.kind == "start" and m.utterance_id == "u1" for f in before for m in f.markers)
    assert max(f.openness for f in before) > 0.2, "the speech did not open the mouth"

    worker.send(Interrupt(epoch=1))
    ack = worker.reply()
    assert isinstance(ack, Interrupted) and ack.epoch == 1 and ack.dropped == ("u1",)
    for i in range(15, 20):
        worker.send(RenderRequest(i, past, past, epoch=1))
    after = [worker.frame() for _ in range(5)]
    assert all(f.epoch == 1 for f in after)
    assert not any(m.kind == "end" for f in after for m in f.markers), "the dropped speech must not finish"
    assert all(f.openness == 0.0 for f in after[2:]), [f.openness for f in after]   # closed within two frames
    assert not any(f.speaking for f in after[2:])


def test_speech_streamed_in_real_time_pieces_opens_the_mouth_and_plays_whole(worker):
    # An agent's audio socket: 20 ms pieces of one utterance, each pair arriving just
    # before the frame that plays it.  (Each piece used to drop the idle padding and
    # with it the voice activity, so the mouth stayed shut for the whole utterance.)
    speech = _speech(2.0)
    past = time.monotonic() - 10.0
    frames = []
    for i in range(3):      # idle: the engine's look-ahead is padded with silence
        worker.send(RenderRequest(i, past, past, epoch=0))
        frames.append(worker.frame())
    pieces = [speech[k : k + 320] for k in range(0, len(speech), 320)]
    for n, piece in enumerate(pieces):
        worker.send(ClipAudio(Clip("u1", piece, "streamed", first=n == 0, last=n == len(pieces) - 1)))
        if n % 2 == 1:
            worker.send(RenderRequest(len(frames), past, past, epoch=0))
            frames.append(worker.frame())
    for _ in range(8):
        worker.send(RenderRequest(len(frames), past, past, epoch=0))
        frames.append(worker.frame())

    assert max(f.openness for f in frames) > 0.2, "the streamed speech did not open the mouth"
    assert sum(f.speaking for f in frames) >= 0.5 * len(speech) / 640, "speech was not seen as speech"
    # What was played holds the utterance once, whole and without a gap.
    played = np.concatenate([np.frombuffer(f.pcm, np.int16) for f in frames]).astype(np.float32) / 32768.0
    start = int(np.flatnonzero(np.abs(played) > 1e-3)[0]) - int(np.flatnonzero(np.abs(speech) > 1e-3)[0])
    assert start >= 0 and np.abs(played[start : start + len(speech)] - speech).max() < 2e-4


def test_a_frame_waits_for_late_mic_audio_but_not_past_its_deadline(worker):
    speech = _speech(2.0)
    worker.send(MicAudio(speech[: worker.need(1)], time.monotonic()))
    now = time.monotonic()
    for i in range(2):
        worker.send(RenderRequest(i, now - 0.1, now + 30.0, epoch=0))
    assert [worker.frame().padded for _ in range(2)] == [0, 0]     # the mic is flowing now

    # Frame 2's audio is late: the worker holds the frame (no reply) until it arrives.
    start = time.monotonic()
    worker.send(RenderRequest(2, start, start + 30.0, epoch=0))
    assert not worker.conn.poll(0.3), "rendered before its microphone audio arrived"
    worker.send(MicAudio(speech[worker.need(1) : worker.need(2)], time.monotonic()))
    frame = worker.frame()
    assert frame.index == 2 and frame.padded == 0
    assert frame.timings.waited_ms >= 250.0

    # Frame 3's audio never comes: rendered at the deadline, padded with silence.
    start = time.monotonic()
    deadline = start + 0.4
    worker.send(RenderRequest(3, start, deadline, epoch=0))
    frame = worker.frame()
    answered = time.monotonic()
    assert answered >= deadline, f"did not wait for the mic: answered {deadline - answered:.3f} s early"
    assert frame.padded == worker.need(3) - worker.need(2) and frame.underruns == 1


def test_each_variant_is_encoded_once_per_frame_and_a_new_one_starts_with_a_keyframe(worker):
    """A channel's viewers share encodings: one per (codec, background), added and removed as they come."""
    past = time.monotonic() - 10.0
    vp8, h264 = VideoVariant("vp8"), VideoVariant("h264")
    worker.send(RenderRequest(0, past, past, epoch=0))
    worker.send(RenderRequest(1, past, past, epoch=0))
    first = [worker.frame(), worker.frame()]
    assert [tuple(p.variant for p in f.pictures) for f in first] == [(vp8,), (vp8,)]

    worker.send(SetVariants((vp8, h264)))
    worker.send(RenderRequest(2, past, past, epoch=0))
    both = worker.frame()
    assert {p.variant for p in both.pictures} == {vp8, h264}
    assert both.picture(h264).keyframe and not both.picture(vp8).keyframe, "only the new encoding starts afresh"
    assert both.picture(h264).data[:4] == b"\x00\x00\x00\x01", "H.264 comes as Annex-B (RTMP and RTP both take it)"

    worker.send(KeyframeRequest(h264))       # a new H.264 viewer: only that encoding restarts
    worker.send(RenderRequest(3, past, past, epoch=0))
    f3 = worker.frame()
    assert f3.picture(h264).keyframe and not f3.picture(vp8).keyframe

    worker.send(SetVariants((h264,)))        # the last VP8 viewer left
    worker.send(RenderRequest(4, past, past, epoch=0))
    f4 = worker.frame()
    assert [p.variant for p in f4.pictures] == [h264] and not f4.pictures[0].keyframe


def test_a_keyed_variant_puts_the_avatar_on_the_key_colour_once_its_matte_is_ready(worker):
    import av

    past = time.monotonic() - 10.0
    plain, green = VideoVariant("h264"), VideoVariant("h264", "#00b140")
    worker.send(SetVariants((plain, green)))
    worker.send(RenderRequest(0, past, past, epoch=0))
    worker.frame()
    keyer = worker.loop.encoders.keyer
    deadline = time.monotonic() + 60
    while not keyer.ready:      # the matte is computed in a thread: the stream never waits for it
        assert keyer.failed is None, keyer.failed
        assert time.monotonic() < deadline, "the matte was not ready in 60 s"
        time.sleep(0.1)
    worker.send(KeyframeRequest())
    worker.send(RenderRequest(1, past, past, epoch=0))
    frame = worker.frame()

    def decode(variant: VideoVariant) -> np.ndarray:
        codec = av.CodecContext.create("h264", "r")
        pictures = codec.decode(av.Packet(frame.picture(variant).data))
        return pictures[0].to_ndarray(format="bgr24").astype(int)

    keyed, original = decode(green), decode(plain)
    h, w = keyed.shape[:2]
    corner = keyed[: h // 10, : w // 10].reshape(-1, 3).mean(axis=0)
    assert np.abs(corner - (0x40, 0xB1, 0x00)).max() < 20, f"the background is not the key colour: {corner}"
    alpha = keyer._matte.alpha(worker.loop.session.compositor.source_index(1))
    person, background = alpha == 255, alpha == 0
    assert person.mean() > 0.2 and background.mean() > 0.2
    assert np.abs(keyed[person] - original[person]).mean() < 6, "the person must not be keyed"
    assert np.abs(keyed[background] - (0x40, 0xB1, 0x00)).mean() < 12, "the background must be the key colour"
