"""Putting a guided result on a labels grid: resampling, new vs redrawn label, exclusions."""

from __future__ import annotations

import numpy as np
import pytest

from _guided_models import gland_everywhere
from napari_glandseg.interactive import GlandWindow, paste, segment_gland_on_slide
from napari_glandseg.interactive.edit import gland_under, merge_gland, place_gland, window_on_grid
from napari_glandseg.slide.placement import GridPlacement


def block_window(n: int, box: tuple[int, int, int, int], origin=(0.0, 0.0), ppm: float = 1.0) -> GlandWindow:
    """An n×n window whose gland is the model-pixel rectangle ``box`` (y, x, h, w)."""
    mask = np.zeros((n, n), bool)
    y, x, h, w = box
    mask[y:y + h, x:x + w] = True
    return GlandWindow(mask, np.where(mask, 0.9, 0.1).astype(np.float32), origin, ppm)


def test_grid_points_round_trip():
    grid = GridPlacement(2.0, (0.5, 10.5), (100, 100))
    pts = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(grid.to_level0(pts), [[6.5, 18.5], [0.5, 10.5]])
    np.testing.assert_allclose(grid.from_level0(grid.to_level0(pts)), pts)


def test_same_resolution_is_an_exact_copy():
    found = block_window(32, (4, 6, 5, 7), origin=(10.0, 20.0))
    win, mask = window_on_grid(found, GridPlacement(1.0, (0.0, 0.0), (100, 100)))
    assert win == (slice(14, 19), slice(26, 33)) and mask.all()


def test_finer_grid_scales_the_gland_up():
    # model px k covers level-0 [8 + 2k, 10 + 2k): model rows 2..3 → level-0 rows 12..15
    win, mask = window_on_grid(block_window(16, (2, 2, 2, 2), origin=(8.0, 8.0), ppm=2.0), GridPlacement(1.0, (0.0, 0.0), (64, 64)))
    assert win == (slice(12, 16), slice(12, 16)) and mask.all()


def test_coarser_offset_grid():
    # grid px i covers level-0 [100 + 4i, 104 + 4i) (centre 101.5 + 4i); gland level-0 rows 108..115
    grid = GridPlacement(4.0, (101.5, 101.5), (50, 50))
    win, mask = window_on_grid(block_window(64, (8, 8, 8, 8), origin=(100.0, 100.0)), grid)
    assert win == (slice(2, 4), slice(2, 4)) and mask.all()


def test_window_outside_the_grid_gives_nothing():
    assert window_on_grid(block_window(16, (2, 2, 4, 4), origin=(500.0, 500.0)), GridPlacement(1.0, (0.0, 0.0), (64, 64))) is None
    assert window_on_grid(block_window(16, (0, 0, 0, 0)), GridPlacement(1.0, (0.0, 0.0), (64, 64))) is None


def test_gland_under_takes_the_majority():
    labels = np.zeros((10, 10), np.int32)
    labels[2:5, 2:5] = 7
    assert gland_under(labels, [(3, 3)]) == 7
    assert gland_under(labels, [(3, 3), (8, 8), (9, 9)]) == 0
    assert gland_under(labels, [(-5, 3)]) == 0


def test_merge_redraws_one_gland_and_spares_the_others():
    labels = np.zeros((8, 8), np.int32)
    labels[0:3, 0:3] = 1
    labels[5:8, 5:8] = 2
    mask = np.zeros((8, 8), bool)
    mask[1:7, 1:7] = True
    out = merge_gland(labels, mask, 1)
    assert out[0, 0] == 0, "gland 1's pixels outside the new outline go"
    assert out[4, 4] == 1 and out[6, 6] == 2, "gland 2 is not overwritten"
    assert labels[0, 0] == 1, "the input is not modified"


def test_place_adds_a_new_label_on_background():
    labels = np.zeros((60, 60), np.int32)
    labels[40:50, 40:50] = 3
    edit = place_gland(labels, block_window(32, (10, 10, 8, 8)), GridPlacement(1.0, (0.0, 0.0), labels.shape), [(14, 14)])
    assert edit.added and edit.label == 4
    out = labels.copy()
    out[edit.window] = edit.new
    assert (out == 4).sum() == 64 and (out == 3).sum() == 100


def test_place_redraws_the_clicked_gland_with_its_label():
    labels = np.zeros((60, 60), np.int32)
    labels[5:30, 5:12] = 2  # a wrong outline reaching far outside the new one
    edit = place_gland(labels, block_window(32, (8, 8, 10, 10)), GridPlacement(1.0, (0.0, 0.0), labels.shape), [(10, 10)])
    assert not edit.added and edit.label == 2
    out = labels.copy()
    out[edit.window] = edit.new
    assert set(np.unique(out)) == {0, 2} and (out == 2).sum() == 100 and out[28, 6] == 0


def test_exclusion_pixels_stay_out_on_any_grid():
    found = block_window(64, (0, 0, 64, 64))  # everything is gland
    for scale in (1.0, 8.0):
        grid = GridPlacement(scale, (0.0, 0.0), (int(64 / scale), int(64 / scale)))
        labels = np.zeros(grid.shape, np.int32)
        ex = grid.from_level0([(30.0, 30.0)])
        edit = place_gland(labels, found, grid, [(1, 1)], ex)
        i, j = np.floor(ex[0] + 0.5).astype(int)
        assert edit.new[i - edit.window[0].start, j - edit.window[1].start] == 0


def test_nothing_to_place_on_other_glands_only():
    labels = np.ones((20, 20), np.int32)
    labels[0, 0] = 0
    found = block_window(20, (5, 5, 4, 4))
    assert place_gland(labels, found, GridPlacement(1.0, (0.0, 0.0), labels.shape), [(0, 0)]) is None


def test_on_a_real_slide_matches_paste(cmu_svs):
    from napari_glandseg.slide import open_slide

    slide = open_slide(cmu_svs)
    found = segment_gland_on_slide(slide, [(1200, 1000)], [(1300, 1100)], model=gland_everywhere())
    assert found.mask.shape[0] * found.px_per_model < min(slide.shape), "only a window of the slide is read"
    grid = GridPlacement(1.0, (0.0, 0.0), tuple(slide.shape))
    win, mask = window_on_grid(found, grid)
    on_grid = np.zeros(grid.shape, bool)
    on_grid[win] = mask
    pasted = paste(found, grid.shape)
    assert (on_grid ^ pasted).sum() / pasted.sum() < 0.01
    assert on_grid[1200, 1000] and not on_grid[1300, 1100]
    # a coarser layer over part of the slide: same gland, its pixels at that layer's scale
    coarse = GridPlacement(4.0, (501.5, 301.5), (400, 400))
    cwin, cmask = window_on_grid(found, coarse)
    assert cmask.sum() * 16 == pytest.approx(on_grid[500:2100, 300:1900].sum(), rel=0.02)


def test_a_click_never_spills_onto_glass(tmp_path, shared_data):
    """A model that calls everything gland (as the real ones call white glass gland): the gland
    found at a click on a tissue patch stops at the glass instead of filling the window."""
    from PIL import Image

    from napari_glandseg.slide import open_slide
    from napari_glandseg.slide.on_tissue import GLASS, on_tissue

    glas = sorted((shared_data / "glas" / "train" / "images").glob("*.png"))[0]
    img = np.full((3000, 3000, 3), 242, np.uint8)
    img[1000:1200, 1000:1200] = np.asarray(Image.open(glas).convert("RGB"))[100:300, 100:300]
    Image.fromarray(img).save(tmp_path / "patch.png")
    slide = open_slide(tmp_path / "patch.png", mpp=1.0)
    found = segment_gland_on_slide(slide, [(1100, 1100)], model=gland_everywhere())
    assert found.mask.shape[0] * found.px_per_model > 300  # the window reaches well onto the glass
    on = on_tissue(found.mask.shape, slide, found.origin, found.px_per_model, GLASS)
    assert found.mask.any() and not (found.mask & ~on).any()
    pasted = paste(found, slide.shape)
    assert pasted[1020:1180, 1020:1180].mean() > 0.9  # the patch
    ys, xs = np.nonzero(pasted)
    assert ys.min() > 1000 - 30 and ys.max() < 1200 + 30 and xs.min() > 1000 - 30 and xs.max() < 1200 + 30


def test_a_refine_keeps_the_gland_beyond_the_window_the_model_saw():
    """A gland larger than the refining window: only the part the model saw is redrawn."""
    grid = GridPlacement(1.0, (0.0, 0.0), (200, 100))
    labels = np.zeros((200, 100), np.int32)
    labels[10:190, 20:80] = 5
    mask = np.zeros((60, 60), bool)
    mask[:, 10:50] = True  # the window's part of the gland: narrower than before
    found = GlandWindow(mask, mask.astype(np.float32), (0.0, 20.0), 1.0)  # level-0 rows 0..60
    edit = place_gland(labels, found, grid, [], [], label=5)
    new = labels.copy()
    new[edit.window] = edit.new
    assert edit.label == 5 and not edit.added
    assert (new[70:190, 20:80] == 5).all(), "beyond the window the gland is as it was"
    assert (new[10:60, 20:30] == 0).all() and (new[10:60, 30:70] == 5).all(), "inside, the new outline"
