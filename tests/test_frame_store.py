"""The avatar frame store: raw memory-mapped frames when they fit, JPEG otherwise."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from models.avatar.frame_store import RAW_FILE, RAW_SHAPE_FILE, FrameStore, FrameStoreWriter

N, H, W = 12, 48, 64


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
        got = store.get(i)
        assert np.array_equal(got, pictures[i])          # raw: lossless, unlike the JPEG
        assert not got.flags.writeable
        with pytest.raises(ValueError):
            got[0, 0] = 0
        assert np.abs(store.decode(i).astype(int) - pictures[i]).mean() < 3.0
    with pytest.raises(IndexError):
        store.get(N)


def test_over_budget_stays_jpeg_only(tmp_path):
    pictures = write(tmp_path, raw_budget=(N - 1) * H * W * 3)
    assert not (tmp_path / RAW_FILE).exists() and not (tmp_path / RAW_SHAPE_FILE).exists()
    store = FrameStore(tmp_path, raw_budget=(N - 1) * H * W * 3)
    assert not store.is_raw
    assert np.array_equal(store.get(3), store.decode(3))
    assert np.abs(store.get(3).astype(int) - pictures[3]).mean() < 3.0


def test_old_jpeg_only_cache_gains_raw_frames_on_open(tmp_path):
    write(tmp_path, raw_budget=0)                      # as written before raw frames existed
    assert not (tmp_path / RAW_FILE).exists()
    store = FrameStore(tmp_path)
    assert store.is_raw and (tmp_path / RAW_SHAPE_FILE).exists()
    for i in range(N):
        assert np.array_equal(store.get(i), store.decode(i))
    assert not list(tmp_path.glob(".*.tmp"))


def test_damaged_raw_file_falls_back_to_jpeg(tmp_path):
    write(tmp_path)
    with open(tmp_path / RAW_FILE, "r+b") as fh:
        fh.truncate(H * W * 3 * (N - 2))
    store = FrameStore(tmp_path, raw_budget=0)          # no silent re-upgrade in this check
    assert not store.is_raw
    assert store.get(N - 1).shape == (H, W, 3)


def test_store_pickles_to_its_directory_and_remaps(tmp_path):
    pictures = write(tmp_path)
    store = FrameStore(tmp_path)
    blob = pickle.dumps(store)
    assert len(blob) < 1000                             # not the frames
    clone = pickle.loads(blob)
    assert clone.is_raw and np.array_equal(clone.get(7), pictures[7])


def test_kept_frames_stay_in_memory_and_serve_the_store_that_adopts_them(tmp_path):
    kept: list[np.ndarray] = []
    pictures = write(tmp_path, keep=kept)
    assert not (tmp_path / RAW_FILE).exists() and len(kept) == N   # nothing raw on disk
    store = FrameStore(tmp_path, raw_budget=0)
    assert not store.is_raw
    store.adopt(kept)
    assert store.is_raw
    assert np.array_equal(store.get(N - 1), pictures[N - 1]) and not store.get(0).flags.writeable
    with pytest.raises(ValueError):
        store.adopt(kept[:-1])                       # not this store's frames


def test_kept_frames_are_dropped_when_over_budget(tmp_path):
    kept: list[np.ndarray] = []
    write(tmp_path, keep=kept, raw_budget=(N - 1) * H * W * 3)
    assert kept == [] and not (tmp_path / RAW_FILE).exists()
