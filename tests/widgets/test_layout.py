"""Every control legible in a docked window: Correct scrolls instead of squashing; the demo tabs."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QDockWidget, QScrollArea

from napari_glandseg._widgets import _demo as demo_window
from napari_glandseg._widgets._correct import CorrectWidget

pytestmark = pytest.mark.gui


def test_a_short_correct_dock_scrolls_and_keeps_its_buttons_whole(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = CorrectWidget(viewer)
    qtbot.addWidget(widget)
    widget.resize(400, 180)  # far shorter than its tools
    widget.show()
    qtbot.wait(50)
    area = widget.findChild(QScrollArea)
    assert area is not None and area.verticalScrollBar().maximum() > 0
    for button in [widget.edit_button, widget.commit_button, widget.uncertain_button, *widget.tool_buttons.values()]:
        assert button.height() >= button.sizeHint().height(), button.text()
        assert button.width() >= button.fontMetrics().horizontalAdvance(button.text()), button.text()


def test_the_demo_docks_segment_above_correct_and_export_as_tabs(make_napari_viewer, qtbot):
    from napari_glandseg.slide import SAMPLE_MPP, sample_slide_path

    viewer = make_napari_viewer()
    demo_window.setup_viewer(viewer, sample_slide_path(), SAMPLE_MPP)
    qtbot.wait(50)
    window = viewer.window._qt_window
    docks = {d.windowTitle().split(" (")[0]: d for d in window.findChildren(QDockWidget)}
    assert docks["Export glands"] in window.tabifiedDockWidgets(docks["Correct glands"])
    assert docks["Segment glands"] not in window.tabifiedDockWidgets(docks["Correct glands"])
