"""What "Segment view" would segment: the visible level-0 box in a real viewer (no model run)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_glandseg._widgets import SegmentWidget

pytestmark = pytest.mark.gui


def _open(viewer, path):
    [layer] = viewer.open(path, plugin="napari-glandseg")
    return layer


def test_visible_bbox_follows_camera_in_um(make_napari_viewer, cmu_svs):
    viewer = make_napari_viewer()
    layer = _open(viewer, cmu_svs)
    widget = SegmentWidget(viewer)
    mpp = 0.499
    viewer.scene.camera.center = (500 * mpp, 800 * mpp)  # world is µm
    viewer.scene.camera.zoom = 2.0 / mpp  # 2 screen px per level-0 px
    h_canvas, w_canvas = viewer.canvas.size
    box = widget.visible_bbox(layer)
    y, x, h, w = box.bbox
    # the canvas shows canvas/2 level-0 px around level-0 (500, 800)
    assert abs(h - min(h_canvas / 2, 2967)) <= 2 and abs(w - w_canvas / 2) <= 2
    assert abs(y + h / 2 - 500) <= 1.5 and abs(x + w / 2 - 800) <= 1.5
    assert not box.capped


def test_view_is_clipped_and_capped(make_napari_viewer, cmu_svs):
    viewer = make_napari_viewer()
    layer = _open(viewer, cmu_svs)
    widget = SegmentWidget(viewer)
    viewer.reset_view()
    viewer.scene.camera.zoom = viewer.scene.camera.zoom / 4  # far out: whole slide and more
    box = widget.visible_bbox(layer)
    assert box.visible_bbox == (0, 0, 2967, 2220)
    widget.max_view_model_px = 100_000
    capped = widget.visible_bbox(layer)
    y, x, h, w = capped.bbox
    card = widget.models.card(widget.model_label())
    assert capped.capped and (h * 0.499 / card.mpp) * (w * 0.499 / card.mpp) <= 100_000
    assert abs(y + h / 2 - 2967 / 2) <= 1 and abs(x + w / 2 - 2220 / 2) <= 1


def test_translated_layer_and_unknown_mpp(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    layer = _open(viewer, shared_data / "slides" / "tcga-cr-7395-01a-01-ts1.svs")
    layer.translate = (100.0, -50.0)
    widget = SegmentWidget(viewer)
    assert "unknown" in widget.info.value
    widget.slide_mpp.value = 0.25
    assert "0.25 µm/px" in widget.info.value
    viewer.scene.camera.center = (100 + 2000, -50 + 3000)  # no mpp in the file: world is px
    viewer.scene.camera.zoom = 2.0
    y, x, h, w = widget.visible_bbox(layer).bbox
    assert abs(y + h / 2 - 2000) <= 1.5 and abs(x + w / 2 - 3000) <= 1.5


def test_widget_lists_models_and_image_layers(make_napari_viewer, cmu_svs, dark_model):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-glandseg", "Segment glands")
    assert isinstance(widget, SegmentWidget)
    assert widget.image_layer() is None
    _open(viewer, cmu_svs)
    assert widget.image_layer().name == "cmu-1-small-region"
    items = list(widget.model.choices)
    assert "glandseg_small" in items and items[-1] == "Load checkpoint…"
    assert "glandseg_guided" not in items  # click-guided (RGB + guidance maps): not a slide segmenter
    label = widget.add_model(dark_model)
    assert widget.model_label() == label
    assert "dark-test: 1 µm/px" in widget.info.value
    viewer.add_image(np.zeros((10, 10)), name="other")
    assert [ly.name for ly in widget.image.choices] == ["cmu-1-small-region", "other"]
