"""Tile-level tissue skipping (issue 10.1): on a slide with a few real tissue pieces on glass the
model runs only on tiles whose core meets the tissue mask, and the labels are those of a run
that sends every tile of a chunk with tissue through the model."""

from __future__ import annotations

import numpy as np
import pytest
from test_chunk_independence import canonical

from napari_glandseg.inference import SlideRunSettings, segment_slide
from napari_glandseg.inference.region import get_predictor
from napari_glandseg.slide import open_slide
from napari_glandseg.slide.on_tissue import GLASS_MARGIN_UM, GLASS_MASK_MPP

MPP = 0.5
SIDE = 6000
#: level-0 crops of the TCGA slide with glands (y, x, side) and where they go on the glass
PIECES = (((1500, 2100, 800), (300, 300)), ((836, 180, 800), (300, 4500)), ((2767, 3700, 800), (4300, 2500)))


@pytest.fixture(scope="module")
def sparse_slide(shared_data, tmp_path_factory):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from _pyramids import write_pyramid_tiff

    src = open_slide(shared_data / "slides" / "tcga-cr-7395-01a-01-ts1.svs")
    img = np.full((SIDE, SIDE, 3), 242, np.uint8)
    tissue = np.zeros((SIDE, SIDE), bool)
    for (y, x, n), (ty, tx) in PIECES:
        img[ty : ty + n, tx : tx + n] = src.read_region(0, y, x, n, n)
        tissue[ty : ty + n, tx : tx + n] = True
    path = tmp_path_factory.mktemp("sparse") / "sparse.tif"
    write_pyramid_tiff(path, img, n_levels=4, mpp=MPP, compression="zlib")
    return path, tissue


def test_glass_tiles_never_run_and_labels_on_tissue_are_unchanged(sparse_slide, tmp_path):
    path, tissue = sparse_slide
    predictor = get_predictor("glandseg_colon", "cpu", None)  # as the chunk test: more glands on these pieces
    runs = {}
    for skip in (True, False):
        predictor.calls = predictor.tiles = 0
        run = segment_slide(open_slide(path), tmp_path / f"skip{skip}.zarr", predictor,
                            SlideRunSettings(chunk_px=1024, skip_glass=skip))
        runs[skip] = (np.asarray(run.store.levels[0][:]), run, predictor.calls)
    (lab, stats, calls), (lab_all, stats_all, calls_all) = runs[True], runs[False]
    # the model ran on the tiles that meet tissue, each once, and on nothing else
    assert stats.tiles_run == stats.tiles_with_tissue
    assert stats_all.tiles_run > 1.5 * stats.tiles_run and stats_all.tiles_skipped == 0 < stats.tiles_skipped
    assert calls < calls_all
    # the same glands on the tissue, pixel for pixel (store px by their centres on level 0)
    f = stats.downsample
    centres = ((np.arange(lab.shape[0]) + 0.5) * f).astype(int), ((np.arange(lab.shape[1]) + 0.5) * f).astype(int)
    on = tissue[np.minimum(centres[0], SIDE - 1)[:, None], np.minimum(centres[1], SIDE - 1)[None, :]]
    assert len(np.unique(lab[on])) - 1 >= 2  # real glands were found (4 here; bf16 kernels differ by CPU)
    np.testing.assert_array_equal(canonical(np.where(on, lab, 0)), canonical(np.where(on, lab_all, 0)))
    # out on the glass (beyond the glass margin, the glass mask's pixel and some slack) there is
    # nothing in either run: the model's glass "glands" are gone
    grow = int((GLASS_MARGIN_UM + GLASS_MASK_MPP + 24) / MPP)
    near = np.zeros((SIDE, SIDE), bool)
    for (_, _, n), (ty, tx) in PIECES:
        near[max(0, ty - grow) : ty + n + grow, max(0, tx - grow) : tx + n + grow] = True
    far = ~near[np.minimum(centres[0], SIDE - 1)[:, None], np.minimum(centres[1], SIDE - 1)[None, :]]
    assert far.mean() > 0.5
    assert not (lab[far] > 0).any() and not (lab_all[far] > 0).any()
