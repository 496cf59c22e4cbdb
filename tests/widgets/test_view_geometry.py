"""The GUI-free view geometry behind "Segment view" and label placement (no viewer)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_glandseg.slide.view_geometry import (
    cap_bbox,
    clip_bbox,
    place_on_image,
    resample_to_grid,
    to_level0,
    visible_bbox0,
    visible_world_box,
)


def _affine(scale, translate):
    s, t = np.asarray(scale, float), np.asarray(translate, float)
    return lambda p: (np.asarray(p, float) - t) / s


def test_visible_world_box_uses_zoom_as_canvas_px_per_world_unit():
    assert visible_world_box((0, 100.0, 200.0), 2.0, (400, 600)) == (0.0, 50.0, 200.0, 350.0)
    with pytest.raises(ValueError):
        visible_world_box((0, 0), 0, (10, 10))


def test_visible_bbox_in_um_layer_is_level0_pixels():
    # image in µm (0.5 µm/px), translated by (10, 20) µm; camera shows 200×300 µm around (110, 170)
    vb = visible_bbox0((110, 170), 1.0, (200, 300), _affine((0.5, 0.5), (10, 20)), (10_000, 10_000))
    # world y 10..210 -> data 0..400; x 20..320 -> 0..600
    # every pixel the box touches is in: pixel 400 spans [399.5, 400.5)
    assert vb.bbox == (0, 0, 401, 601) and not vb.capped


def test_clip_to_slide_and_outside_view():
    assert clip_bbox((-50.0, -50.0, 99.4, 20.0), (80, 1000)) == (0, 0, 80, 21)
    assert clip_bbox((500.0, 500.0, 600.0, 600.0), (80, 80)) is None
    with pytest.raises(ValueError, match="none of the slide"):
        visible_bbox0((5000, 5000), 1.0, (100, 100), _affine((1, 1), (0, 0)), (1000, 1000))


def test_cap_keeps_centre_and_aspect():
    bbox, capped = cap_bbox((0, 0, 8000, 16000), px_per_model_px=2.0, max_model_px=1_000_000)
    y, x, h, w = bbox
    assert capped
    assert (h / 2) * (w / 2) <= 1_000_000
    assert abs(w / h - 2.0) < 0.01
    assert abs((y + h / 2) - 4000) <= 1 and abs((x + w / 2) - 8000) <= 1
    assert cap_bbox((0, 0, 10, 10), 1.0, 1000) == ((0, 0, 10, 10), False)


def test_place_on_image_round_trip():
    scale, translate = place_on_image((0.499, 0.499), (3.0, 4.0), 2.485, (100.0, 200.0))
    np.testing.assert_allclose(scale, (0.499 * 2.485,) * 2)
    np.testing.assert_allclose(translate, (3.0 + 100 * 0.499, 4.0 + 200 * 0.499))
    s0, t0 = to_level0(scale, translate, (0.499, 0.499), (3.0, 4.0))
    np.testing.assert_allclose(s0, (2.485, 2.485))
    np.testing.assert_allclose(t0, (100.0, 200.0))


def test_resample_to_same_grid_is_exact_copy():
    lab = np.arange(12, dtype=np.int32).reshape(3, 4)
    y, x, out = resample_to_grid(lab, 2.0, (10.0, 20.0), 2.0)
    assert (y, x) == (5, 10)
    np.testing.assert_array_equal(out, lab)


def test_resample_to_coarser_grid_and_clip():
    lab = np.zeros((10, 10), np.int32)
    lab[2:6, 2:6] = 7
    y, x, out = resample_to_grid(lab, 1.0, (0.0, 0.0), 2.0, dst_shape=(4, 100))
    assert (y, x) == (0, 0) and out.shape == (4, 5)
    assert set(np.unique(out)) == {0, 7}
    assert (out == 7).sum() == 4  # 4×4 source px -> 2×2 destination px
