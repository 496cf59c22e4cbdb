"""The two real Aperio SVS files: levels, metadata, pixels equal to tifffile's own read."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_glandseg.errors import SlideError
from napari_glandseg.slide import open_slide


def test_tcga_two_level_jpeg2000_without_mpp(tcga_svs):
    with open_slide(tcga_svs) as s:
        assert s.format == "aperio-svs"
        assert s.level_shapes == [(3567, 4443), (1783, 2221)]
        assert s.downsamples[1] == pytest.approx(2.0005, abs=1e-3)
        assert s.mpp is None and s.magnification is None
        assert s.metadata["compression"] == "APERIO_JP2000_RGB"
        assert list(s.associated) == ["thumbnail"]
        assert s.associated["thumbnail"]().shape == (768, 956, 3)
        for lv in s.levels:
            assert lv.dtype == np.uint8 and lv.shape[2] == 3
            assert lv.chunksize[:2] == (256, 256)


def test_tcga_read_region_equals_tifffile(tcga_svs):
    with tifffile.TiffFile(tcga_svs) as tif:
        ref1 = tif.series[0].levels[1].asarray()
        ref0 = tif.series[0].levels[0].asarray()
    with open_slide(tcga_svs) as s:
        np.testing.assert_array_equal(s.levels[1].compute(), ref1)
        np.testing.assert_array_equal(s.read_region(0, 1000, 2000, 300, 700), ref0[1000:1300, 2000:2700])


def test_tcga_read_at_mpp_needs_mpp(tcga_svs):
    with open_slide(tcga_svs) as s:
        with pytest.raises(SlideError, match="tcga-cr-7395.*mpp"):
            s.read_at_mpp((0, 0, 512, 512), 1.0)
    with open_slide(tcga_svs, mpp=0.25) as s:
        assert s.mpp == 0.25
        out = s.read_at_mpp((100, 200, 1000, 1500), 0.5)
        assert out.shape == (500, 750, 3) and out.dtype == np.uint8
        # 0.5 µm/px from 0.25 is downsample 2: level 1 is used
        assert s.best_level_for_downsample(2.0) == 1


def test_cmu_mpp_magnification_associated(cmu_svs):
    with open_slide(cmu_svs) as s:
        assert s.format == "aperio-svs"
        assert s.shape == (2967, 2220)
        assert s.mpp == pytest.approx(0.499)
        assert s.magnification == 20
        assert s.native_levels == 1 and s.tile_px == 240
        # one stored level plus computed 2× levels down to < 512 px
        assert s.level_shapes[1:] == [(1483, 1110), (741, 555), (370, 277)]
        assert s.downsamples == [1.0, 2.0, 4.0, 8.0]
        assert set(s.associated) == {"thumbnail", "label", "macro"}
        assert s.associated["label"]().shape == (463, 387, 3)
        assert s.associated["macro"]().shape == (431, 1280, 3)
        assert s.levels[0].chunksize[:2] == (240, 240)
        for lv in s.levels[1:]:
            assert lv.chunksize[0] == lv.chunksize[1] or lv.chunksize[:2] == lv.shape[:2]


def test_cmu_pixels_and_outside_white(cmu_svs):
    ref = tifffile.imread(cmu_svs)
    with open_slide(cmu_svs) as s:
        np.testing.assert_array_equal(s.read_region(0, 17, 33, 500, 401), ref[17:517, 33:434])
        edge = s.read_region(0, 2900, 2100, 200, 300)
        np.testing.assert_array_equal(edge[:67, :120], ref[2900:, 2100:])
        assert (edge[67:] == 255).all() and (edge[:, 120:] == 255).all()
        # level 1 is the 2×2 mean of level 0
        l1 = s.read_region(1, 10, 10, 4, 4).astype(int)
        manual = ref[20:28, 20:28].astype(int).reshape(4, 2, 4, 2, 3).mean(axis=(1, 3))
        assert np.abs(l1 - manual).max() <= 1


def test_cmu_read_at_mpp_shapes(cmu_svs):
    with open_slide(cmu_svs) as s:
        assert s.read_at_mpp((0, 0, 1000, 1000), 0.499).shape == (1000, 1000, 3)
        assert s.read_at_mpp((0, 0, 1000, 1000), 1.0).shape == (499, 499, 3)
        assert s.read_at_mpp((10.5, 20.25, 999, 1001), 0.25).shape == (1994, 1998, 3)
        assert s.read_at_mpp((0, 0, 2967, 2220), 4.0).shape == (370, 277, 3)
        # at its own resolution and on whole pixels, it is the stored pixels
        np.testing.assert_array_equal(s.read_at_mpp((5, 6, 50, 60), 0.499), s.read_region(0, 5, 6, 50, 60))


def test_cmu_openslide_backend_matches_tifffile(cmu_svs):
    pytest.importorskip("openslide")
    ref = tifffile.imread(cmu_svs)
    with open_slide(cmu_svs, backend="openslide") as s:
        assert s.format == "openslide"
        assert s.mpp == pytest.approx(0.499) and s.magnification == 20
        assert {"label", "macro", "thumbnail"} <= set(s.associated)
        region = s.read_region(0, 100, 200, 300, 400)
        assert np.abs(region.astype(int) - ref[100:400, 200:600]).mean() < 2
        assert s.levels[0].chunksize[0] == s.levels[0].chunksize[1]


def test_tcga_openslide_backend(tcga_svs):
    pytest.importorskip("openslide")
    with open_slide(tcga_svs, backend="openslide") as s:
        assert s.level_shapes == [(3567, 4443), (1783, 2221)]
        low = s.levels[1][:256, :256].compute()
    with tifffile.TiffFile(tcga_svs) as tif:
        ref = tif.series[0].levels[1].asarray()[:256, :256]
    assert np.abs(low.astype(int) - ref).mean() < 3
