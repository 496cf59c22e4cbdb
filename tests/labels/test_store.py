"""LabelStore: an OME-Zarr label pyramid on disk with done markers and a journalled review log."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_glandseg.errors import GlandsegError
from napari_glandseg.labels.store import LabelStore, level_shapes


@pytest.fixture
def store(tmp_path):
    return LabelStore.create(tmp_path / "s.ome.zarr", (1300, 1000), chunk_px=256, mpp=1.24, source="slide.svs")


def _pyramid_consistent(store: LabelStore) -> None:
    full = store.levels[0][:]
    for k in range(1, len(store.levels)):
        np.testing.assert_array_equal(store.levels[k][:], full[:: 2**k, :: 2**k], err_msg=f"level {k}")


def test_levels_shapes_chunks_and_ngff_metadata(store, tmp_path):
    assert store.shape == (1300, 1000)
    assert [tuple(a.shape) for a in store.levels] == level_shapes((1300, 1000)) == [(1300, 1000), (650, 500), (325, 250)]
    assert all(a.dtype == np.int32 for a in store.levels)
    assert tuple(store.levels[0].chunks) == (256, 256)
    attrs = json.loads((tmp_path / "s.ome.zarr" / "zarr.json").read_text())["attributes"]
    ome = attrs["ome"]
    assert ome["version"] == "0.5"
    ms = ome["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["y", "x"] and ms["axes"][0]["unit"] == "micrometer"
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales == [[1.24, 1.24], [2.48, 2.48], [4.96, 4.96]]
    assert ome["image-label"]["source"]["image"] == "slide.svs"
    reopened = LabelStore.open(tmp_path / "s.ome.zarr")
    assert reopened.mpp == 1.24 and reopened.chunk_px == 256 and reopened.source == "slide.svs"


def test_read_region_pads_outside_with_zero(store):
    store.levels[0][:10, :10] = 5
    out = store.read_region(-4, -6, 8, 20)
    assert out.shape == (8, 20)
    assert (out[:4] == 0).all() and (out[:, :6] == 0).all()
    assert (out[4:, 6:16] == 5).all() and (out[4:, 16:] == 0).all()


def test_write_chunk_then_marker_and_shape_check(store):
    gy, gx = store.grid
    assert (gy, gx) == (6, 4)
    y, x, h, w = store.chunk_box(5, 3)  # the clipped corner chunk
    assert (h, w) == (1300 - 5 * 256, 1000 - 3 * 256)
    assert not store.is_done(5, 3)
    store.write_chunk(5, 3, np.full((h, w), 9, np.int32))
    assert store.is_done(5, 3) and store.done_chunks() == {(5, 3)}
    assert (store.read_region(y, x, h, w) == 9).all()
    with pytest.raises(ValueError, match="chunk \\(0, 0\\)"):
        store.write_chunk(0, 0, np.zeros((10, 10), np.int32))
    assert not store.is_done(0, 0)
    with pytest.raises(IndexError):
        store.chunk_box(6, 0)


def test_write_region_clips_logs_and_refreshes_the_pyramid(store, tmp_path):
    rng = np.random.default_rng(1)
    store.levels[0][:] = rng.integers(0, 4, store.shape).astype(np.int32)
    store.build_pyramid()
    _pyramid_consistent(store)
    patch = rng.integers(0, 50, (300, 301)).astype(np.int32)
    rec = store.write_region(1100, 850, patch, reviewed_by="pathologist", model="glandseg_small")
    assert rec["bounds"] == [1100, 850, 200, 150]
    np.testing.assert_array_equal(store.read_region(1100, 850, 200, 150), patch[:200, :150])
    _pyramid_consistent(store)
    store.write_region(-20, -30, patch, reviewed_by="pathologist", model=None)
    np.testing.assert_array_equal(store.read_region(0, 0, 280, 271), patch[20:, 30:])
    _pyramid_consistent(store)
    log = LabelStore.open(tmp_path / "s.ome.zarr").reviewed_regions()
    assert [r["bounds"] for r in log] == [[1100, 850, 200, 150], [0, 0, 280, 271]]
    assert log[0]["reviewed_by"] == "pathologist" and log[0]["model"] == "glandseg_small" and log[0]["time"]
    np.testing.assert_array_equal(store.read_patch(log[1]), patch[20:, 30:])


def test_a_commit_cut_off_before_it_reached_the_labels_is_replayed(store, tmp_path, monkeypatch):
    patch = np.full((40, 50), 7, np.int32)

    def crash(self, record, data):
        raise KeyboardInterrupt("killed after the journal, before the labels")

    monkeypatch.setattr(LabelStore, "_apply", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write_region(100, 200, patch, reviewed_by="me")
    monkeypatch.undo()
    assert store.read_region(100, 200, 40, 50).max() == 0 and store.reviewed_regions() == []
    recovered = LabelStore.open(tmp_path / "s.ome.zarr")
    assert (recovered.read_region(100, 200, 40, 50) == 7).all()
    [rec] = recovered.reviewed_regions()
    assert rec["bounds"] == [100, 200, 40, 50] and rec["recovered"] is True
    _pyramid_consistent(recovered)
    assert len(LabelStore.open(tmp_path / "s.ome.zarr").reviewed_regions()) == 1  # replayed once


def test_bad_inputs(tmp_path, store):
    with pytest.raises(GlandsegError, match="already exists"):
        LabelStore.create(tmp_path / "s.ome.zarr", (10, 10))
    with pytest.raises(GlandsegError, match="positive shape"):
        LabelStore.create(tmp_path / "zero.zarr", (0, 10))
    with pytest.raises(GlandsegError, match="no label store"):
        LabelStore.open(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    with pytest.raises(GlandsegError, match="plain"):
        LabelStore.open(tmp_path / "plain")
    with pytest.raises(ValueError, match="2-D integer"):
        store.write_region(0, 0, np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="outside"):
        store.write_region(5000, 0, np.zeros((4, 4), np.int32))
    ro = LabelStore.open(tmp_path / "s.ome.zarr", read_only=True)
    with pytest.raises(GlandsegError, match="read-only"):
        ro.write_region(0, 0, np.ones((4, 4), np.int32))
