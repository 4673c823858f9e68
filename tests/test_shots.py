"""Sources as people shoot them (issue 10): fades from black, hard cuts between two
people, a cut to an empty room, a face that leaves the picture and comes back.

The clips are generated here (testing.avatar_media.shot_clip), prepared like any
upload, then rendered with a wide-open mouth on every frame.  Frames without a face
must come back exactly as stored; the mouth must be edited again right after each
cut; landmarks must never be interpolated or smoothed across a cut; the reported
no-face times must be the clip's; the idle loop must stay inside one shot.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from live.engine.compositor import Compositor
from models.avatar.avatar import Avatar, AvatarInfo, load_avatar, prepare_avatar
from models.avatar.face_landmarks import find_faces, landmark_box
from models.avatar.shots import (
    BLEND_FRAMES,
    fill_per_shot,
    is_cut,
    loop_span,
    paste_weights,
    ping_pong,
    signature,
    smooth_per_shot,
)
from models.mouth.mouth_shape import MouthShape
from models.render.mouth_renderer import MouthRenderer
from testing.avatar_media import ShotClip, ShotPlan, canvas_with_face, second_face_bgr, shot_clip, write_video

FPS = 25
OPEN = MouthShape(openness=1.0)
W, H, SIDE = 320, 240, 220


def _leave_and_return(k: int) -> tuple[float, float]:
    """Out to the right, 12 px a frame, and back: fully outside the 320 px canvas for a while."""
    return 40 + 12 * min(k, 59 - k), 10.0


CLIPS: dict[str, list[ShotPlan]] = {
    # 8 black frames, then the astronaut fades in over 10 frames.
    "fade": [ShotPlan(8, black=True), ShotPlan(42, fade_in=10)],
    # Astronaut | another person elsewhere | astronaut again: cuts at 25 (odd: the
    # stride would have skipped it) and 50 (even: the stride would have skipped 49).
    "cuts": [ShotPlan(25), ShotPlan(25, face="other", x=90, y=25, dx=-1), ShotPlan(25, x=10, y=10)],
    # Face | empty room | face.
    "empty": [ShotPlan(30), ShotPlan(15, face=None), ShotPlan(30, x=70)],
    # One shot: the face slides out of the picture and back in.
    "leave": [ShotPlan(60, path=_leave_and_return)],
}


class Prepared:
    def __init__(self, clip: ShotClip, info: AvatarInfo, avatar: Avatar) -> None:
        self.clip, self.info, self.avatar = clip, info, avatar
        self.renderer = MouthRenderer(avatar)

    def edit(self, i: int) -> float:
        """Mean absolute change an open mouth makes to frame ``i`` around its mouth."""
        out = self.renderer.render(i, OPEN).astype(np.int16)
        src = self.avatar.frame(i).astype(np.int16)
        x0, y0, x1, y1 = landmark_box(self.avatar.landmarks[i]).astype(int)
        y0 = (y0 + y1) // 2       # the lower half of the face
        return float(np.abs(out - src)[max(y0, 0):y1, max(x0, 0):x1].mean())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, Prepared]:
    media, root = tmp_path_factory.mktemp("shot_media"), tmp_path_factory.mktemp("shot_avatars")
    out = {}
    for name, plans in CLIPS.items():
        clip = shot_clip(plans, W, H, SIDE)
        info = prepare_avatar(write_video(media / f"{name}.mp4", clip.frames, FPS), root)
        out[name] = Prepared(clip, info, load_avatar(info.avatar_id, root))
    return out


def _starts(avatar: Avatar) -> list[int]:
    return (np.flatnonzero(np.diff(avatar.shot_ids)) + 1).tolist()


# ---------------------------------------------------------------------------------------
# The signature


def test_signature_tells_shots_apart_but_not_a_fade_or_motion():
    a = [canvas_with_face(W, H, SIDE, 40 + 2 * k, 10) for k in range(6)]
    sig = [signature(f) for f in a]
    assert not any(is_cut(sig[k], sig[k + 1]) for k in range(5))             # a moving face
    fade = [signature((a[0] * (t / 10)).round().astype(np.uint8)) for t in range(1, 11)]
    crossings = [k for k in range(9) if is_cut(fade[k], fade[k + 1])]
    assert len(crossings) == 1 and fade[crossings[0]].dark                   # only where it leaves black
    other = signature(canvas_with_face(W, H, SIDE, 50, 10, face=second_face_bgr(SIDE)))
    black = signature(np.zeros((H, W, 3), np.uint8))
    flat = signature(np.full((H, W, 3), 128, np.uint8))
    assert is_cut(sig[5], other) and is_cut(sig[5], black) and is_cut(black, sig[0]) and is_cut(sig[0], flat)
    assert not is_cut(black, black) and not is_cut(flat, flat)


def test_signature_costs_well_under_a_millisecond_at_720p():
    import cv2

    frame = cv2.resize(canvas_with_face(W, H, SIDE, 40, 10), (1280, 720))
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(20):
            signature(frame)
        best = min(best, (time.perf_counter() - t0) / 20)
    assert best < 0.5e-3, best


# ---------------------------------------------------------------------------------------
# Preparation


def test_cuts_are_found_where_the_clip_cuts(prepared):
    for name in ("cuts", "empty"):
        p = prepared[name]
        assert _starts(p.avatar) == p.clip.cuts and p.info.shots == len(p.clip.cuts) + 1, name
    assert _starts(prepared["leave"].avatar) == []          # a face leaving is not a cut
    fade = _starts(prepared["fade"].avatar)
    assert len(fade) == 1 and 8 <= fade[0] <= 12            # where the fade leaves black


def test_landmarks_are_measured_on_both_sides_of_every_cut(prepared):
    """Interpolating or smoothing across a cut would put these frames' landmarks
    between two faces 40+ px apart; measured, they sit on their own face."""
    p = prepared["cuts"]
    for c in p.clip.cuts:
        for i in (c - 1, c):
            fresh = find_faces(p.avatar.frame(i))
            assert fresh, i
            err = np.abs(p.avatar.landmarks[i] - fresh[0]).mean()
            assert err < 2.5, (i, err)
        jump = np.abs(p.avatar.landmarks[c].mean(0) - p.avatar.landmarks[c - 1].mean(0)).max()
        assert jump > 30, (c, jump)


def test_fill_and_smoothing_stop_at_cuts():
    shots = np.array([0] * 5 + [1] * 5 + [2] * 5)
    found = np.array([True] * 5 + [False] * 5 + [True] * 5)
    lm = np.zeros((15, 468, 2), np.float32)
    lm[:5], lm[10:] = 0.0, 100.0
    filled = fill_per_shot(lm, found, shots)
    assert set(np.unique(filled[5:10])) <= {0.0, 100.0}     # held, never interpolated to 50
    smooth = smooth_per_shot(filled, shots, 3.0)
    assert np.array_equal(smooth[:5], filled[:5]) and np.allclose(smooth[10:], 100.0)


def test_reported_no_face_ranges_are_the_clips(prepared):
    empty = prepared["empty"]
    assert empty.info.no_face == ((1.2, 1.8),)
    assert any("1.20-1.80 s" in w and "unchanged" in w for w in empty.info.warnings)
    assert not empty.avatar.face_found[30:45].any() and empty.avatar.face_found[:30].all()
    assert empty.avatar.face_found[45:].all()
    fade = prepared["fade"].info.no_face
    assert len(fade) == 1 and fade[0][0] == 0.0 and 8 / FPS <= fade[0][1] <= 14 / FPS, fade
    assert prepared["cuts"].info.no_face == ()
    leave = prepared["leave"]
    (a, b), = leave.info.no_face
    gone = [k for k in range(60) if _leave_and_return(k)[0] >= W]   # the face wholly outside
    assert a <= gone[0] / FPS and gone[-1] / FPS < b
    assert AvatarInfo.from_json(leave.info.to_json()) == leave.info


# ---------------------------------------------------------------------------------------
# Rendering


def test_frames_without_a_face_are_the_source_frames_bit_for_bit(prepared):
    for name, p in prepared.items():
        none = np.flatnonzero(~p.avatar.face_found)
        assert len(none) >= (0 if name == "cuts" else 8), name
        for i in none:
            assert np.array_equal(p.renderer.render(int(i), OPEN), p.avatar.frame(int(i))), (name, i)
        # ... and through the compositor, which the live and offline paths use.
        comp = Compositor(p.avatar)
        for i in none[:3]:
            assert np.array_equal(comp.renderer.render(int(i), OPEN), p.avatar.frame(int(i)))


def test_the_mouth_is_edited_again_at_once_after_each_cut(prepared):
    for name in ("cuts", "empty"):
        p = prepared[name]
        mid = p.edit(5)
        assert mid > 1.0, (name, mid)
        for c in p.clip.cuts:
            first = c if p.avatar.face_found[c] else None
            if first is None:                      # a cut to the empty room: the next cut
                continue
            assert p.renderer._weights[c] == 1.0
            assert p.edit(c) > 0.5 * mid, (name, c, p.edit(c), mid)
            # The mouth came from the shot on screen, not from the other person.
            assert p.avatar.shot_ids[p.renderer._previous] == p.avatar.shot_ids[c]


def test_a_face_re_entering_mid_shot_fades_in(prepared):
    p = prepared["leave"]
    found = p.avatar.face_found
    back = int(np.flatnonzero(~found)[-1]) + 1                # first tracked frame after the gap
    left = int(np.flatnonzero(~found)[0])                     # first frame without the face
    w = p.renderer._weights
    ramp = [(k + 1) / (BLEND_FRAMES + 1) for k in range(BLEND_FRAMES)]
    assert np.allclose(w[back:back + BLEND_FRAMES], ramp) and w[back + BLEND_FRAMES] == 1.0
    assert np.allclose(w[left - BLEND_FRAMES:left], ramp[::-1])   # played backwards by the loop
    edits = [p.edit(k) for k in range(back, back + BLEND_FRAMES + 1)]
    assert edits[0] > 0 and edits == sorted(edits), edits


def test_paste_weights_switch_at_cuts_and_ramp_mid_shot():
    found = np.array([0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1], bool)
    shots = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    w = paste_weights(found, shots, ramp=3)
    assert w[0] == 0 and w[7] == 0 and w[8] == 0
    assert w[1] == 1.0                                    # right after a cut: at once
    assert np.allclose(w[9:13], [0.25, 0.5, 0.75, 1.0])   # re-entering mid-shot
    assert np.allclose(w[4:7], [0.75, 0.5, 0.25])          # leaving mid-shot (the loop plays it backwards)
    assert w[13] == 1.0                                   # the clip's end is no exit


# ---------------------------------------------------------------------------------------
# Idle loop


def test_idle_loop_bounces_inside_one_shot(prepared):
    for name, p in prepared.items():
        order = p.avatar.loop_order
        assert len(np.unique(p.avatar.shot_ids[order])) == 1, name
        first, last = int(order.min()), int(order.max())
        assert p.avatar.face_found[first] and p.avatar.face_found[last], name
        assert last - first >= 20, name
    assert prepared["fade"].avatar.loop_order.min() >= 8                 # never bounces in the black
    cuts = prepared["cuts"].avatar
    assert cuts.loop_order.tolist() == ping_pong(0, 24).tolist()          # the first of equal shots


def test_loop_span_picks_the_shot_with_most_face():
    shots = np.array([0] * 4 + [1] * 8 + [2] * 6)
    found = np.array([1] * 4 + [0, 0, 1, 1, 1, 1, 1, 0] + [1] * 6, bool)
    assert loop_span(found, shots) == (12, 17)              # 6 usable frames beat 5 (trimmed: 6..10)
    assert loop_span(found, np.zeros(18, int)) == (0, 17)   # one shot: all of it, gap and all
    assert ping_pong(2, 5).tolist() == [2, 3, 4, 5, 4, 3]
