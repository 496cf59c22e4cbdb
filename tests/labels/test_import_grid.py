"""Imported GeoJSON is rasterised on a grid clipped to the slide and bounded in size, with a
scanline fill that needs no temporaries the size of a polygon's box."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from napari_glandseg.errors import GlandsegError
from napari_glandseg.labels.geojson import features_to_labels, read_geojson
from napari_glandseg.labels.import_grid import IMPORT_MARGIN_PX, import_grid
from napari_glandseg.labels.polygons import fill_polygon


def _square(x0, y0, side):
    ring = [[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side], [x0, y0]]
    return {"type": "FeatureCollection",
            "features": [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {}}]}


def _import(fc, slide_shape, **kw):
    shape, t, s = import_grid(fc, slide_shape, **kw)
    corner = (t[0] - (s - 1) / 2, t[1] - (s - 1) / 2)
    return features_to_labels(fc, shape, scale=s, offset=corner), t, s


def test_a_tiny_file_with_a_huge_square_stays_on_the_slide(tmp_path):
    path = tmp_path / "huge.geojson"
    path.write_text(json.dumps(_square(500, 400, 20_000)))
    assert path.stat().st_size < 250  # the 245-byte file of the issue
    tracemalloc.start()
    labels, t, s = _import(read_geojson(path), (2967, 2220))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the grid runs from the square's corner (less the margin) to the slide's edge, at level 0
    assert s == 1.0 and t == (400 - IMPORT_MARGIN_PX, 500 - IMPORT_MARGIN_PX)
    assert labels.shape == (2967 - 368, 2220 - 468)
    assert labels[IMPORT_MARGIN_PX:, IMPORT_MARGIN_PX:].all() and not labels[:IMPORT_MARGIN_PX].any()
    assert peak < 1.5 * labels.nbytes  # the label image itself, not 5× temporaries (7.8 GB before)


def test_a_grid_too_big_for_memory_gets_coarser_not_bigger():
    fc = _square(0, 0, 100_000)
    labels, t, s = _import(fc, (100_000, 80_000), max_px=2**20)
    assert labels.size <= 2**20 and s == 88.0  # ceil(sqrt(8e9 / 2**20)) level-0 px per label px
    assert labels[:-1].all()  # the last row's centres lie past the square's (and slide's) edge
    assert t == ((s - 1) / 2, (s - 1) / 2)  # pixel centres, as napari places them


def test_polygons_outside_the_slide_are_refused():
    with pytest.raises(GlandsegError, match=r"outside the slide \(2220 × 2967 px\)"):
        import_grid(_square(5000, 100, 50), (2967, 2220))
    with pytest.raises(GlandsegError, match="no polygon"):
        import_grid({"type": "FeatureCollection", "features": []}, (10, 10))


def test_the_scanline_fill_matches_pixel_centres_and_closes_open_rings():
    out = np.zeros((6, 8), np.int32)
    # an open triangle with a vertex on a row centre, partly off the grid on the left
    fill_polygon(out, [np.array([[-2.0, 0.0], [6.0, 2.5], [-2.0, 5.0]])], 4)
    rows, cols = np.mgrid[:6, :8] + 0.5
    # inside: left of the two edges x = -2 + 8 * y / 2.5 (top half) and mirrored
    inside = (cols < -2 + 8 * np.minimum(rows, 5 - rows) / 2.5) & (rows < 5)
    np.testing.assert_array_equal(out == 4, inside)


def test_the_fill_holds_only_crossings_in_memory():
    out = np.zeros((4000, 4000), np.int32)
    tracemalloc.start()
    fill_polygon(out, [np.array([[-1e4, -1e4], [3e4, -1e4], [3e4, 3e4], [-1e4, 3e4], [-1e4, -1e4]])], 1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.all() and peak < 4 * 2**20  # was 20 bytes per pixel of the box (300 MB here)
