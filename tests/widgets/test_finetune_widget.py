""""Fine-tune on my corrections" in a real viewer on a real slide with a tiny model: committed
corrections → fine-tune → the new model is listed and selected in Segment → Segment view uses it;
Cancel leaves no model behind."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _jobs import TINY_BASE as BASE
from _jobs import TINY_TRAINING as TINY
from _jobs import wait_job as _wait

from napari_glandseg._widgets import CorrectWidget, ExportWidget, SegmentWidget
from napari_glandseg.labels import layer_meta as lm
from napari_glandseg.model.user_models import list_user_models

pytestmark = pytest.mark.gui


@pytest.fixture
def corrected(make_napari_viewer, cmu_svs, tmp_path, models_dir, qtbot):
    """A real slide, a Segment view by ``tiny-base``, a corrected gland, committed."""
    slide = tmp_path / "slides" / cmu_svs.name
    slide.parent.mkdir()
    shutil.copy(cmu_svs, slide)
    viewer = make_napari_viewer()
    [image] = viewer.open(slide, plugin="napari-glandseg")
    segment, correct, export = SegmentWidget(viewer), CorrectWidget(viewer), ExportWidget(viewer)
    assert BASE in segment.model.choices
    segment.model.value = BASE
    segment.max_view_model_px = 320 * 320
    viewer.reset_view()
    _wait(qtbot, segment, segment.segment_view())
    layer = segment.result_layer
    assert lm.read(layer.metadata).model == BASE
    data = np.array(layer.data)
    data[:] = 0
    data[40:110, 60:150] = 1  # the corrections: two glands drawn by hand
    data[180:260, 30:90] = 2
    layer.data = data
    viewer.layers.selection.active = layer
    _wait(qtbot, correct, correct.commit())
    export.glands.value = layer
    panel = export.finetune
    panel.settings = dict(TINY)
    return viewer, segment, panel, models_dir


def test_button_fine_tunes_and_segment_uses_the_new_model(corrected, qtbot):
    viewer, segment, panel, folder = corrected
    panel.settings["max_steps"] = 2
    panel.minutes.value = 3.0
    assert panel.base_model(lm.read(segment.result_layer.metadata)) == BASE  # the layer's model
    _wait(qtbot, panel, panel.start())

    [new] = [m for m in list_user_models() if m.name != BASE]
    assert new.name.startswith(f"{BASE}-ft-") and new.path == folder / new.name / "model.safetensors"
    prov = new.card.provenance
    assert prov["fine_tuned_from"]["name"] == BASE and prov["steps"] == 2
    assert prov["corrections"][0]["regions"] == 1 and prov["held_back"]["images"] == 1
    assert "→" in panel.result.value and new.name in panel.result.value
    # Segment lists the new model, selected; the previous one stays selectable
    assert segment.model.value == new.name and BASE in segment.model.choices
    _wait(qtbot, segment, segment.segment_view())
    assert lm.read(segment.result_layer.metadata).model == new.name


def test_cancel_leaves_no_model(corrected, qtbot):
    viewer, segment, panel, folder = corrected
    panel.minutes.value = 10.0
    worker = panel.start()
    assert worker is not None
    qtbot.waitUntil(lambda: "fine-tuning: step" in panel.jobs.status.text(), timeout=300_000)
    panel.jobs.cancel()
    qtbot.waitUntil(lambda: not panel.jobs.busy, timeout=60_000)
    assert "cancelled" in panel.jobs.status.text()
    assert sorted(p.name for p in folder.iterdir()) == [BASE]  # no model, no hidden work folder
    assert segment.model.value == BASE
