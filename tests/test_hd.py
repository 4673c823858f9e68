"""Native resolution (issue 10): a full-HD avatar stays full HD, and the region path
(mouth region composited and converted alone) gives exactly the full-frame pixels.

Clips are short and generated here: a 1 s 1080×1920 portrait talking head
(testing.hd_media) and a 320×240 clip with a fade, a cut and an empty scene
(testing.avatar_media.shot_clip).
"""

from __future__ import annotations


import av
import numpy as np
import pytest

from live.engine.mp4_writer import Mp4Writer, Mp4WriteError
from live.engine.offline_render import analyze_audio, render_video
from live.engine.session import EngineConfig, LipSyncSession
from live.worker.picture_encoders import EncodeCost, PictureEncoders
from live.worker.protocol import EncoderSettings, VideoVariant
from models.avatar.avatar import MAX_SIDE_ENV, AvatarError, load_avatar, prepare_avatar
from models.mouth.mouth_model import MouthPredictor
from models.mouth.mouth_shape import MouthShape
from models.render.mouth_renderer import MouthRenderer
from models.render.picture import Picture, RegionEdit, SourceFrames, bgr_to_i420, even_aligned, i420_planes
from testing.avatar_media import ShotPlan, shot_clip, write_video
from testing.hd_media import speech_like_shapes, talking_head_video

FPS = 25.0


@pytest.fixture(scope="module")
def portrait(tmp_path_factory):
    """A 1 s 1080×1920 talking head with a 440 px face, prepared at the default limit."""
    root = tmp_path_factory.mktemp("hd")
    src = talking_head_video(root / "portrait.mp4", root / "cache", width=1080, height=1920,
                             face_px=440, seconds=1.0)
    info = prepare_avatar(src, root / "cache")
    return src, info, load_avatar(info.avatar_id, root / "cache"), root


@pytest.fixture(scope="module")
def predictor():
    return MouthPredictor.load()


def _speech(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000.0
    envelope = (np.sin(2 * np.pi * 3.0 * t) > 0).astype(np.float32)
    return (0.3 * envelope * np.sin(2 * np.pi * 180.0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 900 * t))).astype(np.float32)


def test_portrait_stays_1080x1920_from_preparation_to_file_and_stream(portrait, predictor, tmp_path):
    _, info, avatar, _ = portrait
    assert (info.width, info.height) == (1080, 1920) and avatar.frame(0).shape == (1920, 1080, 3)
    # Offline: the file is at the avatar's size.
    audio = _speech(0.6)
    out = tmp_path / "hd.mp4"
    render_video(avatar, analyze_audio(audio, predictor), audio, out, encoder_threads=1)
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (1080, 1920)
    # Live: the worker's encoders get 1080×1920 pictures, and what they send decodes at that size.
    session = LipSyncSession(avatar, predictor, EngineConfig(fps=FPS))
    session.push_audio(audio)
    encoders = PictureEncoders(1080, 1920, FPS, EncoderSettings())
    encoders.set_variants((VideoVariant("h264"), VideoVariant("vp8")))
    decoders = {"h264": av.CodecContext.create("h264", "r"), "vp8": av.CodecContext.create("libvpx", "r")}
    edited = 0
    for k in range(6):
        frame = session.next_frame(pad_silence=True)
        edited += frame.picture.edit is not None
        for pic in encoders.encode(frame.picture, k * 3600, EncodeCost()):
            for packet in decoders[pic.variant.codec].parse(pic.data) or [av.Packet(pic.data)]:
                for decoded in decoders[pic.variant.codec].decode(packet):
                    assert (decoded.width, decoded.height) == (1080, 1920)
    assert edited > 0


def test_max_side_is_a_setting(portrait, monkeypatch):
    src, _, _, root = portrait
    monkeypatch.setenv(MAX_SIDE_ENV, "1080")
    info = prepare_avatar(src, root / "cache")
    assert (info.width, info.height) == (608, 1080)
    assert (prepare_avatar(src, root / "cache", max_side=1280).height) == 1280   # the argument wins
    monkeypatch.setenv(MAX_SIDE_ENV, "lots")
    with pytest.raises(AvatarError):
        prepare_avatar(src, root / "cache")


def test_region_path_is_pixel_identical_to_the_full_frame_path(portrait):
    _, _, avatar, _ = portrait
    frames = SourceFrames(avatar)
    region, full = MouthRenderer(avatar), MouthRenderer(avatar)
    shapes = speech_like_shapes(20, FPS, seed=3) + [MouthShape(1.0, 0.8, 0.0), MouthShape(0.0, -1.0, 1.0)]
    edited = 0
    for k, shape in enumerate(shapes):
        i = avatar.loop_frame(k)
        picture = Picture(frames, i, region.render_region(i, shape))
        expected = full.render(i, shape)
        assert np.array_equal(picture.bgr(), expected)
        stored = avatar.frame_i420(i)
        if picture.edit is None:
            assert np.array_equal(picture.i420(), stored)
            continue
        edited += 1
        x0, y0, x1, y1 = picture.edit.box
        assert x0 % 2 == y0 % 2 == x1 % 2 == y1 % 2 == 0
        assert (x1 - x0) * (y1 - y0) < 0.25 * 1080 * 1920          # a mouth region, not the frame
        outside = np.ones((1920, 1080), bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(picture.bgr()[outside], avatar.frame_readonly(i)[outside])
        # I420: the changed pixels as the whole edited frame converts them, all others as stored.
        changed = np.zeros((1920, 1080), bool)
        changed[y0:y1, x0:x1] = True if picture.edit.changed is None else picture.edit.changed
        blocks = changed.reshape(960, 2, 540, 2).any(axis=(1, 3))
        got, want, kept = (i420_planes(a, 1920, 1080) for a in (picture.i420(), bgr_to_i420(expected), stored))
        assert np.array_equal(got[0], np.where(changed, want[0], kept[0]))
        for c in (1, 2):
            assert np.array_equal(got[c], np.where(blocks, want[c], kept[c]))
    assert edited >= len(shapes) // 2


def test_odd_edits_are_widened_with_the_frames_own_pixels():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (40, 60, 3), np.uint8)
    patch = rng.integers(0, 256, (7, 9, 3), np.uint8)
    edit = even_aligned(RegionEdit(11, 5, patch), 40, 60, lambda b: frame[b[1]:b[3], b[0]:b[2]])
    assert edit.box == (10, 4, 20, 12)
    expected = frame.copy()
    expected[5:12, 11:20] = patch
    assert np.array_equal(edit.apply(frame.copy()), expected)
    assert edit.changed is not None and edit.changed.sum() == 7 * 9 and edit.changed[1:, 1:].all()


def test_frames_without_a_face_are_the_source_frames_bit_for_bit(tmp_path, predictor):
    clip = shot_clip([ShotPlan(8, black=True), ShotPlan(30, fade_in=6), ShotPlan(12, face=None), ShotPlan(20, x=70)])
    info = prepare_avatar(write_video(tmp_path / "cuts.mp4", clip.frames, FPS), tmp_path / "cache")
    avatar = load_avatar(info.avatar_id, tmp_path / "cache")
    assert not avatar.face_found.all()
    frames = SourceFrames(avatar)
    renderer = MouthRenderer(avatar)
    for i in np.flatnonzero(~avatar.face_found):
        picture = Picture(frames, int(i), renderer.render_region(int(i), MouthShape(0.9)))
        assert picture.edit is None
        assert np.array_equal(picture.bgr(), avatar.frame_readonly(int(i)))   # the stored frame itself
        assert np.array_equal(picture.i420(), avatar.frame_i420(int(i)))
    assert any(renderer.render_region(int(i), MouthShape(0.9)) is not None for i in np.flatnonzero(avatar.face_found))


def test_source_frames_reach_the_encoder_as_stored_without_conversion(portrait):
    _, _, avatar, _ = portrait
    frames = SourceFrames(avatar)
    renderer = MouthRenderer(avatar)
    plain = Picture(frames, 3, None).i420()
    assert np.shares_memory(plain, avatar.frame_i420(3))          # the stored frame itself, no copy
    for shape in (MouthShape(0.2), MouthShape(0.6), MouthShape(0.0)):
        edit = renderer.render_region(3, shape)
        if edit is None:
            continue
        picture = Picture(frames, 3, edit)
        _, y0, _, y1 = picture.edit.box
        got = i420_planes(picture.i420(), 1920, 1080)[0]
        assert np.array_equal(got[:y0], plain[:y0])               # luma rows above and below the
        assert np.array_equal(got[y1:1920], plain[y1:1920])       # mouth: the stored ones
        assert not np.array_equal(got[y0:y1], plain[y0:y1])


def test_mp4_writer_takes_i420(tmp_path):
    yy, xx = np.mgrid[0:64, 0:96]
    image = np.stack([xx * 2, yy * 3, (xx + yy)], axis=2).astype(np.uint8)
    with Mp4Writer(tmp_path / "a.mp4", FPS, 96, 64, threads=1) as w:
        for _ in range(3):
            w.write_i420(bgr_to_i420(image))
        with pytest.raises(Mp4WriteError):
            w.write_i420(image)
    with av.open(str(tmp_path / "a.mp4")) as c:
        decoded = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert len(decoded) == 3 and np.abs(decoded[0].astype(int) - image).mean() < 4


def test_full_hd_files_get_the_faster_x264_settings(tmp_path):
    """Above 720p the writer's default is ultrafast with CABAC and deblocking back on (what
    keeps a 1080p render at twice real time); smaller files keep superfast."""
    def options(width: int, height: int) -> bytes:
        path = tmp_path / f"{width}x{height}.mp4"
        with Mp4Writer(path, FPS, width, height, threads=1, audio=False) as w:
            w.write_i420(np.full((height * 3 // 2, width), 128, np.uint8))
        data = path.read_bytes()
        return data[data.index(b"x264 - core"):][:2000]
    hd, small = options(1080, 1920), options(512, 512)
    assert b"subme=0" in hd and b"cabac=1" in hd and b"deblock=1" in hd
    assert b"subme=1" in small and b"cabac=1" in small
