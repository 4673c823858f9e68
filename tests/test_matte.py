"""Background keying of avatars (issue 9, ``?bg=green``): real MediaPipe selfie
segmentation on the built-in astronaut avatar and on small generated video avatars."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import models.avatar.matte as matte_module
from models.avatar.avatar import Avatar, default_avatar, load_avatar, prepare_avatar
from models.avatar.matte import (
    DIR_PREFIX,
    KEY_COLOURS,
    AvatarMatte,
    key_background,
    matte_key,
    parse_key_colour,
)
from models.mouth.mouth_shape import MouthShape
from testing.avatar_media import ShotPlan, canvas_with_face, shot_clip, write_video

GREEN = (0, 255, 0)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("matte_avatars")


@pytest.fixture(scope="module")
def astronaut(root: Path) -> Avatar:
    return default_avatar(root)


@pytest.fixture(scope="module")
def matte(astronaut: Avatar) -> AvatarMatte:
    return AvatarMatte.for_avatar(astronaut)


def _mattes_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(f"{DIR_PREFIX}*") if p.is_dir())


def _flicker(m: AvatarMatte) -> float:
    """Share of pixels whose alpha jumps by more than 32 between neighbouring frames."""
    a = np.stack([m.alpha(i).astype(np.int16) for i in range(len(m))])
    return float((np.abs(np.diff(a, axis=0)) > 32).mean())


# ---------------------------------------------------------------------------------------
# Key colours


def test_key_colour_names_and_hex() -> None:
    assert parse_key_colour("green") == (0, 255, 0)          # BGR of #00FF00, OBS's "Green"
    assert parse_key_colour(" Green ") == (0, 255, 0)
    assert parse_key_colour("blue") == (0xFF, 0x99, 0x00)    # OBS's "Blue", #0099FF
    assert parse_key_colour("MAGENTA") == (255, 0, 255)
    assert parse_key_colour("#1a2B3c") == (0x3C, 0x2B, 0x1A)
    assert parse_key_colour("1A2B3C") == (0x3C, 0x2B, 0x1A)
    assert set(KEY_COLOURS) == {"green", "blue", "magenta"}


@pytest.mark.parametrize("text", [
    "", "greenish", "red", "#12345", "#1234567", "#GGGGGG", "0x00FF00", "rgb(0,255,0)", "##00FF00",
    "#00FF00;", "00 FF 00", "\u0660\u0660FF00", "x" * 100_000,
])
def test_bad_key_colours_are_refused(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_key_colour(text)
    assert len(str(err.value)) < 120            # a hostile query string is not echoed whole


def test_key_colour_must_be_text() -> None:
    with pytest.raises(ValueError):
        parse_key_colour(None)  # type: ignore[arg-type]


def test_key_background_blends_exactly() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (64, 96, 3), np.uint8)
    alpha = np.zeros((64, 96), np.uint8)
    alpha[:, 32:64] = 128
    alpha[:, 64:] = 255
    before = image.copy()
    out = key_background(image, alpha, (10, 200, 30))
    assert np.array_equal(image, before)                  # the shared rendered frame is not touched
    assert (out[:, :32] == (10, 200, 30)).all()
    assert np.array_equal(out[:, 64:], image[:, 64:])
    mid = (image[:, 32:64].astype(np.float64) * 128 + np.float64([10, 200, 30]) * 127) / 255
    assert np.abs(out[:, 32:64] - mid).max() <= 1.0
    reused = np.zeros_like(image)
    assert key_background(image, alpha, (10, 200, 30), out=reused) is reused
    assert np.array_equal(reused, out)
    with pytest.raises(ValueError):
        key_background(image, alpha, GREEN, out=image)     # never in place over the shared frame
    with pytest.raises(ValueError):
        key_background(image, alpha[:, :50], GREEN)
    with pytest.raises(ValueError):
        key_background(image, alpha.astype(np.float32), GREEN)


# ---------------------------------------------------------------------------------------
# The astronaut


def test_background_far_from_the_person_becomes_the_key_colour(astronaut: Avatar, matte: AvatarMatte) -> None:
    assert len(matte) == len(astronaut)
    colour = parse_key_colour("green")
    for i in (0, len(astronaut) // 3, 2 * len(astronaut) // 3):
        keyed = matte.key_frame(astronaut.frame(i), i, colour)
        assert keyed.shape == (astronaut.info.height, astronaut.info.width, 3)
        is_key = (keyed == colour).all(axis=2)
        # The wall right of the shuttle and the flag's top corner are background.
        assert is_key[:120, 460:].mean() > 0.99
        assert is_key[:60, :50].mean() > 0.99
        # The person (suit, helmet, head) stays: about half the picture is keyed, not all.
        assert 0.25 < is_key.mean() < 0.6
        assert not is_key[300:, 150:300].any()     # the suit's chest


def test_face_and_rendered_mouth_are_never_keyed(astronaut: Avatar, matte: AvatarMatte) -> None:
    from models.render.mouth_renderer import MouthRenderer

    renderer = MouthRenderer(astronaut)
    colour = parse_key_colour("magenta")
    for i in (0, len(astronaut) // 2):
        source = astronaut.frame(i)
        alpha = matte.alpha(i)
        hull = np.zeros(alpha.shape, np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(astronaut.landmarks[i]).astype(np.int32), 1)
        assert alpha[hull > 0].min() == 255
        for shape in (MouthShape(openness=1.0), MouthShape(0.6, 1.0, 0.0), MouthShape(0.5, -1.0, 1.0)):
            rendered = renderer.render(i, shape)
            drawn = (np.abs(rendered.astype(np.int16) - source).max(axis=2) > 0)
            assert drawn.sum() > 200                     # the renderer did open the mouth
            keyed = key_background(rendered, alpha, colour)
            assert np.array_equal(keyed[drawn], rendered[drawn])
            assert np.array_equal(keyed[hull > 0], rendered[hull > 0])


def test_matte_edges_are_soft_not_aliased(matte: AvatarMatte) -> None:
    a = matte.alpha(0)
    person = (a >= 128).astype(np.uint8)
    contour = cv2.dilate(person, np.ones((3, 3), np.uint8)) != cv2.erode(person, np.ones((3, 3), np.uint8))
    assert contour.sum() > 1000                          # a real outline, not a blob of noise
    soft = (a[contour] > 0) & (a[contour] < 255)
    assert soft.mean() > 0.9
    # ... but narrow: the feather is a few pixels, not a haze over the picture.
    assert ((a > 0) & (a < 255)).mean() < 0.12


def test_matte_is_cached_and_survives_a_rename(astronaut: Avatar, matte: AvatarMatte) -> None:
    assert matte.computed and matte.stored
    assert _mattes_in(astronaut.directory) == [f"{DIR_PREFIX}{matte.key}"]
    again = AvatarMatte.for_avatar(astronaut)
    assert not again.computed and again.key == matte.key
    for i in (0, 17, len(astronaut) - 1):
        assert np.array_equal(again.alpha(i), matte.alpha(i))
    # A rename rewrites info.json (avatar_cache.update_info); the frames are the same.
    info_file = astronaut.directory / "info.json"
    info = json.loads(info_file.read_text())
    info_file.write_text(json.dumps({**info, "name": "宇航员"}))
    assert not AvatarMatte.for_avatar(astronaut).computed


def test_rebuilt_avatar_gets_a_new_matte(tmp_path: Path) -> None:
    # The default avatar keeps its id when rebuilt at another fps: same directory, new frames.
    first = default_avatar(tmp_path, fps=8)
    old = AvatarMatte.for_avatar(first)
    assert old.computed and len(old) == len(first)
    second = default_avatar(tmp_path, fps=10)
    assert second.directory == first.directory and len(second) != len(first)
    new = AvatarMatte.for_avatar(second)
    assert new.computed and new.key != old.key and len(new) == len(second)
    assert _mattes_in(second.directory) == [f"{DIR_PREFIX}{new.key}"]
    assert not AvatarMatte.for_avatar(second).computed
    # A session that opened the avatar before the rebuild still shows the old frames:
    # it gets their matte, and the new avatar's cache is left alone.
    held = AvatarMatte.for_avatar(first)
    assert held.computed and not held.stored and held.key != new.key and len(held) == len(first)
    assert np.array_equal(held.alpha(3), old.alpha(3))
    assert _mattes_in(second.directory) == [f"{DIR_PREFIX}{new.key}"]


# ---------------------------------------------------------------------------------------
# Video avatars


@pytest.fixture(scope="module")
def still_video(root: Path) -> Avatar:
    """A person sitting still, filmed by a noisy camera: every pixel changes every frame."""
    rng = np.random.default_rng(1)
    base = canvas_with_face(320, 240, 200, 60, 20).astype(np.int16)
    frames = [np.clip(base + rng.normal(0, 8, base.shape).round().astype(np.int16), 0, 255).astype(np.uint8)
              for _ in range(30)]
    info = prepare_avatar(write_video(root / "still.mp4", frames, 25), root)
    return load_avatar(info.avatar_id, root)


def test_video_matte_does_not_flicker(still_video: Avatar, monkeypatch: pytest.MonkeyPatch) -> None:
    smooth = AvatarMatte.for_avatar(still_video)
    assert smooth.computed and len(smooth) == 30
    steady = _flicker(smooth)
    # The same matte with the temporal filter off: what each frame's segmentation says alone.
    monkeypatch.setattr(matte_module, "TIME_WEIGHTS", (1.0,))
    assert matte_key(still_video) != smooth.key
    raw = AvatarMatte.for_avatar(still_video)
    assert raw.computed
    assert steady < 0.5 * _flicker(raw)
    assert steady < 0.005


def test_damaged_matte_is_computed_again(still_video: Avatar) -> None:
    first = AvatarMatte.for_avatar(still_video)
    assert first.directory is not None
    expected = first.alpha(5).copy()
    data = first.directory / "alpha.bin"
    cut_short = data.read_bytes()[:-10]
    data.unlink()                                        # a new file: `first` keeps its mapping
    data.write_bytes(cut_short)
    again = AvatarMatte.for_avatar(still_video)
    assert again.computed and again.stored               # the damaged copy was replaced
    assert np.array_equal(again.alpha(5), expected)
    assert not AvatarMatte.for_avatar(still_video).computed
    assert [p.name for p in still_video.directory.iterdir() if ".tmp" in p.name or ".old" in p.name] == []


def test_matte_does_not_leak_across_a_cut(root: Path) -> None:
    clip = shot_clip([ShotPlan(frames=20, dx=0.5), ShotPlan(frames=10, face=None)])
    info = prepare_avatar(write_video(root / "cut.mp4", clip.frames, 25), root)
    avatar = load_avatar(info.avatar_id, root)
    assert info.shots == 2
    cut = clip.cuts[0]
    m = AvatarMatte.for_avatar(avatar)
    assert (m.alpha(cut - 1) == 255).mean() > 0.2       # the person, to the last frame of the shot
    # The empty room right after the cut: nothing of the person's outline carried over
    # (averaging across the cut would leave a faint ghost, alpha ~30, of the person).
    assert int(m.alpha(cut).max()) <= 8
    assert int(m.alpha(len(avatar) - 1).max()) <= 8


# ---------------------------------------------------------------------------------------
# The engine says which source frame each output frame shows


def test_rendered_frames_carry_their_source_index(astronaut: Avatar, matte: AvatarMatte) -> None:
    import torch

    from live.engine.session import LipSyncSession
    from models.mouth.mouth_model import MouthPredictor

    torch.set_num_threads(1)
    session = LipSyncSession(astronaut, MouthPredictor.load())
    seen = []
    for i in range(len(astronaut) + 5):                  # past the end of the loop: it wraps
        frame = session.next_frame(pad_silence=True)
        assert frame is not None
        assert frame.source_index == session.compositor.source_index(i) == astronaut.loop_frame(i)
        seen.append(frame.source_index)
    assert len(set(seen)) == len(astronaut)
    # A repeated picture (a consumer catching up) keeps the source of what it repeats.
    last = frame
    repeat = session.next_frame(pad_silence=True, draw=False)
    assert repeat is not None and repeat.image is last.image and repeat.source_index == last.source_index
    keyed = matte.key_frame(repeat.image, repeat.source_index, GREEN)
    assert (keyed == GREEN).all(axis=2)[:120, 460:].mean() > 0.99
