"""Next uncertain in a real napari viewer: the camera goes to the least certain gland not yet
reviewed and selects it; a whole-slide layer reads the confidences kept in its store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _layers import gland_layer

from napari_glandseg._widgets import CorrectWidget
from napari_glandseg._widgets._correct import KEYS
from napari_glandseg.labels import layer_meta as lm
from napari_glandseg.labels.store import LabelStore

pytestmark = pytest.mark.gui
STEP = 2.0


@pytest.fixture
def setup(make_napari_viewer, cmu_svs):
    viewer = make_napari_viewer()
    [image] = viewer.open(cmu_svs, plugin="napari-glandseg")
    h, w = (int(v // STEP) for v in image.data.shape[:2])
    labels = np.zeros((h, w), np.int32)
    labels[100:160, 100:180] = 1
    labels[1000:1100, 400:500] = 2
    labels[500:540, 900:950] = 3
    layer = gland_layer(viewer, image, labels, step=STEP)
    layer.features = pd.DataFrame({"index": [1, 2, 3], "confidence": [0.9, 0.2, 0.6]})
    return viewer, image, layer, CorrectWidget(viewer)


def test_next_uncertain_moves_to_the_least_certain_unreviewed_gland(setup):
    from app_model.types import KeyBinding

    viewer, image, layer, widget = setup
    assert KeyBinding.from_str(KEYS["next uncertain"].replace("-", "+")) in layer.keymap
    camera = viewer.scene.camera
    for expected in (2, 3, 1):
        pick = widget.next_uncertain()
        assert pick.label == expected and layer.selected_label == expected
        where = np.argwhere(layer.data == expected)
        centre = layer.data_to_world((where.min(0) + where.max(0)) / 2)
        np.testing.assert_allclose(camera.center[-2:], np.asarray(centre)[-2:], atol=STEP)
        extent = (where.max(0) - where.min(0) + 1) * np.asarray(layer.scale[-2:])
        assert np.all(camera.zoom * extent <= np.asarray(viewer.canvas.size) / 2.5), "the gland, with context"
    assert widget.next_uncertain() is None and "all 3 glands reviewed" in widget.reviewed_info.text()
    assert lm.uncertain_reviewed(layer.metadata) == (2, 3, 1)
    # edits keep each gland's confidence
    widget.refresh_measurements(layer)
    assert dict(zip(layer.features["index"], layer.features["confidence"], strict=True)) == {1: 0.9, 2: 0.2, 3: 0.6}


def test_a_whole_slide_layer_reads_its_store(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    store = LabelStore.create(tmp_path / "s.zarr", (400, 300), chunk_px=128, mpp=1.0)
    store.levels[0][10:20, 30:60] = 4
    store.levels[0][200:260, 100:150] = 9
    store.write_confidence({4: [0.7, 10, 30, 20, 60], 9: [0.1, 200, 100, 260, 150]})
    meta = lm.make_meta(kind="store", slide_path=None, slide_name="s", slide_mpp=1.0, slide_shape=(400, 300),
                        label_scale0=1.0, label_translate0=(0.0, 0.0), store=str(store.path))
    layer = viewer.add_labels([np.asarray(store.levels[0][:])], name="s glands", metadata={lm.KEY: meta})
    widget = CorrectWidget(viewer)
    pick = widget.next_uncertain()
    assert pick.label == 9 and layer.selected_label == 9
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], (229.5, 124.5), atol=1)


def test_relabel_keeps_each_glands_confidence_and_reviewed_mark(setup):
    viewer, image, layer, widget = setup
    assert widget.next_uncertain().label == 2
    widget.delete_gland(1)  # now 2, 3: relabel makes them 1, 2
    assert widget.relabel() > 0
    assert dict(zip(layer.features["index"], layer.features["confidence"], strict=True)) == {1: 0.2, 2: 0.6}
    assert lm.uncertain_reviewed(layer.metadata) == (1,)
    assert widget.next_uncertain().label == 2, "the old gland 3, not reviewed yet"
