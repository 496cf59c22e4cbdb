"""Export glands: training package, GeoJSON round trip, bad GeoJSON, npe2 writers."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _layers import BLOBS, SYNTH_SHAPE, blob_labels, gland_layer, iou
from napari.utils.notifications import notification_manager

from napari_glandseg._widgets import CorrectWidget, ExportWidget
from napari_glandseg.labels import layer_meta as lm

pytestmark = pytest.mark.gui
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def setup(make_napari_viewer, tmp_path, synth_slide):
    slide = tmp_path / "synth.tif"
    shutil.copy(synth_slide, slide)
    viewer = make_napari_viewer()
    [image] = viewer.open(slide, plugin="napari-glandseg")
    # a view-sized result that does not start at the slide's origin (model grid 2 px), holding all blobs
    origin0 = (300, 200)
    labels = blob_labels((SYNTH_SHAPE[0] // 2, SYNTH_SHAPE[1] // 2), [(y - 300, x - 200, h, w) for y, x, h, w in BLOBS], 2.0)
    layer = gland_layer(viewer, image, labels[:700, :900], step=2.0, origin0=origin0)
    widget = ExportWidget(viewer)
    widget.out_dir.value = tmp_path / "out"
    return viewer, image, layer, widget, tmp_path


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=120_000)
    assert widget.jobs.last_error is None, repr(widget.jobs.last_error)


def test_training_package_after_commit_loads_for_finetuning(setup, qtbot):
    viewer, image, layer, widget, tmp = setup
    correct = CorrectWidget(viewer)
    viewer.layers.selection.active = layer
    assert widget.export_training() is None  # nothing reviewed yet: refused with a message
    correct.commit()
    _wait(qtbot, correct)
    out = tmp / "pkg"
    widget.export_training(out)
    _wait(qtbot, widget)
    assert (out / "manifest.json").is_file()
    from napari_glandseg.train.data import load_training_package

    samples = load_training_package(out, model_mpp=1.0)
    assert len(samples) >= 1
    total = sum(int((np.asarray(s.labels if hasattr(s, "labels") else s[2]) > 0).sum()) for s in samples)
    assert total > 0, "the exported masks contain the glands"


def test_geojson_export_then_import_gives_the_same_glands(setup, qtbot):
    viewer, image, layer, widget, tmp = setup
    path = tmp / "out" / "glands.geojson"
    widget.export("geojson", path)
    _wait(qtbot, widget)
    fc = json.loads(path.read_text())
    assert len(fc["features"]) == 3
    assert fc["features"][0]["properties"].get("objectType") in ("annotation", None)
    viewer.layers.selection.active = layer
    imported = widget.import_geojson(path, like=layer)
    assert imported is not None
    np.testing.assert_allclose(imported.scale, layer.scale)
    np.testing.assert_allclose(imported.translate, layer.translate)
    a, b = np.asarray(layer.data), np.asarray(imported.data)
    for lab in range(1, 4):
        # match by overlap: GeoJSON does not have to keep label numbers
        other = np.bincount(b[a == lab]).argmax()
        assert other > 0 and iou(a == lab, b == other) >= 0.99


def test_geojson_import_onto_the_slide_without_a_reference_layer(setup, qtbot):
    viewer, image, layer, widget, tmp = setup
    path = tmp / "out" / "glands.geojson"
    widget.export("geojson", path)
    _wait(qtbot, widget)
    viewer.layers.selection.active = image
    imported = widget.import_geojson(path)
    assert lm.read(imported.metadata).kind == "import"
    for y, x, h, w in BLOBS:
        assert imported.get_value(image.data_to_world((y + h / 2, x + w / 2)), world=True) > 0
        assert imported.get_value(image.data_to_world((y - 3, x - 3)), world=True) == 0


def test_malformed_geojson_names_the_file(setup):
    viewer, image, layer, widget, tmp = setup
    seen = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    bad = tmp / "broken.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [{"geometry": ')
    assert widget.import_geojson(bad) is None
    assert any("broken.geojson" in m for m in seen)


def test_npe2_writers_through_napari_save(setup):
    import napari

    viewer, image, layer, widget, tmp = setup
    out = tmp / "saved"
    out.mkdir()
    for name in ("g.geojson", "g.ome.tif", "g.ome.zarr", "g.csv"):
        written = napari.save_layers(str(out / name), [layer], plugin="napari-glandseg")
        assert written and Path(written[0]).exists(), name
    rows = list(csv.DictReader(open(out / "g.csv")))
    assert len(rows) == 3
    # centroids are level-0 slide px: blob 1's centre
    y, x, h, w = BLOBS[0]
    r = min(rows, key=lambda r: abs(float(r["centroid_y"]) - (y + h / 2)))
    assert abs(float(r["centroid_y"]) - (y + h / 2 - 0.5)) <= 1.5
    assert abs(float(r["centroid_x"]) - (x + w / 2 - 0.5)) <= 1.5


def test_export_buttons_write_files(setup, qtbot):
    viewer, image, layer, widget, tmp = setup
    viewer.layers.selection.active = layer
    for kind in ("ome_zarr", "ome_tiff", "csv"):
        widget.export(kind)
        _wait(qtbot, widget)
    names = sorted(p.name for p in (tmp / "out").iterdir())
    assert names == ["synth_glands.csv", "synth_glands.ome.tif", "synth_glands.ome.zarr"]


def test_the_glands_combo_follows_the_layer_list_and_the_selection(setup):
    viewer, image, layer, widget, tmp = setup
    assert widget.glands.value is layer
    other = viewer.add_labels(np.zeros((10, 10), np.int32), name="other glands")  # napari selects it
    assert widget.glands.value is other and {ly.name for ly in widget.glands.choices} == {layer.name, other.name}
    viewer.layers.selection.active = image  # not a labels layer: the choice stays
    assert widget.glands.value is other
    viewer.layers.selection.active = layer
    assert widget.glands.value is layer
    viewer.layers.remove(other)
    viewer.layers.remove(layer)
    assert widget.glands.value is None
    assert widget.export("csv") is None  # nothing to export: a notification, no run
