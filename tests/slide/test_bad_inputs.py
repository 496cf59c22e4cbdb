"""Every broken or unsupported input is a SlideError that names the file."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile
import zarr

from _pyramids import write_flat_giant_tiff, write_pyramid_tiff
from napari_glandseg.errors import SlideError
from napari_glandseg.slide import open_slide


def _raises(path, what=""):
    return pytest.raises(SlideError, match=re.escape(path.name) + ".*" + what)


def test_missing_path(tmp_path):
    with _raises(tmp_path / "nope.svs", "no such file"):
        open_slide(tmp_path / "nope.svs")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.svs"
    path.write_bytes(b"")
    with _raises(path, "empty"):
        open_slide(path)


def test_text_file_named_svs(tmp_path):
    path = tmp_path / "notes.svs"
    path.write_text("This is a text file, not a slide.\n" * 10)
    with _raises(path):
        open_slide(path)


def test_truncated_tiff_header(tmp_path, cmu_svs):
    path = tmp_path / "cut.svs"
    path.write_bytes(cmu_svs.read_bytes()[:200])
    with _raises(path):
        open_slide(path)


def test_truncated_tiff_data(tmp_path, mosaic):
    full = tmp_path / "full.tif"
    write_pyramid_tiff(full, mosaic[:1024, :1024], n_levels=2)
    path = tmp_path / "halved.tif"
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with _raises(path):
        s = open_slide(path)
        s.levels[0].compute()


def test_tile_offsets_past_end_of_file(tmp_path, mosaic):
    path = tmp_path / "badoffsets.tif"
    write_pyramid_tiff(path, mosaic[:1024, :1024], n_levels=2)
    size = path.stat().st_size
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tag = tif.pages[0].tags["TileOffsets"]
        offsets = list(tag.value)
        offsets[-1] = size + 10_000  # the last (bottom-right) tile of level 0
        tag.overwrite(offsets)
    s = open_slide(path)  # opening reads no tile data
    assert s.metadata["damaged_tiles"] == 1
    s.levels[1].compute()  # other levels are fine
    s.read_region(0, 0, 0, 256, 256)  # and so are the other tiles of level 0
    with _raises(path, "past the end of the file"):
        s.read_region(0, 900, 900, 50, 50)


def test_corrupt_tile_bytes_are_slide_errors(tmp_path, mosaic):
    path = tmp_path / "garbled.tif"
    write_pyramid_tiff(path, mosaic[:512, :512], n_levels=1)
    with tifffile.TiffFile(path) as tif:
        off = tif.pages[0].dataoffsets[0]
    data = bytearray(path.read_bytes())
    data[off : off + 400] = b"\x00" * 400  # wipe the JPEG header of tile 0
    path.write_bytes(bytes(data))
    s = open_slide(path)
    with _raises(path, "cannot read level 0"):
        s.read_region(0, 0, 0, 10, 10)


def test_directory_without_zarr_metadata(tmp_path):
    folder = tmp_path / "folder.zarr"
    folder.mkdir()
    (folder / "readme.txt").write_text("hi")
    with _raises(folder, "zarr"):
        open_slide(folder)


def test_five_channel_images(tmp_path):
    path = tmp_path / "fluo.tif"
    tifffile.imwrite(path, np.zeros((5, 64, 64), np.uint8), photometric="minisblack", metadata=None)
    with _raises(path, r"5 (channels|planes).*\(5, 64, 64\)"):
        open_slide(path)
    contig = tmp_path / "fluo_contig.tif"
    tifffile.imwrite(contig, np.zeros((64, 64, 5), np.uint8), photometric="minisblack", planarconfig="contig", extrasamples=[0, 0, 0, 0])
    with _raises(contig, "5"):
        open_slide(contig)
    z = tmp_path / "fluo.zarr"
    zarr.create_array(str(z), shape=(5, 64, 64), dtype="uint8", chunks=(5, 64, 64))
    with _raises(z, "5 channels"):
        open_slide(z)


def test_zero_size_images(tmp_path):
    path = tmp_path / "zero.tif"
    with pytest.warns(UserWarning):
        tifffile.imwrite(path, np.zeros((0, 0, 3), np.uint8))
    with _raises(path, "empty"):
        open_slide(path)
    z = tmp_path / "zero.zarr"
    zarr.create_array(str(z), shape=(0, 0, 3), dtype="uint8", chunks=(1, 1, 3))
    with _raises(z, "empty"):
        open_slide(z)


def test_bad_arguments(cmu_svs):
    with pytest.raises(SlideError, match="backend"):
        open_slide(cmu_svs, backend="nope")
    with pytest.raises(SlideError, match="mpp"):
        open_slide(cmu_svs, mpp=-1)
    s = open_slide(cmu_svs)
    with pytest.raises(SlideError, match="no level 9"):
        s.read_region(9, 0, 0, 1, 1)


def test_tile_table_that_does_not_match_the_declared_size(tmp_path, capsys):
    """A forged size must not make a 4-tile file look like a 10⁶² px slide padded with zeros."""
    from napari_glandseg.cli import main

    path = tmp_path / "forged.tif"
    tifffile.imwrite(path, np.zeros((512, 512, 3), np.uint8), tile=(256, 256), photometric="rgb",
                     compression="zlib", metadata=None, bigtiff=True)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(1_000_000)
        tif.pages[0].tags["ImageLength"].overwrite(1_000_000)
    with _raises(path, "tile table lists 4 tiles, but a 1000000 × 1000000 px image"):
        open_slide(path)
    assert main(["info", str(path)]) == 2
    assert "tile table" in capsys.readouterr().err


def test_giant_tiff_without_lower_levels_opens_at_once_and_reads_only_what_is_asked(tmp_path, mosaic):
    import tracemalloc

    from napari_glandseg.slide.find_tissue import check_whole_slide_cost

    path = tmp_path / "giant.tif"
    write_flat_giant_tiff(path, mosaic[:1024, :1024])
    tracemalloc.start()
    s = open_slide(path)
    info = s.info()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert info["shape"] == [1_000_000, 1_000_000] and len(info["levels"]) == 12
    assert peak < 200 * 2**20  # was 2 GB (dask rechunk graphs); how long it takes is benchmarks/' business
    # small reads of any level touch only the top-left tile (all others are junk)
    np.testing.assert_array_equal(s.read_region(0, 0, 0, 64, 64), s.levels[0][:64, :64].compute())
    low = s.read_region(3, 0, 0, 32, 32)  # 256² level-0 px, averaged 8×
    ref = mosaic[:256, :256].astype(float).reshape(32, 8, 32, 8, 3).mean(axis=(1, 3))
    assert np.abs(low - ref).mean() < 4  # JPEG loss and rounding only
    with _raises(path, "level 0"):
        s.read_region(0, 5000, 5000, 10, 10)
    # a whole-slide tissue mask would decode 10¹² px: refused, saying why and what to do
    with _raises(path, r"decodes 1e\+12 px .*no lower levels.*Refused.*region"):
        check_whole_slide_cost(s)
