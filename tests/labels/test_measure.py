"""Per-gland measurements: known shapes, micrometre scaling, slide placement of centroids."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.draw import disk, ellipse

from napari_glandseg.labels.measure import MEASUREMENT_COLUMNS, measure_glands, measurements_table
from napari_glandseg.labels.metrics import to_instances


def disk_labels(radius: float, label: int = 1) -> np.ndarray:
    """A disk of ``radius`` label pixels in the middle of a blank image."""
    size = int(2 * radius + 20)
    lab = np.zeros((size, size), dtype=np.int32)
    lab[disk((size / 2, size / 2), radius)] = label
    return lab


def test_disk_of_known_radius():
    radius = 40
    (row,) = measure_glands(disk_labels(radius, label=3), 1.0)
    assert row["label"] == 3
    assert row["area_px"] == pytest.approx(math.pi * radius**2, rel=0.01)
    assert row["perimeter_um"] == pytest.approx(2 * math.pi * radius, rel=0.03)
    assert row["eccentricity"] < 0.05
    assert row["solidity"] == pytest.approx(1.0, abs=0.02)  # a digital disk: 0.987 (as regionprops)
    assert row["major_axis_um"] == pytest.approx(2 * radius, rel=0.02)
    assert row["minor_axis_um"] == pytest.approx(2 * radius, rel=0.02)


def test_ellipse_eccentricity_and_axes():
    a, b = 60, 25
    lab = np.zeros((200, 200), dtype=np.int32)
    lab[ellipse(100, 100, a, b, rotation=0.6)] = 1
    (row,) = measure_glands(lab, 1.0)
    assert row["eccentricity"] == pytest.approx(math.sqrt(1 - (b / a) ** 2), abs=0.01)
    assert row["major_axis_um"] == pytest.approx(2 * a, rel=0.02)
    assert row["minor_axis_um"] == pytest.approx(2 * b, rel=0.03)
    h = ((a - b) / (a + b)) ** 2  # Ramanujan's perimeter of an ellipse
    assert row["perimeter_um"] == pytest.approx(math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h))), rel=0.03)
    assert row["solidity"] > 0.98


def test_mpp_scales_lengths_and_areas():
    lab = np.zeros((120, 120), dtype=np.int32)
    lab[ellipse(40, 50, 30, 15)] = 1
    lab[80:110, 10:40] = 2
    lab[85:95, 20:30] = 0  # a hole lowers the solidity of gland 2
    ref, half = measure_glands(lab, 1.0), measure_glands(lab, 0.5)
    for r1, r2 in zip(ref, half, strict=True):
        assert r2["area_px"] == r1["area_px"]
        assert r2["area_um2"] == pytest.approx(r1["area_um2"] * 0.25)
        for key in ("perimeter_um", "major_axis_um", "minor_axis_um"):
            assert r2[key] == pytest.approx(r1[key] * 0.5)
        for key in ("eccentricity", "solidity", "centroid_y", "centroid_x"):
            assert r2[key] == pytest.approx(r1[key])
    assert ref[1]["area_px"] == 900 - 100
    assert ref[1]["solidity"] == pytest.approx(800 / 900)


def test_centroid_in_slide_pixels_with_offset_and_scale():
    lab = np.zeros((10, 20), dtype=np.int32)
    lab[2:6, 10:14] = 1  # label centroid (3.5, 11.5)
    (row,) = measure_glands(lab, 1.0, offset=(10, 30), scale=2)
    # slide rows 10 + 2*2 .. 10 + 6*2 - 1 = 14..21 → 17.5; columns 30 + 20 .. 30 + 28 - 1 = 50..57 → 53.5
    assert (row["centroid_y"], row["centroid_x"]) == (17.5, 53.5)
    slide = np.kron(lab, np.ones((2, 2), dtype=np.int32))  # the same gland on the slide grid
    rows, cols = np.nonzero(slide)
    assert (row["centroid_y"], row["centroid_x"]) == (10 + rows.mean(), 30 + cols.mean())
    (plain,) = measure_glands(lab, 1.0)
    assert (plain["centroid_y"], plain["centroid_x"]) == (3.5, 11.5)


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.int64])
def test_dtypes_sorting_and_plain_python_values(dtype):
    lab = np.zeros((30, 30), dtype=dtype)
    lab[2:8, 2:8] = 9
    lab[10:20, 5:9] = 2
    lab[25, 25] = 4
    rows = measure_glands(lab, 0.25)
    assert [r["label"] for r in rows] == [2, 4, 9]
    assert [r["area_px"] for r in rows] == [40, 1, 36]
    for row in rows:
        assert tuple(row) == MEASUREMENT_COLUMNS
        assert type(row["label"]) is int and type(row["area_px"]) is int
        assert all(type(row[k]) is float for k in MEASUREMENT_COLUMNS[2:])
    json.dumps(rows, allow_nan=False)


def test_empty_labels_and_bad_inputs():
    assert measure_glands(np.zeros((16, 16), dtype=np.int32), 0.5) == []
    assert measure_glands(np.zeros((0, 0), dtype=np.uint16), 0.5) == []
    with pytest.raises(ValueError, match="mpp"):
        measure_glands(disk_labels(5), 0)
    with pytest.raises(ValueError, match="non-negative"):
        measure_glands(-disk_labels(5), 1.0)
    with pytest.raises(ValueError, match="2-D"):
        measure_glands(np.zeros((2, 3, 4), dtype=np.int32), 1.0)


def test_measurements_table():
    rows = measure_glands(disk_labels(10, label=5), 0.5)
    table = measurements_table(rows)
    assert tuple(table.columns) == MEASUREMENT_COLUMNS
    assert table["label"].tolist() == [5] and len(table) == 1
    empty = measurements_table([])
    assert tuple(empty.columns) == MEASUREMENT_COLUMNS and len(empty) == 0


def test_real_glas_mask(shared_data: Path):
    mask = np.array(Image.open(shared_data / "glas" / "train" / "masks" / "train_1.png"))
    labels = to_instances(mask)
    rows = measure_glands(labels, 0.62)
    assert len(rows) == len(np.unique(labels)) - 1
    assert sum(r["area_px"] for r in rows) == (labels > 0).sum()
    for row in rows:
        assert 0 <= row["eccentricity"] <= 1 and 0 < row["solidity"] <= 1
        assert row["minor_axis_um"] <= row["major_axis_um"]
        assert 0 <= row["centroid_y"] < labels.shape[0] and 0 <= row["centroid_x"] < labels.shape[1]


def test_sparse_whole_slide_ids_keep_their_values():
    dense = np.zeros((60, 80), np.int32)
    dense[5:20, 5:30] = 1
    dense[30:55, 40:70] = 2
    sparse = np.where(dense > 0, (dense.astype(np.int64) * 7) << 16, 0).astype(np.int32)
    rows_dense, rows_sparse = measure_glands(dense, 0.5), measure_glands(sparse, 0.5)
    assert [r["label"] for r in rows_sparse] == [7 << 16, 14 << 16]
    for a, b in zip(rows_dense, rows_sparse, strict=True):
        assert {k: v for k, v in a.items() if k != "label"} == {k: v for k, v in b.items() if k != "label"}
