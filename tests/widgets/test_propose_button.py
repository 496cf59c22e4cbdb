"""Propose glands (no labels) in a real viewer on the CMU slide: the proposals become an ordinary
gland layer that Correct edits and commits like any other, and "Fine-tune on my corrections"
trains a model on them."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _jobs import TINY_BASE, TINY_TRAINING, wait_job

from napari_glandseg._widgets import CorrectWidget, ExportWidget, SegmentWidget
from napari_glandseg.labels import layer_meta as lm
from napari_glandseg.model.user_models import list_user_models

pytestmark = pytest.mark.gui


def test_proposals_are_a_gland_layer_to_correct_commit_and_fine_tune_on(make_napari_viewer, cmu_svs, models_dir,
                                                                          tmp_path, qtbot):
    slide = tmp_path / "slides" / cmu_svs.name  # a copy: Commit writes the label store beside the slide
    slide.parent.mkdir()
    shutil.copy(cmu_svs, slide)
    viewer = make_napari_viewer()
    [image] = viewer.open(slide, plugin="napari-glandseg")
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
    assert correct.delete_gland(n) > 0  # a correction, then Commit: the proposals become reviewed labels
    wait_job(qtbot, correct, correct.commit())
    meta = lm.read(layer.metadata)
    assert meta.store
    export = ExportWidget(viewer)
    export.glands.value = layer
    panel = export.finetune
    panel.settings = dict(TINY_TRAINING, max_steps=2)
    panel.base.value = TINY_BASE  # the proposals' layer names no model: the base is chosen
    wait_job(qtbot, panel, panel.start())
    [new] = [m for m in list_user_models() if m.name != TINY_BASE]
    assert new.card.provenance["fine_tuned_from"]["name"] == TINY_BASE and new.card.provenance["steps"] == 2
