"""Correct glands: undoable gland tools with shortcuts, paint + commit = autosave + review log."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _layers import BLOBS, SYNTH_SHAPE, blob_labels, gland_layer

from napari_glandseg._widgets import CorrectWidget
from napari_glandseg._widgets._correct import KEYS
from napari_glandseg.labels import layer_meta as lm

pytestmark = pytest.mark.gui


@pytest.fixture
def slide_copy(tmp_path, synth_slide):
    """The synthetic slide in a fresh folder (its autosave store goes next to it)."""
    path = tmp_path / "slides" / "synth.tif"
    path.parent.mkdir()
    shutil.copy(synth_slide, path)
    return path


@pytest.fixture
def setup(make_napari_viewer, slide_copy):
    viewer = make_napari_viewer()
    [image] = viewer.open(slide_copy, plugin="napari-glandseg")
    labels = blob_labels((SYNTH_SHAPE[0] // 2, SYNTH_SHAPE[1] // 2), BLOBS, 2.0)
    layer = gland_layer(viewer, image, labels, step=2.0)
    widget = CorrectWidget(viewer)
    return viewer, image, layer, widget


def test_shortcuts_bound_and_free_of_napari_defaults(setup):
    from napari.utils.shortcuts import default_shortcuts

    viewer, image, layer, widget = setup
    taken = {str(kb) for name, kbs in default_shortcuts.items() for kb in kbs
             if "labels" in name or not any(k in name for k in ("points", "shapes", "image", "vectors", "tracks", "surface", "plane"))}
    from app_model.types import KeyBinding

    for key in KEYS.values():
        kb = KeyBinding.from_str(key.replace("-", "+"))
        assert str(kb) not in taken, f"{key} clashes with a napari default"
        assert kb in layer.keymap, f"{key} not bound on the gland layer"
    for key in KEYS.values():  # documented in the tooltips
        assert key in widget.toolTip()


def test_delete_merge_split_are_undoable(setup):
    viewer, image, layer, widget = setup
    before = layer.data.copy()
    # delete by shortcut-equivalent: the gland under the cursor
    y, x, h, w = BLOBS[0]
    viewer.cursor.position = tuple(image.data_to_world((y + h / 2, x + w / 2)))
    assert widget.delete_under_cursor() > 0
    assert 1 not in np.unique(layer.data)
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)

    assert widget.merge(2, 3) > 0
    assert len(np.unique(layer.data)) == 3  # background + 2 glands
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)

    # split gland 2 along a vertical line through its middle (world coordinates)
    y, x, h, w = BLOBS[1]
    line = np.array([image.data_to_world((y - 20, x + w / 2)), image.data_to_world((y + h + 20, x + w / 2))])
    assert widget.split_along_line(line, layer=layer) > 0
    parts = np.unique(layer.data[layer.data > 0])
    assert len(parts) == 4, "gland 2 became two glands"
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)
    layer.redo()
    assert len(np.unique(layer.data[layer.data > 0])) == 4


def test_fill_remove_small_relabel(setup):
    viewer, image, layer, widget = setup
    data = layer.data
    data[210:214, 320:324] = 0  # a hole in gland 1
    data[5:8, 5:8] = 9  # a 9-px (9 µm²) speck
    layer.refresh()
    assert widget.fill_holes() == 16
    assert (layer.data[210:214, 320:324] == 1).all()
    widget.min_area.setValue(50.0)
    assert widget.remove_small() == 9
    layer.data_setitem((np.array([0]), np.array([0])), 40)
    widget.remove_small()
    widget.delete_gland(2)
    assert widget.relabel() > 0
    assert sorted(np.unique(layer.data)) == [0, 1, 2]
    layer.undo()  # undo relabel
    assert sorted(np.unique(layer.data)) == [0, 1, 3]


def test_measurements_in_features(setup):
    viewer, image, layer, widget = setup
    widget.refresh_measurements(layer)
    feats = layer.features
    assert list(feats["index"]) == [1, 2, 3]
    # blob 1 is 160×240 level-0 px at 0.5 µm/px = 9600 µm²
    area = float(feats.loc[feats["index"] == 1, "area_um2"].iloc[0])
    assert abs(area - 9600) / 9600 < 0.02
    widget.delete_gland(3)
    assert list(layer.features["index"]) == [1, 2]


def test_paint_commit_autosaves_and_logs_review(setup, qtbot, slide_copy):
    from napari_glandseg.labels.store import LabelStore

    viewer, image, layer, widget = setup
    layer.paint((100, 100), 5, refresh=True)  # the napari brush (undoable)
    assert (layer.data == 5).any()
    widget.commit_button.click()
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=60_000)
    assert widget.jobs.last_error is None
    store_path = slide_copy.parent / "synth.glandseg.zarr"
    assert store_path.is_dir(), "autosaved next to the slide"
    store = LabelStore.open(store_path)
    reviewed = store.reviewed_regions()
    assert len(reviewed) == 1 and reviewed[0].get("model") == "dark-test"
    saved = np.asarray(store.read_region(0, 0, *layer.data.shape))
    np.testing.assert_array_equal(saved, layer.data)  # same grid: an exact copy
    assert lm.read(layer.metadata).reviewed[0]["store"] == str(store_path)


def test_edit_view_of_whole_slide_store_and_commit(setup, qtbot, slide_copy):
    from napari_glandseg._widgets._slides import slide_ref, store_layer_kwargs
    from napari_glandseg.labels.store import LabelStore

    viewer, image, layer, widget = setup
    store_path = slide_copy.parent / "synth.glandseg.zarr"
    store = LabelStore.create(store_path, layer.data.shape, mpp=1.0, chunk_px=256)
    store.write_region(0, 0, layer.data, reviewed_by="segmentation", model="dark-test")
    kwargs = store_layer_kwargs(store_path, slide_ref(image), (image.scale, image.translate),
                                model="dark-test", model_mpp=1.0)
    slide_layer = viewer.add_labels(**kwargs)
    viewer.layers.selection.active = slide_layer
    assert widget.edit_button.isEnabled()
    y, x, h, w = BLOBS[1]
    viewer.scene.camera.center = tuple(image.data_to_world((y + h / 2, x + w / 2)))
    viewer.scene.camera.zoom = 4.0
    edit = widget.edit_view()
    assert edit is not None and not edit.multiscale
    # the editable layer shows exactly the store's pixels where the store layer shows them
    centre_world = image.data_to_world((y + h / 2, x + w / 2))
    assert edit.get_value(centre_world, world=True) == 2
    n_before = len(store.reviewed_regions())
    assert widget.delete_gland(2) > 0
    widget.commit_button.click()
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=60_000)
    assert widget.jobs.last_error is None
    store = LabelStore.open(store_path)
    assert len(store.reviewed_regions()) == n_before + 1
    region = lm.read(edit.metadata).store_region
    np.testing.assert_array_equal(np.asarray(store.read_region(*region)), edit.data)
    assert not (np.asarray(store.levels[0]) == 2).any()
