"""Propose glands (no labels) in a real viewer on the CMU slide: the proposals become an ordinary
gland layer that Correct edits like any other."""

from __future__ import annotations

import numpy as np
import pytest

from napari_glandseg._widgets import CorrectWidget, SegmentWidget
from napari_glandseg.labels import layer_meta as lm

pytestmark = pytest.mark.gui


def test_proposals_arrive_as_a_gland_layer_that_correct_edits(make_napari_viewer, cmu_svs, qtbot):
    viewer = make_napari_viewer()
    [image] = viewer.open(cmu_svs, plugin="napari-glandseg")
    widget = SegmentWidget(viewer)
    camera = viewer.scene.camera
    camera.center = tuple(np.asarray(image.data_to_world((1300.0, 1100.0)))[-2:])
    camera.zoom = float(min(viewer.canvas.size)) / (900 * float(image.scale[-1]))  # ~900 level-0 px across
    worker = widget.propose_view()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=180_000)
    assert widget.jobs.last_error is None, repr(widget.jobs.last_error)
    layer = widget.result_layer
    meta = lm.read(layer.metadata)
    assert meta.kind == "view" and meta.model == "unsupervised proposals (no labels)"
    n = int(layer.data.max())
    assert n > 0 and set(layer.features["index"]) == set(np.unique(layer.data[layer.data > 0]).tolist())
    before = layer.data.copy()
    correct = CorrectWidget(viewer)
    viewer.layers.selection.active = layer
    assert correct.delete_gland(n) > 0 and n not in layer.data
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)
