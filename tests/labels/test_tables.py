"""Polygons and measurements of a whole-slide store (issue 10.3): the same files as the block-by-block
implementation they replaced, value for value.

The store holds real gland outlines: the 60 GlaS testA annotation masks (plus 4 flipped) tiled
8×8 into a 4176×6200 label image (724 glands, 2×2 blocks of 4096 px, glands on block borders),
with whole-slide style ids (``image << 16 | gland``). The golden digests were taken from the
previous implementation (``outputs.write_tables`` at commit c6f0ff6) on this store.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from napari_glandseg.labels.outputs import write_tables

FACTOR = 2.48  # level-0 px per store px
MPP = 1.24
#: sha256 of measurements.csv, and of glands.geojson without the random feature ids
GOLDEN_CSV = "53f6fe89b964ebcd3d94d4df9a5479372c2ef5ab53587bb3822ca9330b7ef7ec"
GOLDEN_GEOJSON = "701c8b4951b7bebcb924faf5e08593eb6cffae621f812d16e031d1159fbc5829"
GOLDEN_COUNT = 724


def gland_mosaic(glas: Path) -> np.ndarray:
    """The 8×8 mosaic of GlaS testA instance masks (connected components) with whole-slide ids."""
    from PIL import Image
    from scipy import ndimage as ndi

    files = sorted((glas / "testA" / "masks").glob("*.png"))
    masks = [np.asarray(Image.open(f)) > 0 for f in files]
    masks += [m[::-1] for m in masks[:4]]
    h, w = max(m.shape[0] for m in masks), max(m.shape[1] for m in masks)
    out = np.zeros((8 * h, 8 * w), np.int32)
    for k, m in enumerate(masks[:64]):
        lab, _ = ndi.label(m)
        y, x = (k // 8) * h, (k % 8) * w
        out[y : y + m.shape[0], x : x + m.shape[1]] = np.where(lab > 0, ((k + 1) << 16) + lab, 0)
    return out


@pytest.fixture(scope="module")
def gland_store(shared_data, tmp_path_factory):
    from napari_glandseg.labels.store import LabelStore

    labels = gland_mosaic(shared_data / "glas")
    path = tmp_path_factory.mktemp("tables") / "labels.ome.zarr"
    store = LabelStore.create(path, labels.shape, chunk_px=1024, mpp=MPP)
    store.levels[0][:] = labels
    return store, labels


def digests(out: Path) -> tuple[str, str]:
    csv_digest = hashlib.sha256((out / "measurements.csv").read_bytes()).hexdigest()
    fc = json.loads((out / "glands.geojson").read_text(encoding="utf-8"))
    for feature in fc["features"]:
        feature.pop("id")
    return csv_digest, hashlib.sha256(json.dumps(fc).encode()).hexdigest()


def slide_shape(labels: np.ndarray) -> tuple[int, int]:
    """A slide a little smaller than the store grid (polygons get clipped to it)."""
    return int(labels.shape[0] * FACTOR) - 2, int(labels.shape[1] * FACTOR) - 1


@pytest.mark.parametrize("workers", [1, 2])
def test_tables_are_the_same_files_as_before(gland_store, tmp_path, workers):
    store, labels = gland_store
    n = write_tables(store, tmp_path, factor=FACTOR, mpp=MPP, slide_shape=slide_shape(labels), workers=workers)
    assert n == GOLDEN_COUNT == len(np.unique(labels)) - 1
    assert digests(tmp_path) == (GOLDEN_CSV, GOLDEN_GEOJSON)


def test_glands_are_whole_whatever_the_blocks(gland_store, tmp_path):
    """Small blocks cut most glands into pieces; each comes out once, whole."""
    from napari_glandseg.labels.tables import iter_glands

    store, labels = gland_store
    glands = list(iter_glands(store, block=300, margin=200))
    assert sorted(g.label for g in glands) == sorted(np.unique(labels)[1:].tolist())
    for g in glands[::25]:
        h, w = g.mask.shape
        np.testing.assert_array_equal(labels[g.row0 : g.row0 + h, g.col0 : g.col0 + w] == g.label, g.mask)
