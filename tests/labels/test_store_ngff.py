"""The label store as other OME-Zarr tools see it: NGFF 0.5 metadata, napari-ome-zarr, atomic chunks."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

from napari_glandseg.labels.export import write_ome_zarr_labels
from napari_glandseg.labels.store import LabelStore

MPP = 1.24


@pytest.fixture
def store(tmp_path) -> LabelStore:
    """A 3-level store with two glands written into its first chunk, pyramid built."""
    # napari-ome-zarr opens the folder two levels above a label image (where an NGFF image
    # would hold it under labels/<name>) and creates a zarr group there if there is none:
    # keep that inside tmp_path.
    path = tmp_path / "project" / "slides" / "slide.glandseg.zarr"
    path.parent.mkdir(parents=True)
    s = LabelStore.create(path, (1500, 1100), chunk_px=256, mpp=MPP, source="slide.svs")
    chunk = np.zeros((256, 256), np.int32)
    chunk[20:90, 30:120] = 1
    chunk[150:240, 100:200] = 2
    s.write_chunk(0, 0, chunk)
    s.build_pyramid()
    return s


@pytest.mark.parametrize("kind", ["store", "export"])
def test_metadata_is_valid_ngff_0_5(store, tmp_path, kind):
    v05 = pytest.importorskip("ome_zarr_models.v05.image_label")
    path = store.path
    if kind == "export":
        path = write_ome_zarr_labels(tmp_path / "glands.ome.zarr", np.asarray(store.levels[0]), MPP)
    label_image = v05.ImageLabel.from_zarr(zarr.open_group(str(path), mode="r"))
    [ms] = label_image.attributes.ome.multiscales
    assert [ax.name for ax in ms.axes] == ["y", "x"]
    assert {ax.unit for ax in ms.axes} == {"micrometer"}
    scales = [ds.coordinateTransformations[0].scale for ds in ms.datasets]
    assert scales == [[MPP * 2**k, MPP * 2**k] for k in range(len(store.levels))]


def test_napari_ome_zarr_opens_the_store_as_labels(store):
    reader_mod = pytest.importorskip("napari_ome_zarr._reader")
    reader = reader_mod.napari_get_reader(str(store.path))
    assert reader is not None, "napari-ome-zarr does not recognise the store"
    [(data, kwargs, layer_type)] = reader(str(store.path))
    assert layer_type == "labels"
    assert [tuple(d.shape) for d in data] == [tuple(a.shape) for a in store.levels]
    for level, got in zip(store.levels, data, strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(level))
    np.testing.assert_allclose(kwargs["scale"], [MPP, MPP])
    assert kwargs.get("units") == ("micrometer", "micrometer")


def test_a_rewritten_chunk_replaces_the_file_instead_of_overwriting_it(store):
    """zarr>=3.1.3 writes a chunk to a temporary file and renames it over the old one (the store
    relies on that): a reader holding the old file keeps whole, old bytes; nothing is left over."""
    chunk_dir = store.path / "0"
    [chunk_file] = [p for p in chunk_dir.rglob("*") if p.is_file() and p.name != "zarr.json" and "c" in p.parts]
    old_bytes = chunk_file.read_bytes()
    held = chunk_file.with_name("held-by-a-reader")
    os.link(chunk_file, held)  # the old inode, as an open reader would see it
    store.write_chunk(0, 0, np.full((256, 256), 5, np.int32))
    assert chunk_file.read_bytes() != old_bytes
    assert held.read_bytes() == old_bytes, "the chunk was overwritten in place, not replaced"
    assert os.stat(chunk_file).st_ino != os.stat(held).st_ino
    held.unlink()
    assert not [p for p in chunk_dir.rglob("*.partial")], "temporary files left behind"
    assert (store.read_region(0, 0, 256, 256) == 5).all()
