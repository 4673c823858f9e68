"""The avatar frame store: frames kept as I420; raw memory-mapped frames when they fit, JPEG otherwise."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from models.avatar.frame_store import RAW_FILE, RAW_SHAPE_FILE, FrameStore, FrameStoreWriter
from models.avatar.i420 import bgr_to_i420, i420_to_bgr

N, H, W = 12, 48, 64
I420_BYTES = H * W * 3 // 2


def frames() -> list[np.ndarray]:
    """Smooth pictures (JPEG-friendly) that differ from frame to frame."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    out = []
    for k in range(N):
        img = np.stack([x * 3 + 7 * k, y * 4 + 5 * k, (x + y) * 2 + 11 * k], axis=-1)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def write(directory: Path, **kwargs) -> list[np.ndarray]:
    directory.mkdir(parents=True, exist_ok=True)
    pictures = frames()
    with FrameStoreWriter(directory, **kwargs) as writer:
        for f in pictures:
            writer.append(f)
    return pictures


def test_raw_frames_are_exact_shared_and_read_only(tmp_path):
    pictures = write(tmp_path)
    store = FrameStore(tmp_path)
    assert store.is_raw and len(store) == N
    for i in (0, 5, N - 1):
        got = store.get_i420(i)
        assert np.array_equal(got, bgr_to_i420(pictures[i]))   # raw: lossless, unlike the JPEG
        assert not got.flags.writeable and not store.get(i).flags.writeable
        with pytest.raises(ValueError):
            got[0, 0] = 0
        assert np.array_equal(store.get(i), i420_to_bgr(got))
        assert np.abs(store.get(i).astype(int) - pictures[i]).mean() < 3.0
        assert np.abs(store.decode(i).astype(int) - got).mean() < 3.0
    with pytest.raises(IndexError):
        store.get(N)


def test_over_budget_stays_jpeg_only(tmp_path):
    pictures = write(tmp_path, raw_budget=(N - 1) * I420_BYTES)
    assert not (tmp_path / RAW_FILE).exists() and not (tmp_path / RAW_SHAPE_FILE).exists()
    store = FrameStore(tmp_path, raw_budget=(N - 1) * I420_BYTES)
    assert not store.is_raw
    assert np.array_equal(store.get_i420(3), store.decode(3))
    assert np.abs(store.get(3).astype(int) - pictures[3]).mean() < 3.0


def test_old_jpeg_only_cache_gains_raw_frames_on_open(tmp_path):
    write(tmp_path, raw_budget=0)                      # as written before raw frames existed
    assert not (tmp_path / RAW_FILE).exists()
    store = FrameStore(tmp_path)
    assert store.is_raw and (tmp_path / RAW_SHAPE_FILE).exists()
    for i in range(N):
        assert np.array_equal(store.get_i420(i), store.decode(i))
    assert not list(tmp_path.glob(".*.tmp"))


def test_damaged_raw_file_falls_back_to_jpeg(tmp_path):
    write(tmp_path)
    with open(tmp_path / RAW_FILE, "r+b") as fh:
        fh.truncate(I420_BYTES * (N - 2))
    store = FrameStore(tmp_path, raw_budget=0)          # no silent re-upgrade in this check
    assert not store.is_raw
    assert store.get(N - 1).shape == (H, W, 3)


def test_store_pickles_to_its_directory_and_remaps(tmp_path):
    pictures = write(tmp_path)
    store = FrameStore(tmp_path)
    blob = pickle.dumps(store)
    assert len(blob) < 1000                             # not the frames
    clone = pickle.loads(blob)
    assert clone.is_raw and np.array_equal(clone.get_i420(7), bgr_to_i420(pictures[7]))


def test_kept_frames_stay_in_memory_and_serve_the_store_that_adopts_them(tmp_path):
    kept: list[np.ndarray] = []
    pictures = write(tmp_path, keep=kept)
    assert not (tmp_path / RAW_FILE).exists() and len(kept) == N   # nothing raw on disk
    store = FrameStore(tmp_path, raw_budget=0)
    assert not store.is_raw
    store.adopt(kept)
    assert store.is_raw
    assert np.array_equal(store.get_i420(N - 1), bgr_to_i420(pictures[N - 1]))
    assert not store.get_i420(0).flags.writeable
    with pytest.raises(ValueError):
        store.adopt(kept[:-1])                       # not this store's frames


def test_kept_frames_are_dropped_when_over_budget(tmp_path):
    kept: list[np.ndarray] = []
    write(tmp_path, keep=kept, raw_budget=(N - 1) * I420_BYTES)
    assert kept == [] and not (tmp_path / RAW_FILE).exists()


def test_frames_are_stored_as_i420_at_half_the_raw_size_of_bgr(tmp_path):
    write(tmp_path)
    assert (tmp_path / RAW_FILE).stat().st_size == N * I420_BYTES     # not N * H * W * 3
    store = FrameStore(tmp_path, raw_budget=0)
    assert store.get_i420(0).shape == (H * 3 // 2, W)


def test_a_region_is_exactly_that_part_of_the_whole_frame(tmp_path):
    write(tmp_path, raw_budget=0)
    store = FrameStore(tmp_path, raw_budget=0)
    whole = i420_to_bgr(store.get_i420(5))
    for box in ((0, 0, W, H), (3, 5, 29, 40), (10, 4, 30, 20)):
        x0, y0, x1, y1 = box
        assert np.array_equal(store.region(5, box), whole[y0:y1, x0:x1])
    with pytest.raises(ValueError):
        store.region(5, (0, 0, W + 2, H))


def test_a_raw_file_of_the_old_bgr_layout_is_not_misread(tmp_path):
    pictures = write(tmp_path, raw_budget=0)
    with open(tmp_path / RAW_FILE, "wb") as fh:                 # what the BGR store wrote
        for f in pictures:
            fh.write(f.data)
    (tmp_path / RAW_SHAPE_FILE).write_text(f'{{"shape": [{N}, {H}, {W}, 3], "dtype": "uint8"}}')
    assert not FrameStore(tmp_path, raw_budget=0).is_raw          # ignored ...
    store = FrameStore(tmp_path)                                  # ... and rewritten as I420
    assert store.is_raw and np.array_equal(store.get_i420(4), store.decode(4))
    assert (tmp_path / RAW_FILE).stat().st_size == N * I420_BYTES


def test_a_corrupt_jpeg_frame_raises(tmp_path):
    write(tmp_path, raw_budget=0)
    offsets = np.load(tmp_path / "frames_index.npy")
    data = bytearray((tmp_path / "frames.bin").read_bytes())
    data[int(offsets[1]):int(offsets[2])] = bytes(int(offsets[2] - offsets[1]))   # frame 1 zeroed
    (tmp_path / "frames.bin").write_bytes(bytes(data))
    store = FrameStore(tmp_path, raw_budget=0)
    assert store.decode(0).shape == (H * 3 // 2, W)
    with pytest.raises(RuntimeError):
        store.decode(1)
