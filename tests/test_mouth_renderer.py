"""The photoreal mouth renderer, checked on real avatars with a real face model.

Photo path: the default astronaut avatar.  Video path: a video of the astronaut
talking (mouth moved by the photo path, then encoded and prepared with
``prepare_avatar`` like any user video), so its mouth library holds real variety.
Openness is *measured* on the rendered pictures with mediapipe FaceMesh.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.render import talking_video
from models.avatar import Avatar, default_avatar, load_avatar, prepare_avatar
from models.face_landmarks import find_faces, mouth_features
from models.mouth_geometry import lower_face_outline, mouth_frame
from models.mouth_library import OPEN_SLACK, MouthLibrary
from models.mouth_renderer import MouthRenderer, RenderError
from models.mouth_shape import CLOSED, MouthShape
from models.photo_mouth import plan_for


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("renderer_cache")


@pytest.fixture(scope="module")
def photo(cache) -> Avatar:
    return default_avatar(cache)


@pytest.fixture(scope="module")
def video(cache, tmp_path_factory) -> Avatar:
    src = talking_video(tmp_path_factory.mktemp("talk") / "talk.mp4", cache, seconds=3.0)
    info = prepare_avatar(src, cache)
    assert info.kind == "video"
    return load_avatar(info.avatar_id, cache)


def measured(image: np.ndarray) -> tuple[float, float, float]:
    faces = find_faces(image)
    assert faces, "FaceMesh lost the face in a rendered frame"
    return mouth_features(faces[0])


def corner_distance(image: np.ndarray) -> float:
    lm = find_faces(image)[0]
    return float(np.linalg.norm(lm[61] - lm[291]) / np.linalg.norm(lm[33] - lm[263]))


def far_from_mouth(avatar: Avatar, i: int, radius: float) -> np.ndarray:
    """Pixels farther than ``radius`` eye-distances from the mouth centre."""
    f = mouth_frame(avatar.landmarks[i])
    h, w = avatar.info.height, avatar.info.width
    ys, xs = np.mgrid[0:h, 0:w]
    return np.hypot(xs - f.origin[0], ys - f.origin[1]) > radius * f.s


def gradient(image: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))


# ----------------------------------------------------------------------------- photo


def test_closed_mouth_is_exactly_the_avatar_frame(photo):
    r = MouthRenderer(photo)
    for i in (0, 57, 133):
        out = r.render(i, CLOSED)
        assert out.shape == (photo.info.height, photo.info.width, 3) and out.dtype == np.uint8
        assert np.array_equal(out, photo.frame(i))
    # Width/rounding without any opening leave the lips together too (silence stays still).
    assert np.array_equal(r.render(5, MouthShape(0.0, 0.7, 0.3)), photo.frame(5))


def test_opening_is_measured_by_facemesh_on_the_render(photo):
    r = MouthRenderer(photo)
    levels = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    got = [measured(r.render(10, MouthShape(openness=o)))[0] for o in levels]
    assert all(b >= a - 0.02 for a, b in zip(got, got[1:])), got
    assert got[4] - got[0] >= 0.25, got          # clearly opens (the photo already parts its lips)
    assert got[4] >= 0.5, got


def test_width_and_rounding_move_the_corners(photo):
    r = MouthRenderer(photo)
    spread = corner_distance(r.render(0, MouthShape(0.5, 1.0, 0.0)))
    neutral = corner_distance(r.render(0, MouthShape(0.5, 0.0, 0.0)))
    rounded = corner_distance(r.render(0, MouthShape(0.5, -0.5, 1.0)))
    assert spread > neutral + 0.02 > rounded + 0.06, (spread, neutral, rounded)


def test_only_the_mouth_region_changes(photo):
    r = MouthRenderer(photo)
    out = r.render(20, MouthShape(1.0, 0.5, 0.0))
    src = photo.frame(20)
    far = far_from_mouth(photo, 20, 1.1)
    assert np.array_equal(out[far], src[far])
    assert np.abs(out.astype(int) - src).sum() > 0


def test_photo_warp_fades_out_before_its_region_ends(photo):
    """The warp is one continuous field that is zero on the border of the region it
    works on, so the edit cannot have a seam: the border band is bit-identical and
    the change grows gradually inwards."""
    r = MouthRenderer(photo)
    plan = plan_for(photo.landmarks[30], (photo.info.height, photo.info.width))
    x0, y0, x1, y1 = plan.box
    for shape in (MouthShape(1.0), MouthShape(0.6, -0.6, 1.0), MouthShape(0.7, 1.0, 0.0)):
        diff = np.abs(r.render(30, shape).astype(np.int16) - photo.frame(30)).max(axis=2)[y0:y1, x0:x1]
        band = np.ones(diff.shape, bool)
        band[3:-3, 3:-3] = False
        assert diff[band].max() == 0
        assert diff[6:-6, 6:-6].max() > 60          # ... while the mouth did change a lot


def _seam_ratio(out: np.ndarray, src: np.ndarray) -> float:
    """Gradient along the edge of the changed region, output vs. source."""
    changed = (np.abs(out.astype(np.int16) - src).max(axis=2) > 2).astype(np.uint8)
    assert changed.any()
    changed = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    k = np.ones((5, 5), np.uint8)
    ring = (cv2.dilate(changed, k) > 0) & ~(cv2.erode(changed, k) > 0)
    g_out, g_src = gradient(out)[ring].mean(), gradient(src)[ring].mean()
    return float(g_out / max(g_src, 1.0))


def test_repeatable_and_smooth_over_a_ramp(photo):
    r = MouthRenderer(photo)
    a = r.render(3, MouthShape(0.55, 0.2, 0.1))
    b = r.render(3, MouthShape(0.55, 0.2, 0.1))
    r.reset()
    c = r.render(3, MouthShape(0.55, 0.2, 0.1))
    assert np.array_equal(a, b) and np.array_equal(a, c)
    frames = [r.render(3, MouthShape(o)).astype(np.int16) for o in np.linspace(0, 1, 41)]
    steps = [np.abs(b - a).mean() for a, b in zip(frames, frames[1:])]
    total = np.abs(frames[-1] - frames[0]).mean()
    assert max(steps) < 0.12 * total, (max(steps), total)


def test_bad_requests_raise_a_clear_error(photo):
    r = MouthRenderer(photo)
    with pytest.raises(RenderError, match="out of range"):
        r.render(photo.info.n_frames, CLOSED)
    with pytest.raises(RenderError, match="MouthShape"):
        r.render(0, (0.5, 0.0, 0.0))
    with pytest.raises(RenderError, match="non-finite"):
        r.render(0, MouthShape(openness=float("nan")))


# ----------------------------------------------------------------------------- video


def test_video_library_shows_real_mouths_open_and_closed(video):
    feats = video.mouth_features
    library = MouthLibrary(feats, video.landmarks)
    i = int(np.argmax(feats[:, 0]))           # a frame with the mouth wide open
    r = MouthRenderer(video)
    closed = measured(r.render(i, CLOSED))[0]
    assert closed <= feats[:, 0].min() + 0.12, (closed, feats[:, 0].min())
    j = int(np.argmin(feats[:, 0]))           # a frame with the mouth (nearly) shut
    r.reset()
    opened = measured(r.render(j, MouthShape(openness=float(library.target_for(i)[0]))))[0]
    assert opened >= feats[:, 0].max() - 0.15, (opened, feats[:, 0].max())
    # Beyond anything in the video: the closest real mouth is warped further open.
    assert library.measured_openness(1.0) > feats[:, 0].max() + OPEN_SLACK
    r.reset()
    wider = measured(r.render(j, MouthShape(openness=1.0)))[0]
    assert wider > opened + 0.03, (wider, opened)


def test_video_blend_has_no_seam_and_keeps_the_rest(video):
    feats = video.mouth_features
    i = int(np.argmax(feats[:, 0]))
    r = MouthRenderer(video)
    out, src = r.render(i, CLOSED), video.frame(i)
    assert not np.array_equal(out, src)
    assert _seam_ratio(out, src) < 1.2      # a hard paste of the same patch measures ~1.35
    far = far_from_mouth(video, i, 1.6)
    assert np.array_equal(out[far], src[far])


def test_video_frame_whose_mouth_matches_is_passed_through(video):
    r = MouthRenderer(video)
    for i in (17, int(np.argmax(video.mouth_features[:, 0]))):
        o, w, rr = (float(x) for x in MouthLibrary(video.mouth_features, video.landmarks).target_for(i))
        assert np.array_equal(r.render(i, MouthShape(o, w, rr)), video.frame(i))


def test_video_playback_is_temporally_stable(video):
    r = MouthRenderer(video)
    n = video.info.n_frames
    ramp = np.clip(np.sin(np.linspace(0, np.pi, 40)) * 0.7, 0, 1)
    prev, diffs = None, []
    for k, o in enumerate(ramp):
        i = video.loop_frame(k)
        out = r.render(i, MouthShape(float(o)))
        src = video.frame(i)
        # What changes from frame to frame beyond the avatar's own motion.
        delta = out.astype(np.int16) - src
        if prev is not None:
            diffs.append(np.abs(delta - prev).mean())
        prev = delta
    assert n > 40 and max(diffs) < 3.0, diffs
    r.reset()
    i = video.loop_frame(5)
    assert np.array_equal(r.render(i, MouthShape(0.4)), r.render(i, MouthShape(0.4)))


def test_blend_outline_covers_lips_corners_and_chin(video):
    lm = video.landmarks[0]
    outline = lower_face_outline(lm).astype(np.float32)
    for k in (61, 291, 13, 14, 0, 17, 152, 148, 377):
        assert cv2.pointPolygonTest(outline, (float(lm[k][0]), float(lm[k][1])), False) > 0, k
    for k in (1, 33, 263, 168):     # nose tip, eyes, bridge: outside
        assert cv2.pointPolygonTest(outline, (float(lm[k][0]), float(lm[k][1])), False) < 0, k
