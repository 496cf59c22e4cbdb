"""How the plugin's docks are laid out so that every control stays legible.

napari stacks docked widgets in its right-hand area at a default width of about 400 px; when
their contents are taller than the window, Qt squashes them (buttons shrink to half a text
line). Two remedies: a widget with many controls keeps them in a scroll area, and the demo
window docks Segment on top with Correct and Export as tabs below it (the steps a pathologist
goes through: segment, then correct, then now and then export).
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

#: (dock name, tabify with the dock above it): Segment alone, Correct and Export as tabs below.
DOCKS = (("Segment glands", False), ("Correct glands", False), ("Export glands", True))
#: The tab shown first in the Correct/Export group.
RAISED = "Correct glands"


def scrolling(owner: QWidget, content: QWidget) -> QScrollArea:
    """Put ``content`` in a vertical scroll area filling ``owner`` (its only child); returns the area."""
    area = QScrollArea(owner)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    area.setWidget(content)
    # as wide as the content and a scroll bar need, so no control is cut at the side
    area.setMinimumWidth(content.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width())
    lay = QVBoxLayout(owner)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(area)
    return area


def dock_plugin_widgets(viewer: Any, plugin: str = "napari-glandseg") -> dict[str, Any]:
    """Dock the plugin's widgets as :data:`DOCKS` says; returns the widgets by name."""
    docks, widgets = {}, {}
    for name, tabify in DOCKS:
        docks[name], widgets[name] = viewer.window.add_plugin_dock_widget(plugin, name, tabify=tabify)
    # a tab is raised once the window has laid the group out: now, and again when events run
    docks[RAISED].raise_()
    QTimer.singleShot(0, docks[RAISED].raise_)
    return widgets
