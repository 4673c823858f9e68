"""FaceMesh wrapper: real detections on real pixels, plus the measurement formulas."""

from __future__ import annotations

import numpy as np
import pytest

from models.avatar.face_landmarks import (
    LIP_INDICES,
    N_LANDMARKS,
    eye_openness,
    eye_span,
    fill_gaps,
    find_faces,
    landmark_box,
    mouth_features,
    mouth_features_batch,
    smooth_track,
)
from testing.avatar_media import astronaut_bgr, canvas_with_face


@pytest.fixture(scope="module")
def astronaut_landmarks() -> np.ndarray:
    faces = find_faces(astronaut_bgr())
    assert len(faces) == 1
    return faces[0]


def _synthetic_face(s: float, gap: float, corner: float) -> np.ndarray:
    """Landmarks with only the points the formulas read placed deliberately."""
    lm = np.zeros((N_LANDMARKS, 2), np.float32)
    lm[33], lm[263] = (100, 100), (100 + s, 100)
    lm[13], lm[14] = (130, 150), (130, 150 + gap)
    lm[61], lm[291] = (130 - corner / 2, 155), (130 + corner / 2, 155)
    return lm


def test_mouth_features_follow_the_contract_formula():
    s = 60.0
    o, w, r = mouth_features(_synthetic_face(s, gap=0.35 * s * 0.5, corner=0.55 * s))
    assert (o, w, r) == pytest.approx((0.5, 0.0, 0.0), abs=1e-3)
    o, w, r = mouth_features(_synthetic_face(s, gap=s, corner=0.80 * s))   # wide open, spread
    assert (o, w, r) == pytest.approx((1.0, 1.0, 0.0), abs=1e-4)
    o, w, r = mouth_features(_synthetic_face(s, gap=0.0, corner=0.30 * s))  # closed, pursed
    assert (o, w, r) == pytest.approx((0.0, -1.0, 1.0), abs=1e-4)
    batch = mouth_features_batch(np.stack([_synthetic_face(s, 3, 33), _synthetic_face(2 * s, 6, 66)]))
    np.testing.assert_allclose(batch[0], batch[1], atol=1e-5)  # scale-free


def test_lip_indices_are_forty_distinct_mesh_points():
    assert len(LIP_INDICES) == 40 == len(set(LIP_INDICES))
    assert all(0 <= i < N_LANDMARKS for i in LIP_INDICES)


def test_astronaut_face_is_found_where_it_is(astronaut_landmarks):
    lm = astronaut_landmarks
    assert lm.shape == (468, 2) and lm.dtype == np.float32
    x0, y0, x1, y1 = landmark_box(lm)
    # The mesh covers roughly x 178..273, y 70..176 of the 512 px photo (brows to chin).
    assert 160 < x0 < 200 and 250 < x1 < 295 and 50 < y0 < 90 and 160 < y1 < 200
    assert 50 < eye_span(lm) < 75
    assert lm[13, 1] < lm[14, 1] and lm[61, 0] < lm[291, 0]   # upper lip above lower, corners ordered
    assert 0.04 < eye_openness(lm)[0] < 0.12                  # eyes open


@pytest.mark.parametrize("width,height,side,x,y", [(1280, 720, 480, 611.3, 140.6), (720, 1280, 300, 50.0, 800.0)])
def test_landmarks_move_and_scale_with_the_face(astronaut_landmarks, width, height, side, x, y):
    """A small face in a big frame (needs the full-range detector) lands on the same pixels."""
    faces = find_faces(canvas_with_face(width, height, side, x, y))
    assert len(faces) == 1
    expected = astronaut_landmarks * (side / 512) + np.array([x, y], np.float32)
    err = np.linalg.norm(faces[0] - expected, axis=1)
    assert np.median(err) < 0.02 * side and err[list(LIP_INDICES)].max() < 0.04 * side


def test_two_faces_largest_first():
    photo = astronaut_bgr()
    canvas = np.zeros((512, 1024, 3), np.uint8)
    canvas[:, :512] = photo
    canvas[128:384, 640:896] = astronaut_bgr(256)
    faces = find_faces(canvas)
    assert len(faces) == 2
    assert eye_span(faces[0]) == pytest.approx(2 * eye_span(faces[1]), rel=0.15)
    assert landmark_box(faces[0])[2] < 512 < landmark_box(faces[1])[0]


def test_no_face_in_noise_or_gradient():
    rng = np.random.default_rng(1)
    assert find_faces(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) == []
    assert find_faces(canvas_with_face(640, 480, 64, -1000, -1000)) == []


def test_smoothing_is_zero_phase_and_reduces_jitter():
    t = np.arange(200, dtype=np.float32)
    ramp = np.stack([2 * t, -t], axis=1)
    np.testing.assert_allclose(smooth_track(ramp, 2.0), ramp, atol=1e-3)  # no lag, even at the ends
    jitter = np.random.default_rng(0).normal(0, 1, 200).astype(np.float32)
    assert smooth_track(jitter, 2.0).std() < 0.5 * jitter.std()
    assert smooth_track(jitter[:4], 3.0).shape == (4,)


def test_fill_gaps_interpolates_between_neighbours():
    lm = np.zeros((5, 468, 2), np.float32)
    lm[0], lm[4] = 10.0, 50.0
    found = np.array([True, False, False, False, True])
    filled = fill_gaps(lm, found)
    np.testing.assert_allclose(filled[:, 0, 0], [10, 20, 30, 40, 50])
    with pytest.raises(ValueError):
        fill_gaps(lm, np.zeros(5, bool))
