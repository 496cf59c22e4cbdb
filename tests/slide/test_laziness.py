"""Opening a 100,000² slide reads no level-0 pixels: its level-0 tiles are junk bytes."""

from __future__ import annotations

import numpy as np
import psutil
import pytest

from _pyramids import write_huge_junk_tiff
from napari_glandseg.errors import SlideError
from napari_glandseg.slide import open_slide
from napari_glandseg.slide.find_tissue import tissue_mask


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    path = tmp_path_factory.mktemp("huge") / "huge.tif"
    write_huge_junk_tiff(path, side=100_000)
    return path


def test_open_and_low_levels_never_touch_level0(huge):
    rss = psutil.Process().memory_info().rss
    s = open_slide(huge)
    assert s.shape == (100_000, 100_000)
    assert s.level_shapes[-1] == (390, 390)
    assert s.levels[0].chunksize == (512, 512, 3)
    low = s.levels[-1].compute()
    assert low.shape == (390, 390, 3) and 100 < low.mean() < 230
    s.read_region(len(s.levels) - 2, 0, 0, 1000, 1000)
    s.info()
    assert psutil.Process().memory_info().rss - rss < 300e6
    # the proof that nothing above read level 0: reading it fails loudly, naming the file
    with pytest.raises(SlideError, match="huge.tif.*level 0"):
        s.read_region(0, 50_000, 50_000, 10, 10)


def test_tissue_mask_on_huge_slide_reads_low_levels_only(huge):
    s = open_slide(huge, mpp=0.25)
    mask, ds = tissue_mask(s, mask_mpp=64.0)
    assert ds == 256.0
    assert mask.shape == (391, 391) and mask.dtype == np.bool_
