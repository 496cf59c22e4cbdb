"""The slide-wide tile grid of whole-slide runs, and the chunks' tile plans."""

from __future__ import annotations

import numpy as np

from napari_glandseg.inference.stitch import chunk_grid
from napari_glandseg.inference.tile_jobs import box_keys, consumers, plan_work, tissue_tiles
from napari_glandseg.inference.tiling import SlideTiles


def test_span_is_exactly_the_tiles_meeting_a_range_and_cores_tile_the_line():
    grid = SlideTiles(384, 64)
    for lo, hi in [(0, 1), (0, 320), (255, 257), (-300, 2500), (1000, 1001), (639, 640)]:
        meeting = [i for i in range(-10, 20) if grid.origin(i) < hi and grid.origin(i) + 384 > lo]
        assert list(grid.span(lo, hi)) == meeting
    cores = [grid.core(i) for i in range(-3, 10)]
    assert all(a[1] == b[0] for a, b in zip(cores, cores[1:], strict=False))  # no gap, no overlap
    for i in range(-3, 10):  # a core lies inside its tile, half the overlap from each end
        lo, hi = grid.core(i)
        assert lo - grid.origin(i) == 32 and grid.origin(i) + 384 - hi == 32


def test_consumers_are_the_chunks_whose_padded_box_a_tile_meets():
    grid, shape = SlideTiles(128, 16), (700, 850)
    for chunk_px, margin in [(128, 256), (256, 64), (300, 100)]:
        users: dict = {}
        for g in chunk_grid(shape, chunk_px, margin):
            for key in box_keys(grid, g):
                users.setdefault(key, set()).add((g.cy, g.cx))
        assert all(set(consumers(grid, k, chunk_px, margin, shape)) == u for k, u in users.items())


def test_only_tiles_with_tissue_in_their_core_run_and_chunks_without_any_are_skipped():
    grid, shape = SlideTiles(128, 16), (1000, 1000)  # store px = level-0 px / 2
    mask = np.zeros((125, 125), bool)  # 16 level-0 px per mask px
    mask[10:20, 10:20] = True  # level-0 160..320: store 80..160
    tissue = tissue_tiles(grid, shape, mask, 16.0, 2.0)
    assert tissue.count == sum(tissue(i, j) for i in range(-2, 12) for j in range(-2, 12))
    (ti, tj) = np.nonzero(tissue.grid)
    cores = [grid.core(i + tissue.i0) for i in ti]
    assert all(lo < 160 and hi > 80 for lo, hi in cores)  # each tile's core meets store 80..160
    works = plan_work(chunk_grid(shape, 256, 64), grid, tissue)
    assert [w.runs_model for w in works].count(True) == 1 and works[0].runs_model
    assert works[0].tissue == {k for k in box_keys(grid, works[0].geom) if tissue(*k)}
