"""The photoreal mouth renderer, checked on real avatars with a real face model.

Photo path: the default astronaut avatar (a smile with parted lips and visible
teeth: openness ~0.32 at rest).  Video path: a video of the astronaut talking
(mouth moved by the photo path, then encoded and prepared with ``prepare_avatar``
like any user video), so its mouth library holds real variety; and a second one
whose lips never meet, so closing them needs the closing warp.  Openness is
*measured* on the rendered pictures with mediapipe FaceMesh, and "lips together"
uses the sync report's threshold.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.render import talking_video, write_video
from bench.sync_report import CLOSED_BELOW, measure_openness
from models.avatar.avatar import Avatar, default_avatar, load_avatar, prepare_avatar
from models.avatar.face_landmarks import find_faces, mouth_features
from models.mouth.mouth_shape import CLOSED, MouthShape
from models.render.mouth_geometry import LOWER_INNER, UPPER_INNER, lower_face_outline, mouth_frame
from models.render.mouth_library import OPEN_SLACK, MouthLibrary
from models.render.mouth_renderer import MouthRenderer, RenderError, openness_to_show
from models.render.photo_mouth import plan_for


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("renderer_cache")


@pytest.fixture(scope="module")
def photo(cache) -> Avatar:
    return default_avatar(cache)


@pytest.fixture(scope="module")
def video(cache, tmp_path_factory) -> Avatar:
    # A moderate speaker: the widest openings need the warp on top of the widest real mouth.
    src = talking_video(tmp_path_factory.mktemp("talk") / "talk.mp4", cache, seconds=3.0, max_openness=0.45)
    info = prepare_avatar(src, cache)
    assert info.kind == "video"
    return load_avatar(info.avatar_id, cache)


@pytest.fixture(scope="module")
def parted(cache, tmp_path_factory) -> Avatar:
    """A person who speaks but never closes the lips (openness never below 0.4)."""
    src = talking_video(tmp_path_factory.mktemp("parted") / "parted.mp4", cache, seconds=2.4,
                        seed=3, min_openness=0.4)
    return load_avatar(prepare_avatar(src, cache).avatar_id, cache)


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


def teeth_pixels(image: np.ndarray, landmarks: np.ndarray) -> int:
    """Teeth-white pixels inside the *source's* inner-lip outline.

    On this face skin is as bright as teeth and lips carry whitish highlights; teeth
    are the bright pixels that are neither red (LAB a) nor yellow (LAB b)."""
    poly = np.concatenate([landmarks[list(UPPER_INNER)], landmarks[list(LOWER_INNER)][::-1]])
    inside = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(poly).astype(np.int32)], 1)
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB).astype(np.int16)
    white = (lab[..., 0] > 190) & (lab[..., 1] < 137) & (lab[..., 2] < 140)
    return int(white[inside.astype(bool)].sum())


def gradient(image: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))


# ----------------------------------------------------------------------------- photo


def test_own_openness_is_exactly_the_avatar_frame(photo):
    r = MouthRenderer(photo)
    for i in (0, 57, 133):
        rest = float(photo.mouth_features[i, 0])
        assert rest > 0.25          # the astronaut smiles with parted lips
        out = r.render(i, MouthShape(rest))
        assert out.shape == (photo.info.height, photo.info.width, 3) and out.dtype == np.uint8
        assert np.array_equal(out, photo.frame(i))


def test_lips_close_at_zero_and_openness_rises_monotonically(photo):
    """Absolute openness: 0 = lips together (measured < CLOSED_BELOW), through the
    photo's own parted lips, on to wide open, measured by FaceMesh on the render."""
    r = MouthRenderer(photo)
    i = 10
    rest = float(photo.mouth_features[i, 0])
    levels = [0.0, 0.15, 0.3, rest, 0.5, 0.7, 0.9]
    got = [measured(r.render(i, MouthShape(openness=o)))[0] for o in levels]
    assert got[0] < CLOSED_BELOW, got
    assert all(b > a for a, b in zip(got, got[1:])), got
    assert abs(got[3] - rest) < 0.03 and got[-1] > 0.6, got


def test_closed_lips_hide_the_teeth(photo):
    r = MouthRenderer(photo)
    for i in (0, 90):
        lm = photo.landmarks[i]
        shown = teeth_pixels(photo.frame(i), lm)
        assert shown > 40                       # the photo shows its upper teeth ...
        assert teeth_pixels(r.render(i, CLOSED), lm) <= 0.1 * shown   # ... the closed mouth does not
        # Closing is gradual: half way there still shows some of them.
        half = teeth_pixels(r.render(i, MouthShape(0.5 * float(photo.mouth_features[i, 0]))), lm)
        assert 0.1 * shown < half < shown


def test_silence_reads_as_closed_through_the_codec(photo, tmp_path):
    """The sync report's own measurement (H.264, FaceMesh tracking the whole frame)."""
    r = MouthRenderer(photo)
    frames = [r.render(photo.loop_frame(k), CLOSED) for k in range(0, 210, 6)]
    fps, openness = measure_openness(write_video(tmp_path / "silence.mp4", frames))
    assert not np.isnan(openness).any()
    assert (openness < CLOSED_BELOW).mean() >= 0.95, np.round(openness, 3)


def test_width_and_rounding_move_the_corners(photo):
    r = MouthRenderer(photo)
    spread = corner_distance(r.render(0, MouthShape(0.5, 1.0, 0.0)))
    neutral = corner_distance(r.render(0, MouthShape(0.5, 0.0, 0.0)))
    rounded = corner_distance(r.render(0, MouthShape(0.5, -0.5, 1.0)))
    assert spread > neutral + 0.02 > rounded + 0.06, (spread, neutral, rounded)
    # ... and on nearly closed lips too (a rounded /u/, /m/ before /u/).
    spread = corner_distance(r.render(0, MouthShape(0.05, 1.0, 0.0)))
    neutral = corner_distance(r.render(0, MouthShape(0.05, 0.0, 0.0)))
    rounded = corner_distance(r.render(0, MouthShape(0.05, -1.0, 1.0)))
    assert spread > neutral + 0.02 > rounded + 0.03, (spread, neutral, rounded)


def test_only_the_mouth_region_changes(photo):
    r = MouthRenderer(photo)
    out = r.render(20, MouthShape(1.0, 0.5, 0.0))
    src = photo.frame(20)
    far = far_from_mouth(photo, 20, 1.1)
    # The warp's field fades to nothing there; a sub-pixel tail of it may flip a level on
    # the 2×2 chroma steps of the I420-stored frame, at a handful of pixels.
    far_diff = np.abs(out[far].astype(int) - src[far])
    assert far_diff.max() <= 1 and (far_diff > 0).sum() <= 10
    assert np.array_equal(out[far_from_mouth(photo, 20, 1.6)], src[far_from_mouth(photo, 20, 1.6)])
    assert np.abs(out.astype(int) - src).sum() > 0


def test_photo_warp_fades_out_before_its_region_ends(photo):
    """The warp is one continuous field that is zero on the border of the region it
    works on, so the edit cannot have a seam: the border band is bit-identical and
    the change grows gradually inwards."""
    r = MouthRenderer(photo)
    plan = plan_for(photo.landmarks[30], (photo.info.height, photo.info.width))
    x0, y0, x1, y1 = plan.box
    for shape in (MouthShape(1.0), MouthShape(0.6, -0.6, 1.0), MouthShape(0.7, 1.0, 0.0), CLOSED,
                  MouthShape(0.05, -0.6, 1.0)):
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
    assert closed <= feats[:, 0].min() + 0.12 and closed < CLOSED_BELOW, (closed, feats[:, 0].min())
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


def test_video_whose_lips_never_meet_is_closed_by_the_warp(parted):
    feats = parted.mouth_features
    assert feats[:, 0].min() > CLOSED_BELOW + 0.1      # no real closed mouth to show
    library = MouthLibrary(feats, parted.landmarks)
    r = MouthRenderer(parted)
    for i in (int(np.argmin(feats[:, 0])), int(np.argmax(feats[:, 0])), 30):
        r.reset()
        lm = parted.landmarks[i]
        out = r.render(i, CLOSED)
        assert measured(out)[0] < CLOSED_BELOW
        assert teeth_pixels(out, lm) <= 0.1 * teeth_pixels(parted.frame(i), lm)
    # Real pixels wherever they will do: the frame's own openness is the frame itself,
    # and openness still rises from closed through it.
    i = int(np.argmin(feats[:, 0]))
    own = float(library.target_for(i)[0])
    r.reset()
    assert np.array_equal(r.render(i, MouthShape(own)), parted.frame(i))
    got = []
    for o in (0.0, 0.5 * own, own):
        r.reset()
        got.append(measured(r.render(i, MouthShape(o)))[0])
    assert got[0] < got[1] < got[2], got


def test_closing_a_library_mouth_has_no_jump():
    """The closing warp fades in as the wanted openness drops below the pick's own."""
    have = 0.4
    wanted = np.linspace(0.0, have + 0.99 * OPEN_SLACK, 481)
    shown = np.array([have if (s := openness_to_show(have, w)) is None else s for w in wanted])
    assert shown[0] == 0.0 and np.all(shown[wanted >= have] == have)
    assert np.allclose(shown[wanted < have - 0.03], wanted[wanted < have - 0.03])
    assert np.all(np.diff(shown) >= -1e-9)                     # monotonic
    assert np.abs(np.diff(shown)).max() < 0.01                 # continuous
    assert openness_to_show(0.05, 0.0) is None                 # real lips that meet stay real
    assert openness_to_show(0.2, 0.2 + OPEN_SLACK + 0.01) == pytest.approx(0.2 + OPEN_SLACK + 0.01)
