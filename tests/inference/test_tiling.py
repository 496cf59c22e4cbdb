"""Tile grid, blending window and seam-free blending."""

from __future__ import annotations

import numpy as np
import pytest
from _inference_models import ConstantModel

from napari_glandseg.inference.predictor import Predictor
from napari_glandseg.inference.tiling import (
    BlendAccumulator,
    TileGrid,
    predict_tiled,
    tile_starts,
    window_2d,
)


@pytest.mark.parametrize("length", [1, 50, 128, 129, 200, 240, 241, 1000])
def test_tiles_cover_everything_with_the_overlap(length):
    starts = tile_starts(length, 128, 16)
    assert starts[0] == 0
    covered = np.zeros(max(length, 128), bool)
    for s in starts:
        covered[s : s + 128] = True
        assert s + 128 <= max(length, 128)
    assert covered.all()
    for a, b in zip(starts, starts[1:], strict=False):
        assert b - a <= 128 - 16  # at least the overlap everywhere


def test_window_never_zero_and_flat_in_the_middle():
    w = window_2d(128, 32)
    assert w.min() > 0
    assert w[32:96, 32:96].min() == 1.0
    assert w[0, 0] < 0.01
    assert not w.flags.writeable


def test_bad_tile_settings_raise():
    with pytest.raises(ValueError, match="overlap_px"):
        tile_starts(100, 64, 64)


@pytest.mark.parametrize("shape", [(37, 50), (128, 128), (300, 200), (257, 390)])
def test_constant_model_gives_a_constant_map_without_seams(shape):
    pred = Predictor(ConstantModel(), device="cpu", batch_size=3, amp=False)
    rgb = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    probs = predict_tiled(rgb, pred.predict, n_classes=3, tile_px=128, overlap_px=16, batch_size=3)
    assert probs.shape == (3, *shape)
    expect = np.exp([0.3, 1.1, -0.7]) / np.exp([0.3, 1.1, -0.7]).sum()
    np.testing.assert_allclose(probs, np.broadcast_to(expect[:, None, None], probs.shape), atol=1e-5)


def test_accumulator_weights_are_a_convex_combination():
    grid = TileGrid(300, 260, 128, 32)
    acc = BlendAccumulator(1, 300, 260, 128, 32)
    for y, x in grid.positions():
        acc.add(np.full((1, 128, 128), 2.5, np.float32), y, x)
    assert acc.weight.min() > 0
    np.testing.assert_allclose(acc.result(), 2.5, rtol=1e-6)


def test_progress_and_cancel():
    import threading

    from napari_glandseg.errors import Cancelled

    pred = Predictor(ConstantModel(), device="cpu", batch_size=2, amp=False)
    rgb = np.zeros((400, 400, 3), np.uint8)
    seen = []
    predict_tiled(rgb, pred.predict, n_classes=3, tile_px=128, overlap_px=16, batch_size=2,
                  progress=lambda d, t, m: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] == len(TileGrid(400, 400, 128, 16))
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        predict_tiled(rgb, pred.predict, n_classes=3, tile_px=128, overlap_px=16, batch_size=2, cancel=ev)
