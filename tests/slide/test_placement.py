"""GridPlacement: where a label grid sits on the slide (scale, pixel-centre translate, shape)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_glandseg.slide.placement import GridPlacement
from napari_glandseg.slide.view_geometry import place_on_image


def test_corner_and_centre_conventions():
    g = GridPlacement.from_corner(4.0, (100.0, 200.0), (10, 20))
    # pixel 0 covers level-0 [100, 104): its centre (napari, level-0 pixel k centred at k) is 101.5
    assert g.translate == (101.5, 201.5)
    assert g.corner == (100.0, 200.0)
    assert g.shape == (10, 20)
    assert GridPlacement(1.0, (3.0, 4.0)).corner == (3.0, 4.0)  # at level 0 both conventions agree


def test_level0_round_trip():
    g = GridPlacement.from_corner(2.485, (17.0, -3.0), (50, 60))
    pts = np.array([[0.0, 0.0], [10.0, 20.5], [49.0, 59.0]])
    np.testing.assert_allclose(g.to_level0(pts)[0], g.translate)
    np.testing.assert_allclose(g.from_level0(g.to_level0(pts)), pts)
    np.testing.assert_allclose(g.to_level0([[1, 1]])[0], np.asarray(g.translate) + 2.485)


def test_whole_slide_store_grid():
    g = GridPlacement.whole_slide((1000, 1001), 2.5)
    assert g.shape == (400, 401)  # the last pixel overhangs the slide
    assert g.corner == (0.0, 0.0)
    assert g.translate == (0.75, 0.75)
    assert GridPlacement.whole_slide((1, 1), 8.0).shape == (1, 1)
    at = GridPlacement.at_mpp((1000, 1001), 0.5, 1.25)
    assert at == g


@pytest.mark.parametrize("s", [1.0, 2.0, 2.485, 3.7341, 0.9921875, 17.123456789])
def test_whole_slide_translate_is_the_historic_half_shift_exactly(s):
    g = GridPlacement.whole_slide((1000, 1000), s)
    assert g.translate == ((s - 1.0) / 2.0, (s - 1.0) / 2.0)  # bit for bit: stored layers keep their numbers
    assert g.corner == (0.0, 0.0)


def test_of_store_prefers_mpp_then_heights():
    assert GridPlacement.of_store((100, 120), (250, 300), 1.25, 0.5).scale == 2.5
    assert GridPlacement.of_store((100, 120), (250, 300)).scale == 2.5
    assert GridPlacement.of_store((100, 120), (250, 300), None, 0.5).scale == 2.5
    g = GridPlacement.of_store((100, 120), (250, 300), 1.0, 0.5)
    assert g.scale == 2.0 and g.shape == (100, 120) and g.corner == (0.0, 0.0)


def test_for_box_matches_a_region_run():
    f = 1.24 / 0.2527
    g = GridPlacement.for_box((40, 60, 300, 200), f)
    assert g.shape == (max(1, round(300 / f)), max(1, round(200 / f)))
    assert g.translate == (40 + 0.5 * f - 0.5, 60 + 0.5 * f - 0.5)
    assert GridPlacement.for_box((0, 0, 0.1, 0.1), 4.0).shape == (1, 1)


def test_window_index_and_boxes():
    g = GridPlacement.whole_slide((1000, 1000), 2.0)
    w = g.window(10, 20, (5, 6))
    assert w.translate == (g.translate[0] + 20.0, g.translate[1] + 40.0) and w.shape == (5, 6)
    assert w.corner == (20.0, 40.0)
    assert g.nearest_index((20, 41)) == (10, 20)
    assert g.box_to_level0((10, 20, 5, 6)) == (20.0, 40.0, 10.0, 12.0)
    assert w.relative_to(g) == (20.0, 40.0)


def test_napari_placement_round_trip():
    g = GridPlacement.from_corner(2.485, (100.0, 200.0))
    scale, translate = g.on_image((0.499, 0.499), (3.0, 4.0))
    assert (scale, translate) == place_on_image((0.499, 0.499), (3.0, 4.0), g.scale, g.translate)
    back = GridPlacement.from_layer(scale, translate, (0.499, 0.499), (3.0, 4.0), shape=(7, 8))
    assert back.scale == pytest.approx(g.scale)
    assert back.translate == pytest.approx(g.translate)
    assert back.shape == (7, 8)


def test_frozen():
    g = GridPlacement(2.0)
    with pytest.raises(AttributeError):
        g.scale = 3.0  # type: ignore[misc]
    assert math.isclose(g.corner[0], -0.5)
