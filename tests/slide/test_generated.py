"""Generated pyramids of real tissue: TIFF layouts, OME-TIFF, OME-Zarr 0.4/0.5, plain images."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from _pyramids import write_ome_zarr, write_pyramid_tiff
from napari_glandseg.slide import open_slide


@pytest.mark.parametrize("layout", ["subifds", "pages"])
def test_generic_pyramidal_tiff(gen_dir, mosaic, layout):
    path = gen_dir / f"pyr_{layout}.tif"
    write_pyramid_tiff(path, mosaic, layout=layout, mpp=0.5)
    with tifffile.TiffFile(path) as tif:
        refs = [lv.asarray() for lv in tif.series[0].levels]
    with open_slide(path) as s:
        assert s.format == "generic-tiff"
        assert s.level_shapes == [(2000, 3000), (1000, 1500), (500, 750)]
        assert s.downsamples == [1.0, 2.0, 4.0]
        assert s.mpp == pytest.approx(0.5)  # from XResolution in cm
        assert s.tile_px == 256
        for lv, ref in zip(s.levels, refs, strict=True):
            assert lv.chunksize == (256, 256, 3)
            np.testing.assert_array_equal(lv.compute(), ref)
        np.testing.assert_array_equal(s.read_region(1, 100, 200, 300, 400), refs[1][100:400, 200:600])
        # JPEG q75 of real tissue stays close to what was written
        assert np.abs(refs[0].astype(int) - mosaic).mean() < 6


def test_ome_tiff_mpp_and_levels(gen_dir, mosaic):
    path = gen_dir / "pyr.ome.tif"
    write_pyramid_tiff(path, mosaic, ome=True, mpp=0.25)
    with open_slide(path) as s:
        assert s.format == "ome-tiff"
        assert s.name == "pyr"
        assert s.mpp == pytest.approx(0.25)
        assert len(s.levels) == 3
        assert s.read_at_mpp((0, 0, 2000, 3000), 1.0).shape == (500, 750, 3)
        # 1 µm/px from 0.25 is downsample 4: the third level is read
        assert s.best_level_for_downsample(4.0) == 2
        info = s.info()
        assert info["levels"][2]["mpp"] == pytest.approx(1.0)


def test_strip_tiff_gets_square_chunks(gen_dir, mosaic):
    path = gen_dir / "strips.tif"
    tifffile.imwrite(path, mosaic[:1200, :1700], rowsperstrip=16, compression="zlib", metadata=None)
    with open_slide(path) as s:
        assert s.format == "tiff"
        assert s.levels[0].chunksize == (512, 512, 3)
        assert s.mpp is None  # no resolution tags
        np.testing.assert_array_equal(s.levels[0].compute(), mosaic[:1200, :1700])
        assert all(lv.chunksize[0] == lv.chunksize[1] for lv in s.levels[:-1])


def test_resolution_in_inch_and_implausible(gen_dir, mosaic):
    ok = gen_dir / "inch.tif"
    tifffile.imwrite(ok, mosaic[:600, :600], tile=(256, 256), resolution=(25400 / 0.5, 25400 / 0.5), resolutionunit="INCH", metadata=None)
    assert open_slide(ok).mpp == pytest.approx(0.5)
    screen = gen_dir / "screen.tif"  # 72 dpi is a screen default, not a scan resolution
    tifffile.imwrite(screen, mosaic[:600, :600], resolution=(72, 72), resolutionunit="INCH", metadata=None)
    assert open_slide(screen).mpp is None


@pytest.mark.parametrize(
    "version,layout", [("0.4", "cyx"), ("0.4", "yxc"), ("0.5", "cyx"), ("0.5", "tczyx")]
)
def test_ome_zarr(gen_dir, mosaic, version, layout):
    path = gen_dir / f"img_{version}_{layout}.ome.zarr"
    levels = write_ome_zarr(path, mosaic, version=version, layout=layout, mpp=0.5)
    with open_slide(path) as s:
        assert s.format == "ome-zarr"
        assert s.name == f"img_{version}_{layout}"
        assert s.mpp == pytest.approx(0.5)
        assert s.level_shapes == [(2000, 3000), (1000, 1500), (500, 750)]
        assert s.levels[0].chunksize == (256, 256, 3)
        np.testing.assert_array_equal(s.levels[2].compute(), levels[2])
        np.testing.assert_array_equal(s.read_region(0, 1900, 2900, 100, 100), mosaic[1900:, 2900:])


def test_zarr_without_units_has_no_mpp(gen_dir, mosaic):
    path = gen_dir / "nounit.zarr"
    write_ome_zarr(path, mosaic[:800, :800], version="0.5", mpp=None, n_levels=2)
    with open_slide(path) as s:
        assert s.mpp is None and len(s.levels) == 2


def test_plain_png_from_glas(glas_dir):
    path = sorted((glas_dir / "train" / "images").glob("*.png"))[0]
    ref = np.asarray(Image.open(path).convert("RGB"))
    with open_slide(path) as s:
        assert s.format == "image" and s.mpp is None
        assert s.shape == ref.shape[:2]
        np.testing.assert_array_equal(s.levels[0].compute(), ref)
        # smaller side 522 >= 512: one computed level below it
        assert s.level_shapes == [ref.shape[:2], (ref.shape[0] // 2, ref.shape[1] // 2)]
    assert open_slide(path, mpp=0.62).mpp == 0.62


def test_grey_rgba_and_16bit_become_rgb8(tmp_path, mosaic):
    grey = mosaic[:300, :400, 1]
    Image.fromarray(grey).save(tmp_path / "grey.png")
    s = open_slide(tmp_path / "grey.png")
    np.testing.assert_array_equal(s.levels[0].compute(), np.repeat(grey[..., None], 3, axis=2))

    rgba = np.dstack([mosaic[:300, :400], np.full((300, 400), 255, np.uint8)])
    rgba[:, :100, 3] = 0  # transparent: white
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    out = open_slide(tmp_path / "rgba.png").levels[0].compute()
    assert (out[:, :100] == 255).all()
    np.testing.assert_array_equal(out[:, 100:], mosaic[:300, 100:400])

    tifffile.imwrite(tmp_path / "deep.tif", mosaic[:300, :400].astype(np.uint16) * 257, photometric="rgb")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s16 = open_slide(tmp_path / "deep.tif")
    assert any("16-bit" in str(w.message) for w in caught)
    np.testing.assert_array_equal(s16.levels[0].compute(), mosaic[:300, :400])
