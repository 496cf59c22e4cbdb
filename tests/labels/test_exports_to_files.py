"""Exports: training packages (round trip through the reader), OME-TIFF / OME-Zarr masks, CSV."""

from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from napari_glandseg.errors import GlandsegError
from napari_glandseg.labels.export import (
    export_training_package,
    read_training_package,
    sha256_file,
    write_measurements_csv,
    write_ome_tiff_mask,
    write_ome_zarr_labels,
)
from napari_glandseg.labels.metrics import to_instances
from napari_glandseg.labels.store import LabelStore
from napari_glandseg.slide import open_slide
from napari_glandseg.slide.resample import resize_labels


@pytest.fixture
def glas(shared_data):
    image = sorted((shared_data / "glas" / "train" / "images").glob("*.png"))[0]
    mask = shared_data / "glas" / "train" / "masks" / image.name
    return image, to_instances(np.asarray(Image.open(mask)))


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renumbering of the instances."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(pairs[0])) == len(np.unique(pairs[1])) and ((pairs[0] == 0) == (pairs[1] == 0)).all()


def test_package_from_a_labels_array_at_half_resolution(glas, tmp_path):
    image_path, labels = glas
    slide = open_slide(image_path, mpp=0.62)
    h, w = labels.shape
    regions = [{"bounds": [0, 0, h // 2, w // 2], "time": "t1", "model": "m"},
               {"bounds": [h // 2, w // 3, h, w], "time": "t2", "model": "m"}]  # runs past the edge: clipped
    out = export_training_package(tmp_path / "pkg", slide, labels, regions, mpp=1.24, model_name="m")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mpp"] == 1.24 and manifest["model"] == "m"
    assert manifest["slide"]["sha256"] == sha256_file(image_path) and manifest["slide"]["mpp"] == 0.62
    assert [r["bounds"] for r in manifest["regions"]] == [[0, 0, h // 2, w // 2], [h // 2, w // 3, h - h // 2, w - w // 3]]
    items = read_training_package(out)
    assert len(items) == 2
    rgb = np.asarray(Image.open(image_path).convert("RGB"))
    for item, (y, x, hh, ww) in zip(items, [r["bounds"] for r in manifest["regions"]], strict=True):
        oh, ow = round(hh / 2), round(ww / 2)
        assert item["image"].shape == (oh, ow, 3) and item["mask"].shape == (oh, ow) and item["mpp"] == 1.24
        assert (item["valid"] > 0).all()
        assert _same_partition(item["mask"], resize_labels(labels[y : y + hh, x : x + ww], oh, ow))
        expected = np.asarray(Image.fromarray(rgb[y : y + hh, x : x + ww]).resize((ow, oh), Image.Resampling.BILINEAR))
        assert np.abs(item["image"].astype(int) - expected).mean() < 3  # the same tissue, resampled


def test_package_from_a_store_uses_its_grid_and_review_log(glas, tmp_path):
    image_path, labels = glas
    slide = open_slide(image_path, mpp=0.62)
    small = resize_labels(labels, labels.shape[0] // 2, labels.shape[1] // 2)
    store = LabelStore.create(tmp_path / "s.zarr", small.shape, mpp=1.24, chunk_px=128)
    store.write_region(10, 20, small[10:110, 20:180], reviewed_by="me", model="glandseg_small")
    out = export_training_package(tmp_path / "pkg", slide, store, store.reviewed_regions(), model_name="glandseg_small")
    [item] = read_training_package(out)
    assert item["mask"].shape == (100, 160) and item["mpp"] == 1.24
    assert _same_partition(item["mask"], small[10:110, 20:180])
    review = json.loads((out / "manifest.json").read_text())["regions"][0]
    assert review["review"]["reviewed_by"] == "me" and review["bounds_level0"] == [20, 40, 200, 320]


def test_package_errors_name_the_problem(glas, tmp_path):
    image_path, labels = glas
    slide = open_slide(image_path, mpp=0.62)
    with pytest.raises(GlandsegError, match="no reviewed regions"):
        export_training_package(tmp_path / "a", slide, labels, [], mpp=1.24)
    with pytest.raises(GlandsegError, match="outside"):
        export_training_package(tmp_path / "b", slide, labels, [{"bounds": [5000, 5000, 10, 10]}], mpp=1.24)
    assert not (tmp_path / "b").exists()  # nothing half-written
    with pytest.raises(GlandsegError, match="manifest.json"):
        read_training_package(tmp_path)
    out = export_training_package(tmp_path / "c", slide, labels, [{"bounds": [0, 0, 64, 64]}], mpp=1.24)
    (out / "masks" / "region_0000.png").unlink()
    with pytest.raises(GlandsegError, match="region_0000.png"):
        read_training_package(out)


def _blobs() -> np.ndarray:
    labels = np.zeros((1500, 1100), np.int32)
    labels[100:300, 200:500] = 3
    labels[900:1400, 50:300] = 70000  # beyond uint16
    return labels


def test_ome_tiff_mask_is_pyramidal_with_physical_size(tmp_path):
    import tifffile

    labels = _blobs()
    path = write_ome_tiff_mask(tmp_path / "m.ome.tif", labels, 0.5)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        series = tif.series[0]
        np.testing.assert_array_equal(series.levels[0].asarray(), labels)
        assert [lv.shape for lv in series.levels] == [(1500, 1100), (750, 550), (375, 275)]
        np.testing.assert_array_equal(series.levels[1].asarray(), labels[::2, ::2])
        assert 'PhysicalSizeX="0.5"' in tif.ome_metadata


def test_ome_zarr_labels_round_trip(tmp_path):
    labels = _blobs()
    path = write_ome_zarr_labels(tmp_path / "m.ome.zarr", labels, 0.5)
    store = LabelStore.open(path, read_only=True)
    np.testing.assert_array_equal(store.levels[0][:], labels)
    np.testing.assert_array_equal(store.levels[1][:], labels[::2, ::2])
    assert store.mpp == 0.5


def test_a_failed_export_leaves_the_previous_file(tmp_path):
    good = write_ome_tiff_mask(tmp_path / "m.ome.tif", _blobs(), 0.5)
    before = good.read_bytes()
    with pytest.raises(GlandsegError, match="m.ome.tif"):
        write_ome_tiff_mask(good, np.zeros((4, 4), np.float32), 0.5)
    with pytest.raises(GlandsegError, match="µm/px"):
        write_ome_tiff_mask(good, _blobs(), None)
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ome.tif"]  # no temporary left behind


def test_measurements_csv(tmp_path):
    rows = [{"label": 2, "area_um2": 12.3456789, "perimeter_um": 5.0, "extra": "x"}, {"label": 5, "area_um2": 1.0}]
    path = write_measurements_csv(tmp_path / "t.csv", rows)
    read = list(csv.DictReader(open(path, encoding="utf-8")))
    assert [r["label"] for r in read] == ["2", "5"]
    assert float(read[0]["area_um2"]) == pytest.approx(12.3457, rel=1e-5) and read[0]["extra"] == "x"
    header = next(csv.reader(open(path, encoding="utf-8")))
    assert header[0] == "label" and header[-1] == "extra"


def test_exports_never_delete_what_they_did_not_write(glas, tmp_path):
    """A folder export onto a folder with the user's files is refused; an earlier export is replaced."""
    image_path, labels = glas
    slide = open_slide(image_path, mpp=0.62)
    regions = [{"bounds": [0, 0, 64, 64]}]
    for name in ("pkg", "m.ome.zarr"):
        (tmp_path / name / "slides").mkdir(parents=True)
        (tmp_path / name / "notes.txt").write_text("mine")
    with pytest.raises(GlandsegError, match=r"pkg: not empty .*holds notes.txt, slides"):
        export_training_package(tmp_path / "pkg", slide, labels, regions, mpp=1.24)
    with pytest.raises(GlandsegError, match=r"m.ome.zarr: not empty .*notes.txt"):
        write_ome_zarr_labels(tmp_path / "m.ome.zarr", _blobs(), 0.5)
    for name in ("pkg", "m.ome.zarr"):
        assert (tmp_path / name / "notes.txt").read_text() == "mine" and (tmp_path / name / "slides").is_dir()
    # an earlier export of the same kind is replaced; a store with a review journal is not
    out = export_training_package(tmp_path / "pkg2", slide, labels, regions, mpp=1.24)
    export_training_package(out, slide, labels, [{"bounds": [0, 0, 32, 32]}], mpp=1.24)
    assert read_training_package(out)[0]["mask"].shape == (16, 16)
    (out / "images" / "mine.png").write_bytes(b"")
    with pytest.raises(GlandsegError, match="mine.png"):
        export_training_package(out, slide, labels, regions, mpp=1.24)
    zarr_out = write_ome_zarr_labels(tmp_path / "z.ome.zarr", _blobs(), 0.5)
    write_ome_zarr_labels(zarr_out, _blobs()[:600], 0.5)
    assert LabelStore.open(zarr_out, read_only=True).shape == (600, 1100)
    store = LabelStore.create(tmp_path / "s.zarr", (64, 64), mpp=0.5)
    store.write_region(0, 0, np.ones((8, 8), np.int32))
    with pytest.raises(GlandsegError, match="glandseg_reviews"):
        write_ome_zarr_labels(store.path, _blobs(), 0.5)
    assert len(LabelStore.open(store.path, read_only=True).reviewed_regions()) == 1


def test_exports_keep_user_things_hidden_in_look_alike_places(glas, tmp_path):
    """Folders named like region PNGs, a file where a package folder goes, a sibling named like our
    old copy, an OME-Zarr that is not our label export, a user file among the zarr levels: all kept."""
    import zarr

    image_path, labels = glas
    slide = open_slide(image_path, mpp=0.62)
    regions = [{"bounds": [0, 0, 64, 64]}]
    pkg = export_training_package(tmp_path / "pkg", slide, labels, regions, mpp=1.24)
    (pkg / "images" / "region_9999.png").mkdir()
    (pkg / "images" / "region_9999.png" / "thesis.docx").write_text("mine")
    with pytest.raises(GlandsegError, match="region_9999.png"):
        export_training_package(pkg, slide, labels, regions, mpp=1.24)
    pkg2 = export_training_package(tmp_path / "pkg2", slide, labels, regions, mpp=1.24)
    shutil.rmtree(pkg2 / "valid")
    (pkg2 / "valid").write_text("mine")
    with pytest.raises(GlandsegError, match="valid"):
        export_training_package(pkg2, slide, labels, regions, mpp=1.24)
    (tmp_path / ".pkg3.old").mkdir()
    (tmp_path / ".pkg3.old" / "keep.txt").write_text("mine")
    pkg3 = export_training_package(tmp_path / "pkg3", slide, labels, regions, mpp=1.24)
    export_training_package(pkg3, slide, labels, regions, mpp=1.24)  # replacing an export of ours
    assert (tmp_path / ".pkg3.old" / "keep.txt").read_text() == "mine"
    image = zarr.open_group(tmp_path / "image.ome.zarr", mode="w")
    image.attrs["ome"] = {"multiscales": [{"datasets": [{"path": "0"}]}]}  # an OME-Zarr image, not ours
    image.create_array("0", shape=(4, 4), dtype="uint8")
    with pytest.raises(GlandsegError, match="image.ome.zarr: not empty"):
        write_ome_zarr_labels(tmp_path / "image.ome.zarr", _blobs(), 0.5)
    ours = write_ome_zarr_labels(tmp_path / "z.ome.zarr", _blobs(), 0.5)
    (ours / "0" / "mine.csv").write_text("mine")
    with pytest.raises(GlandsegError, match="mine.csv"):
        write_ome_zarr_labels(ours, _blobs(), 0.5)
    assert (ours / "0" / "mine.csv").read_text() == "mine"


def test_one_store_reached_by_two_paths_has_one_lock(tmp_path):
    from napari_glandseg._lock import lock_file

    store = LabelStore.create(tmp_path / "s.zarr", (64, 64), mpp=0.5)
    (tmp_path / "alias.zarr").symlink_to(store.path)
    assert lock_file(tmp_path / "alias.zarr") == lock_file(store.path)


def _tiny_package(folder, **manifest):
    """A one-region package of 16² PNGs with the given manifest fields."""
    for sub, arr in (("images", np.full((16, 16, 3), 200, np.uint8)), ("masks", np.ones((16, 16), np.uint16)),
                     ("valid", np.full((16, 16), 255, np.uint8))):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(folder / sub / "r.png")
    entry = {"name": "r", "image": "images/r.png", "mask": "masks/r.png", "valid": "valid/r.png"}
    body = {"format": "glandseg-training-package", "version": 1, "mpp": 1.24, "regions": [entry], **manifest}
    (folder / "manifest.json").write_text(json.dumps(body))
    return folder


def test_a_package_reads_only_its_own_files(tmp_path):
    """Absolute paths, ``..`` and links out of the package are refused; a FIFO does not hang."""
    import os

    secret = tmp_path / "secret.png"
    Image.fromarray(np.full((16, 16), 7, np.uint16)).save(secret)
    pkg = _tiny_package(tmp_path / "pkg")
    assert read_training_package(pkg)[0]["mask"].max() == 1
    (pkg / "masks" / "link.png").symlink_to(secret)
    os.mkfifo(pkg / "masks" / "fifo.png")
    for mask in (str(secret), "../secret.png", "masks/../../secret.png", "masks/link.png"):
        _tiny_package(pkg, regions=[{"name": "r", "image": "images/r.png", "mask": mask, "valid": "valid/r.png"}])
        with pytest.raises(GlandsegError, match="outside the package"):
            read_training_package(pkg)
    _tiny_package(pkg, regions=[{"name": "r", "image": "images/r.png", "mask": "masks/fifo.png", "valid": "valid/r.png"}])
    with pytest.raises(GlandsegError, match="fifo.png.*not a regular file"):
        read_training_package(pkg)
    (pkg / "manifest.json").unlink()
    os.mkfifo(pkg / "manifest.json")
    with pytest.raises(GlandsegError, match="manifest.json.*not a regular file"):
        read_training_package(pkg)


@pytest.mark.parametrize("manifest, message", [
    ({"regions": [{"name": "r", "image": "images/r.png", "mask": "masks/r.png"}]}, "valid of region r must be a file"),
    ({"regions": ["images/r.png"]}, "region 0 must be an object"),
    ({"mpp": None}, "must be a µm/px in"), ({"mpp": "abc"}, "must be a µm/px in"), ({"mpp": float("nan")}, "must be a µm/px in"),
    ({"mpp": 1e5}, "must be a µm/px in"), ({"mpp": 0}, "must be a µm/px in"),
])
def test_a_malformed_manifest_is_one_clear_error(tmp_path, manifest, message):
    pkg = _tiny_package(tmp_path / "pkg", **manifest)
    with pytest.raises(GlandsegError, match=message):
        read_training_package(pkg)


def test_a_manifest_that_is_not_an_object_or_nested_too_deep_is_one_clear_error(tmp_path):
    pkg = _tiny_package(tmp_path / "pkg")
    (pkg / "manifest.json").write_text("[1, 2]")
    with pytest.raises(GlandsegError, match="not a glandseg-training-package manifest"):
        read_training_package(pkg)
    (pkg / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(GlandsegError, match="manifest.json: not valid JSON"):
        read_training_package(pkg)


def test_a_package_refuses_hard_links_links_out_and_nul_bytes(tmp_path):
    outside = tmp_path / "secret.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(outside)
    pkg = _tiny_package(tmp_path / "hard")
    (pkg / "images" / "r.png").unlink()
    os.link(outside, pkg / "images" / "r.png")
    with pytest.raises(GlandsegError, match="hard link"):
        read_training_package(pkg)
    pkg = _tiny_package(tmp_path / "linked")
    (tmp_path / "elsewhere.json").write_text((pkg / "manifest.json").read_text())
    (pkg / "manifest.json").unlink()
    (pkg / "manifest.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(GlandsegError, match="link out of the package"):
        read_training_package(pkg)
    pkg = _tiny_package(tmp_path / "nul")
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["regions"][0]["image"] = "images/a\x00b.png"
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GlandsegError, match="must be a file name"):
        read_training_package(pkg)
    manifest["regions"][0]["image"] = "images/r.png"
    (pkg / "manifest.json").write_text(json.dumps(manifest).replace('"mpp": 1.24', '"mpp": ' + "9" * 400))
    with pytest.raises(GlandsegError, match="must be a µm/px"):
        read_training_package(pkg)
