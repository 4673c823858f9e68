"""Avatar preparation on real media: encoded videos and photos with known geometry."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.avatar.avatar import (
    Avatar,
    AvatarError,
    AvatarNotFoundError,
    default_avatar,
    list_avatars,
    load_avatar,
    prepare_avatar,
)
from models.avatar.face_landmarks import LIP_INDICES, eye_openness, find_faces
from testing.avatar_media import (
    astronaut_bgr,
    canvas_with_face,
    default_route,
    moving_face_video,
    write_video,
)

W, H, SIDE, SECONDS, SRC_FPS = 640, 480, 400, 2.0, 30.0
ROUTE = default_route(W, H, SIDE, SECONDS)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("avatars")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def moving_video(media) -> Path:
    return moving_face_video(media / "moving.mp4", seconds=SECONDS, fps=SRC_FPS, width=W, height=H,
                             face_side=SIDE, route=ROUTE)


@pytest.fixture(scope="module")
def prepared(moving_video, cache_root):
    calls: list[float] = []
    t0 = time.perf_counter()
    info = prepare_avatar(moving_video, cache_root, name="Mover", progress=calls.append)
    return info, time.perf_counter() - t0, calls


@pytest.fixture(scope="module")
def mover(prepared, cache_root) -> Avatar:
    return load_avatar(prepared[0].avatar_id, cache_root)


@pytest.fixture(scope="module")
def astronaut_reference() -> np.ndarray:
    """The photo's own landmarks at the size the test videos use."""
    return find_faces(astronaut_bgr(SIDE))[0]


@pytest.fixture(scope="module")
def photo_avatar(cache_root) -> Avatar:
    return default_avatar(cache_root)


def _shown_source_time(k: int, fps: float = 25.0) -> float:
    """Time of the 30 fps source frame on screen at output frame k."""
    return np.floor(k / fps * SRC_FPS + 1e-6) / SRC_FPS


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))


# ---------------------------------------------------------------------------------------
# Video avatars


def test_video_is_resampled_to_output_fps_and_cached(prepared, moving_video, cache_root):
    info, first_s, _ = prepared
    assert info.kind == "video" and info.fps == 25.0 and info.n_frames == 50   # 30 fps x 2 s -> 50
    assert (info.width, info.height) == (W, H) and info.name == "Mover" and info.source == "moving.mp4"
    assert len(info.avatar_id) == 16 and int(info.avatar_id, 16) >= 0
    assert info.warnings == ()
    t0 = time.perf_counter()
    again = prepare_avatar(moving_video, cache_root)
    again_s = time.perf_counter() - t0
    assert again.avatar_id == info.avatar_id and again_s < min(0.5, first_s / 3)
    assert info.avatar_id in {a.avatar_id for a in list_avatars(cache_root)}
    other = prepare_avatar(moving_video, cache_root, fps=20.0)
    assert other.avatar_id != info.avatar_id and other.n_frames == 40


def test_progress_is_monotonic_and_finishes(prepared):
    calls = prepared[2]
    assert len(calls) >= 10 and calls[-1] == 1.0
    assert all(b >= a for a, b in zip(calls, calls[1:])) and 0 <= calls[0] < 0.2


def test_each_output_frame_is_the_source_frame_on_screen(mover):
    for k in (0, 1, 4, 5, 17, 33, 49):
        t = _shown_source_time(k)
        frame = mover.frame(k)
        assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
        right = _mse(frame, canvas_with_face(W, H, SIDE, *ROUTE(t)))
        for wrong_t in (t - 1 / SRC_FPS, t + 1 / SRC_FPS):
            if 0 <= wrong_t < SECONDS:
                assert right < 0.5 * _mse(frame, canvas_with_face(W, H, SIDE, *ROUTE(wrong_t))), (k, wrong_t)
        assert right < 25.0   # ~34 dB through H.264 + JPEG


def test_landmarks_follow_the_moving_face(mover, astronaut_reference):
    errors = []
    for k in range(mover.info.n_frames):
        expected = astronaut_reference + np.array(ROUTE(_shown_source_time(k)), np.float32)
        errors.append(np.linalg.norm(mover.landmarks[k] - expected, axis=1)[list(LIP_INDICES)])
    errors = np.array(errors)
    assert np.median(errors) < 1.5 and np.percentile(errors, 95) < 3.0
    assert mover.face_found.all()


def test_face_data_shapes_smoothness_and_ping_pong_loop(mover, astronaut_reference):
    n = mover.info.n_frames
    assert mover.landmarks.shape == (n, 468, 2) and mover.face_boxes.shape == (n, 4)
    assert mover.mouth_features.shape == (n, 3) and mover.face_sizes.shape == (n,)
    assert (mover.face_boxes[:, 2] > mover.face_boxes[:, 0]).all()
    # The face moves smoothly, so the smoothed box should have almost no frame-to-frame jerk.
    jerk = np.abs(np.diff(mover.face_boxes[:, 0], n=2))
    assert jerk.max() < 1.5
    # Same person, same (still) mouth: measurements steady and equal to the photo's own.
    from models.avatar.face_landmarks import mouth_features
    ref = np.array(mouth_features(astronaut_reference))
    assert np.abs(mover.mouth_features - ref).max() < 0.08
    assert mover.loop_order.tolist() == list(range(n)) + list(range(n - 2, 0, -1))
    assert mover.loop_frame(n) == n - 2 and mover.loop_frame(len(mover.loop_order)) == 0


def test_avatar_pickles_for_process_pools(mover):
    clone = pickle.loads(pickle.dumps(mover))
    assert np.array_equal(clone.frame(7), mover.frame(7))
    frame = mover.frame(3)
    frame[:] = 0   # callers may draw on the frame they get
    assert mover.frame(3).any()


def test_variable_frame_rate_is_resampled_by_timestamp(media, cache_root):
    """Irregular timestamps (20/60 ms) and a source larger than max_side (downscaled)."""
    gaps = [0.02, 0.06] * 20
    stamps = np.concatenate([[0.0], np.cumsum(gaps)])[:len(gaps)]
    frames = [canvas_with_face(480, 360, 280, 40 + 6 * j, 30) for j in range(len(stamps))]
    src = write_video(media / "vfr.mp4", frames, 25, timestamps=stamps.tolist())
    info = prepare_avatar(src, cache_root, max_side=320)
    assert (info.width, info.height) == (320, 240)
    duration = stamps[-1] + 0.04          # last frame lasts the median gap
    assert info.n_frames == int(np.ceil(duration * 25 - 1e-3))
    avatar = load_avatar(info.avatar_id, cache_root)
    small = [cv2.resize(f, (320, 240), interpolation=cv2.INTER_AREA) for f in frames]
    for k in range(0, info.n_frames, 3):
        expected = int(np.searchsorted(stamps, k / 25 + 1e-3, side="right") - 1)
        got = int(np.argmin([_mse(avatar.frame(k), f) for f in small]))
        assert got == expected, k


def test_phone_rotation_tag_is_applied(media, cache_root):
    upright = canvas_with_face(360, 480, 300, 30, 60)
    stored = cv2.rotate(upright, cv2.ROTATE_90_CLOCKWISE)   # sensor-landscape, as phones store it
    info = prepare_avatar(write_video(media / "phone.mp4", [stored] * 15, 25, display_rotation=90), cache_root)
    assert (info.width, info.height) == (360, 480)
    avatar = load_avatar(info.avatar_id, cache_root)
    assert _mse(avatar.frame(0), upright) < 25.0
    lm = avatar.landmarks[0]
    assert lm[13, 1] > lm[33, 1] + 20 and lm[263, 0] > lm[33, 0] + 20   # mouth below eyes, upright


def test_short_gap_without_face_is_filled_with_a_warning(media, cache_root):
    fps, n = 25, 60
    hidden = range(25, 33)   # 1.00-1.32 s: the face leaves the picture
    frames = [canvas_with_face(320, 240, 240, 40 + i, 0 if i not in hidden else 1000) for i in range(n)]
    info = prepare_avatar(write_video(media / "gap.mp4", frames, fps), cache_root)
    gap_warnings = [w for w in info.warnings if "no face" in w]
    assert len(gap_warnings) == 1 and "8 frame" in gap_warnings[0] and "1.00-1.32 s" in gap_warnings[0]
    avatar = load_avatar(info.avatar_id, cache_root)
    assert avatar.face_found.tolist() == [i not in hidden for i in range(n)]
    # The face vanishes at once: that is a cut to an empty canvas and back.  The gap's
    # landmarks come from the shots around it (never rendered on: those frames pass through).
    assert (np.flatnonzero(np.diff(avatar.shot_ids)) + 1).tolist() == [25, 33]
    x = avatar.landmarks[:, 1, 0]
    assert np.isfinite(avatar.landmarks).all() and x[24] <= x[28] <= x[33]


def test_long_gap_without_face_is_an_error_naming_the_time(media, cache_root):
    frames = [canvas_with_face(320, 240, 240, 40, 0 if i < 20 or i >= 52 else 1000) for i in range(60)]
    with pytest.raises(AvatarError, match=r"32 of 60 frames.*0\.80-2\.08 s"):
        prepare_avatar(write_video(media / "longgap.mp4", frames, 25), cache_root)


def test_video_without_any_face(media, cache_root):
    frames = [canvas_with_face(320, 240, 64, -999, -999) for _ in range(30)]
    with pytest.raises(AvatarError, match="no face found in noface.mp4"):
        prepare_avatar(write_video(media / "noface.mp4", frames, 25), cache_root)
    assert not [p for p in cache_root.iterdir() if p.name.endswith(".tmp")]   # no debris left


def test_single_frame_video_becomes_a_photo_and_short_video_is_refused(media, cache_root):
    still = canvas_with_face(320, 320, 300, 10, 10)
    info = prepare_avatar(write_video(media / "still.mp4", [still], 25), cache_root, fps=10)
    assert info.kind == "photo" and info.n_frames == 84
    with pytest.raises(AvatarError, match="too short"):
        prepare_avatar(write_video(media / "blip.mp4", [still] * 5, 25), cache_root, fps=10)


def test_too_long_video_is_refused(moving_video, cache_root):
    with pytest.raises(AvatarError, match="at most 1 s"):
        prepare_avatar(moving_video, cache_root, max_seconds=1.0)


# ---------------------------------------------------------------------------------------
# Photo avatars


def test_default_avatar_is_a_photo_loop_built_once(photo_avatar, cache_root):
    info = photo_avatar.info
    assert info.avatar_id == "default" and info.kind == "photo" and info.fps == 25.0
    assert (info.width, info.height) == (512, 512) and info.n_frames == 210
    assert photo_avatar.loop_order.tolist() == list(range(210))   # periodic: cycles forward
    t0 = time.perf_counter()
    assert default_avatar(cache_root).info == info
    assert time.perf_counter() - t0 < 0.5


def test_default_avatar_is_rebuilt_for_another_fps(tmp_path):
    assert default_avatar(tmp_path, fps=2.5).info.n_frames == 21
    again = default_avatar(tmp_path, fps=5.0)
    assert again.info.fps == 5.0 and again.info.n_frames == 42 and len(again.loop_order) == 42
    assert [p.name for p in tmp_path.iterdir()] == ["default"]


def test_photo_loop_blinks(photo_avatar):
    eyes = eye_openness(photo_avatar.landmarks)
    open_level = np.median(eyes)
    closed = eyes < 0.5 * open_level
    blinks = np.flatnonzero(np.diff(closed.astype(int)) == 1)
    assert len(blinks) == 2 and 2.5 < np.diff(blinks / 25.0)[0] < 5.0
    # Each blink is short (~150 ms around the closed point), and it shows in the pixels.
    assert closed.sum() <= 2 * 4
    k = int(np.argmin(eyes))
    lm = photo_avatar.landmarks[k]
    x0, y0 = (lm[[33, 133, 159, 145]].min(0) - 2).astype(int)
    x1, y1 = (lm[[33, 133, 159, 145]].max(0) + 2).astype(int)
    shut, opened = photo_avatar.frame(k)[y0:y1, x0:x1], photo_avatar.frame(0)[y0:y1, x0:x1]
    assert np.abs(shut.astype(int) - opened.astype(int)).mean() > 12
    # FaceMesh itself, run afresh on the pixels, sees the eyes closing.
    assert eye_openness(find_faces(photo_avatar.frame(k))[0])[0] < 0.75 * eye_openness(
        find_faces(photo_avatar.frame(0))[0])[0]


def test_photo_loop_sways_but_the_mouth_stays_still(photo_avatar):
    lm = photo_avatar.landmarks
    nose = lm[:, 1]
    assert 1.5 < np.ptp(nose[:, 0]) < 12 and 0.5 < np.ptp(nose[:, 1]) < 12
    assert np.abs(np.diff(nose, axis=0)).max() < 1.0          # smooth, sub-pixel per frame
    assert photo_avatar.mouth_features.std(axis=0).max() < 0.005
    # Undo each frame's head motion (fitted on the lips) and compare the mouth pixels.
    lips = list(LIP_INDICES)
    ref = photo_avatar.frame(0)
    x0, y0 = (lm[0, lips].min(0) - 4).astype(int)
    x1, y1 = (lm[0, lips].max(0) + 4).astype(int)
    for k in range(10, 210, 20):
        m, _ = cv2.estimateAffinePartial2D(lm[k, lips], lm[0, lips])
        back = cv2.warpAffine(photo_avatar.frame(k), m, (512, 512), flags=cv2.INTER_LINEAR)
        diff = np.abs(back[y0:y1, x0:x1].astype(int) - ref[y0:y1, x0:x1].astype(int)).mean()
        assert diff < 6.0, (k, diff)


def test_photo_landmarks_match_a_fresh_detection(photo_avatar):
    nose_x = photo_avatar.landmarks[:, 1, 0]
    k = int(np.argmax(np.abs(nose_x - nose_x[0])))
    detected = find_faces(photo_avatar.frame(k))[0]
    err = np.linalg.norm(detected - photo_avatar.landmarks[k], axis=1)
    assert np.median(err) < 1.5


def test_photo_loop_is_seamless(photo_avatar):
    step = [_mse(photo_avatar.frame(k), photo_avatar.frame(k + 1)) for k in range(100, 110)]
    wrap = _mse(photo_avatar.frame(209), photo_avatar.frame(0))
    assert wrap < 2 * max(step) + 1.0


def test_two_face_photo_uses_the_largest_with_a_warning(media, cache_root):
    canvas = np.zeros((512, 1024, 3), np.uint8)
    canvas[128:384, 64:320] = astronaut_bgr(256)
    canvas[:, 512:] = astronaut_bgr()
    path = media / "two.png"
    cv2.imwrite(str(path), canvas)
    info = prepare_avatar(path, cache_root, fps=10)
    assert info.kind == "photo" and any("2 faces" in w and "largest" in w for w in info.warnings)
    avatar = load_avatar(info.avatar_id, cache_root)
    assert avatar.landmarks[0, :, 0].min() > 512


def test_two_face_video_tracks_the_largest_with_a_warning(media, cache_root):
    small = astronaut_bgr(200)
    frames = []
    for i in range(25):
        canvas = canvas_with_face(720, 400, 360, 340 + i, 20)
        canvas[150:350, 40:240] = small
        frames.append(canvas)
    info = prepare_avatar(write_video(media / "two.mp4", frames, 25), cache_root)
    assert any("2 faces" in w and "largest" in w for w in info.warnings)
    assert load_avatar(info.avatar_id, cache_root).landmarks[:, :, 0].min() > 340


# ---------------------------------------------------------------------------------------
# Bad input


def test_bad_files_give_readable_errors(media, cache_root, moving_video):
    rng = np.random.default_rng(3)
    (media / "junk.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + rng.bytes(4000))
    (media / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0" + rng.bytes(4000))
    (media / "notes.txt").write_text("hello")
    (media / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic" + rng.bytes(100))
    (media / "empty.mp4").write_bytes(b"")
    (media / "tiny.png").write_bytes(cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))[1].tobytes())
    cases = {
        "junk.mp4": "not a readable video|cannot be decoded|no decodable",
        "junk.jpg": "not a readable image",
        "notes.txt": "unsupported file type",
        "IMG_0001.HEIC": "HEIC/AVIF photos are not supported",
        "empty.mp4": "is empty",
        "tiny.png": "too small",
        "missing.mp4": "does not exist",
    }
    for name, message in cases.items():
        with pytest.raises(AvatarError, match=message):
            prepare_avatar(media / name, cache_root)
    truncated = media / "truncated.mp4"
    truncated.write_bytes(moving_video.read_bytes()[: moving_video.stat().st_size // 2])
    try:   # a cut file either yields what decodes or a clear error, never a crash
        info = prepare_avatar(truncated, cache_root)
        assert info.n_frames >= 1
    except AvatarError:
        pass
    with pytest.raises(AvatarError, match="fps"):
        prepare_avatar(moving_video, cache_root, fps=0)


@pytest.mark.parametrize("bad_id", ["../x", "..", "/etc", "0123456789abcdeg", "DEFAULT", "", "a" * 200])
def test_invalid_ids_are_rejected(cache_root, bad_id):
    with pytest.raises(AvatarNotFoundError, match="invalid avatar id"):
        load_avatar(bad_id, cache_root)


def test_unknown_id_is_not_found(tmp_path):
    with pytest.raises(AvatarNotFoundError, match="no prepared avatar"):
        load_avatar("0123456789abcdef", tmp_path)
    assert list_avatars(tmp_path / "nowhere") == []


def test_facemesh_measures_every_other_frame_after_warm_up_and_the_rest_are_interpolated(
        media, cache_root, monkeypatch):
    import models.avatar.avatar as avatar_mod
    from models.avatar.face_landmarks import FaceTracker

    calls = []
    real_track = FaceTracker.track
    monkeypatch.setattr(FaceTracker, "track", lambda self, image: calls.append(1) or real_track(self, image))
    n = 40
    frames = [canvas_with_face(320, 240, 200, 40 + 1.5 * i, 10 + 0.5 * i) for i in range(n)]
    info = prepare_avatar(write_video(media / "stride.mp4", frames, 25), cache_root)
    avatar = load_avatar(info.avatar_id, cache_root)
    warm = avatar_mod.MESH_WARMUP
    assert len(calls) == warm + (n - warm + 1) // avatar_mod.MESH_EVERY
    assert avatar.face_found.all() and not [w for w in info.warnings if "no face" in w]
    # An interpolated frame sits between its measured neighbours (the face moves steadily).
    k = warm + 1
    mid = 0.5 * (avatar.landmarks[k - 1] + avatar.landmarks[k + 1])
    assert np.abs(avatar.landmarks[k] - mid).max() < 1.0


def test_batch_avatars_skip_the_raw_frame_copy_until_a_live_session_opens_them(media, cache_root):
    from models.avatar.frame_store import RAW_FILE

    frames = [canvas_with_face(320, 240, 200, 40 + i, 10) for i in range(30)]
    source = write_video(media / "batch_only.mp4", frames, 25)
    info = prepare_avatar(source, cache_root, raw_frames=False)
    folder = cache_root / info.avatar_id
    assert not (folder / RAW_FILE).exists()
    batch = load_avatar(info.avatar_id, cache_root, raw_frames=False)
    first = batch.frame(0)
    assert not (folder / RAW_FILE).exists() and not batch._frames.is_raw
    live = load_avatar(info.avatar_id, cache_root)      # a live session: looped for hours
    assert live._frames.is_raw and (folder / RAW_FILE).exists()
    assert np.array_equal(live.frame(0), first)


def test_a_fresh_batch_avatar_hands_its_decoded_frames_to_the_render(media, cache_root):
    from models.avatar.frame_store import RAW_FILE

    frames = [canvas_with_face(320, 240, 200, 40 + i, 12) for i in range(30)]
    source = write_video(media / "in_memory.mp4", frames, 25)
    kept: list[np.ndarray] = []
    info = prepare_avatar(source, cache_root, raw_frames=False, frames_out=kept)
    assert len(kept) == info.n_frames and not (cache_root / info.avatar_id / RAW_FILE).exists()
    avatar = load_avatar(info.avatar_id, cache_root, raw_frames=False)
    from_jpeg = avatar.frame(7)
    avatar.use_frames(kept)
    assert np.array_equal(avatar.frame_i420(7), kept[7])                  # kept as stored: I420
    assert np.abs(avatar.frame(7).astype(int) - from_jpeg).mean() < 3.0    # the same picture
    assert not np.array_equal(avatar.frame(7), from_jpeg)                  # not the JPEG's any more
    again: list[np.ndarray] = []
    prepare_avatar(source, cache_root, raw_frames=False, frames_out=again)  # a cache hit
    assert again == []                                                       # -> decode as usual
