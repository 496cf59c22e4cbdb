"""``glandseg propose`` on a real folder and a real slide region: outputs that read back to the
same glands, and clear errors for bad inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from napari_glandseg.cli import main
from napari_glandseg.labels.geojson import features_to_labels, read_geojson
from napari_glandseg.labels.masks import read_mask

FAST = ["--iterations", "10"]


@pytest.fixture
def glas_folder(shared_data, tmp_path):
    """Two real GlaS train images, cropped so that the test takes seconds."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("train_1", "train_20"):
        im = Image.open(shared_data / "glas" / "train" / "images" / f"{name}.png").convert("RGB")
        im.crop((0, 0, 400, 300)).save(folder / f"{name}.png")
    return folder


def test_propose_folder_writes_masks_and_geojson_of_the_same_glands(glas_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["propose", str(glas_folder), "--out", str(out), "--mpp", "0.62", *FAST]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 2 and summary["method"]["labels_used"] is False
    total = 0
    for row in summary["per_image"]:
        labels = read_mask(out / row["mask"]).astype(np.int32)
        assert labels.shape == (300, 400)
        assert labels.max() == row["glands"] >= 1
        fc = read_geojson(out / row["geojson"])
        assert len(fc["features"]) == row["glands"]
        assert all("area_um2" in f["properties"]["measurements"] for f in fc["features"])
        np.testing.assert_array_equal(features_to_labels(fc, labels.shape), labels)
        total += row["glands"]
    assert summary["glands"] == total
    assert not list(out.rglob("*.tmp"))  # nothing half-written left behind


def test_propose_slide_region_writes_a_label_store_and_geojson(shared_data, cmu_svs, tmp_path):
    from napari_glandseg.labels.store import LabelStore

    out = tmp_path / "out"
    assert main(["propose", str(cmu_svs), "--out", str(out), "--region", "300,200,900,700", *FAST]) == 0
    folder = out / "cmu-1-small-region"
    summary = json.loads((folder / "summary.json").read_text())
    store = LabelStore.open(folder / "labels.ome.zarr", read_only=True)
    scale = summary["downsample"]
    y0, x0, h0, w0 = summary["region"]["bbox0"]
    gy, gx = round(y0 / scale), round(x0 / scale)
    gh, gw = round(h0 / scale), round(w0 / scale)
    labels = np.asarray(store.read_region(gy, gx, gh, gw))
    ids = np.unique(labels[labels > 0])
    assert summary["glands"] == len(ids) >= 1
    assert not np.asarray(store.read_region(0, 0, gy, store.levels[0].shape[1])).any()  # only the region
    fc = read_geojson(folder / "glands.geojson")
    assert {f["properties"]["label"] for f in fc["features"]} == set(ids.tolist())
    back = features_to_labels(fc, (gh, gw), scale=scale, offset=(gy * scale, gx * scale))
    np.testing.assert_array_equal(back, labels)
    assert (folder / "measurements.csv").read_text().count("\n") == len(ids) + 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["MISSING", "--mpp", "0.5"], "no such file"),
        (["NOTIMAGE"], "cannot read the image"),
        (["FOLDER"], "pass --mpp"),
        (["FOLDER", "--mpp", "0"], "µm/px"),
        (["FOLDER", "--mpp", "nan"], "µm/px"),
        (["FOLDER", "--mpp", "0.62", "--region", "1,2,3,4"], "--region applies to a slide"),
        (["SLIDE", "--region", "1,2,3"], "X,Y,W,H"),
        (["SLIDE", "--region", "10,10,-5,5"], "W, H > 0"),
        (["SLIDE", "--region", "99999,10,50,50"], "outside the slide"),
        (["EMPTY", "--mpp", "0.62"], "no images"),
        (["FOLDER", "--mpp", "0.62", "--iterations", "0"], "iterations"),
    ],
)
def test_bad_inputs_are_clear_errors(args, message, glas_folder, cmu_svs, tmp_path, capsys):
    not_image = tmp_path / "bad"
    not_image.mkdir()
    (not_image / "scan.png").write_text("this is not a PNG")
    (tmp_path / "empty").mkdir()
    shutil.copy(glas_folder / "train_1.png", not_image / "a.png")
    where = {"MISSING": str(tmp_path / "nope.svs"), "NOTIMAGE": str(not_image), "FOLDER": str(glas_folder),
             "SLIDE": str(cmu_svs), "EMPTY": str(tmp_path / "empty")}
    argv = ["propose", where.get(args[0], args[0]), "--out", str(tmp_path / "out"), *args[1:]]
    if args[0] == "NOTIMAGE":
        argv += ["--mpp", "0.62", *FAST]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    if args[0] in ("NOTIMAGE", "MISSING"):
        assert where[args[0]].split("/")[-1] in err  # the error names the file
