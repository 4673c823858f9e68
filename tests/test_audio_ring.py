"""AudioRing against a plain "whole stream in a list" reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from live.engine.audio_ring import AudioRing, AudioRingError


def test_write_read_and_wraparound() -> None:
    ring = AudioRing(capacity=10)
    stream = np.arange(25, dtype=np.float32)
    for chunk in np.split(stream, [3, 10, 17, 18]):
        ring.write(chunk)
    assert (ring.start, ring.end, len(ring)) == (15, 25, 10)
    np.testing.assert_array_equal(ring.read(15, 10), stream[15:25])
    np.testing.assert_array_equal(ring.read(19, 4), stream[19:23])
    assert ring.samples_overwritten == 15


def test_read_outside_raises_with_readable_message() -> None:
    ring = AudioRing(capacity=8)
    ring.write(np.ones(5, dtype=np.float32))
    with pytest.raises(AudioRingError, match=r"\[3, 7\).*\[0, 5\)"):
        ring.read(3, 4)
    ring.drop_until(2)
    with pytest.raises(AudioRingError):
        ring.read(1, 2)
    assert ring.available_from(1) == 0
    assert ring.available_from(2) == 3
    assert ring.available_from(5) == 0


def test_read_padded_fills_before_start_and_after_end() -> None:
    ring = AudioRing(capacity=8, start=100)
    ring.write(np.array([1, 2, 3], dtype=np.float32))
    np.testing.assert_array_equal(ring.read_padded(98, 7, fill=-1), [-1, -1, 1, 2, 3, -1, -1])
    np.testing.assert_array_equal(ring.read_padded(0, 3), [0, 0, 0])


def test_interrupt_discards_unplayed_audio_and_continues_at_cut() -> None:
    ring = AudioRing(capacity=100)
    ring.write(np.full(50, 1.0, dtype=np.float32))
    ring.drop_until(20)  # played up to 20
    ring.clear_after(30)  # interrupt: keep what is already committed up to 30
    assert (ring.start, ring.end) == (20, 30)
    ring.write(np.full(5, 2.0, dtype=np.float32))
    np.testing.assert_array_equal(ring.read(28, 4), [1, 1, 2, 2])
    ring.clear_after(10)  # before start: empty at the cut
    assert (ring.start, ring.end, len(ring)) == (10, 10, 0)
    ring.clear_after(50)  # past the end: nothing to clear
    assert ring.end == 10


def test_oversized_write_keeps_newest() -> None:
    ring = AudioRing(capacity=4)
    ring.write(np.arange(3, dtype=np.float32))
    ring.write(np.arange(3, 13, dtype=np.float32))
    assert (ring.start, ring.end) == (9, 13)
    np.testing.assert_array_equal(ring.read(9, 4), [9, 10, 11, 12])
    assert ring.samples_overwritten == 9


def test_rejects_bad_capacity() -> None:
    with pytest.raises(ValueError):
        AudioRing(0)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 40)),
        st.tuples(st.just("drop"), st.integers(-5, 60)),
        st.tuples(st.just("clear"), st.integers(-5, 60)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 32), program=ops)
def test_matches_reference_model(capacity: int, program: list[tuple[str, int]]) -> None:
    """Any sequence of writes/drops/interrupts: the ring holds exactly the newest
    `capacity` not-dropped samples of the reference stream."""
    ring = AudioRing(capacity)
    reference: dict[int, float] = {}  # absolute index -> value
    counter = 0.0
    for op, arg in program:
        if op == "write":
            chunk = counter + np.arange(arg, dtype=np.float32)
            counter += arg
            for i, v in enumerate(chunk):
                reference[ring.end + i] = float(v)
            ring.write(chunk)
        elif op == "drop":
            ring.drop_until(ring.start + arg)
        else:
            ring.clear_after(ring.start + arg)
        assert 0 <= len(ring) <= capacity
        got = ring.read(ring.start, len(ring))
        want = [reference[i] for i in range(ring.start, ring.end)]
        np.testing.assert_array_equal(got, want)
