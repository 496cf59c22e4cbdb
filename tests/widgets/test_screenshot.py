"""A screenshot of the docked widgets over a segmented real slide (test-artifacts/)."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.mark.skipif(
    os.environ.get("QT_QPA_PLATFORM") == "offscreen",
    reason="Qt's offscreen platform renders a black canvas: make test runs this file again with "
    "QT_QPA_PLATFORM=xcb under pytest-xvfb",
)
def test_screenshot_of_docked_widget_over_segmented_slide(make_napari_viewer, cmu_svs, qtbot, dark_model, artifacts):
    from PIL import Image as PILImage

    viewer = make_napari_viewer(show=True)
    [image] = viewer.open(cmu_svs, plugin="napari-glandseg")
    _, seg = viewer.window.add_plugin_dock_widget("napari-glandseg", "Segment glands")
    viewer.window.add_plugin_dock_widget("napari-glandseg", "Correct glands", tabify=True)
    seg.add_model(dark_model)
    viewer.window._qt_window.resize(1400, 900)
    viewer.reset_view()
    seg.segment_view()
    qtbot.waitUntil(lambda: not seg.jobs.busy, timeout=120_000)
    assert seg.jobs.last_error is None
    labels = seg.result_layer
    labels.opacity = 0.6
    viewer.layers.selection.active = labels
    qtbot.wait(200)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    path = artifacts / "widget_screenshot.png"
    PILImage.fromarray(shot).save(path)
    assert shot.shape[0] >= 600 and shot.shape[1] >= 1000
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    PILImage.fromarray(canvas).save(artifacts / "canvas_screenshot.png")
    # the canvas shows the pink H&E slide and coloured labels, not a blank frame
    rgb = canvas[..., :3].astype(int)
    assert rgb.std() > 20
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 1000
