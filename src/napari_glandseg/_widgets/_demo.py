"""The demo window: the sample slide in napari with the plugin's three widgets docked."""

from __future__ import annotations

from pathlib import Path

from napari_glandseg._widgets._layout import DOCKS, dock_plugin_widgets

WIDGETS = tuple(name for name, _ in DOCKS)


def setup_viewer(viewer, slide: Path, mpp: float | None) -> dict:
    """Open the slide through the plugin reader and dock the three widgets (Segment on top,
    Correct and Export as tabs below: see ``_layout``); returns them by name."""
    viewer.open(slide, plugin="napari-glandseg")
    widgets = dock_plugin_widgets(viewer)
    if mpp is not None:
        # The sample's file states no µm/px: give the Segment widget the documented estimate.
        widgets["Segment glands"].slide_mpp.value = mpp
    return widgets


def run_gui(slide: Path, mpp: float | None) -> int:
    """The demo window: slide + widgets, then napari's event loop."""
    # Load the model's imports (timm -> torchvision -> torch._dynamo -> triton) before napari
    # opens its GL context: triton's LLVM loaded after Mesa's segfaults (see _gl_safety, which
    # covers the plugin opened from napari itself when there is no CUDA).
    import napari

    import napari_glandseg.model  # noqa: F401

    setup_viewer(napari.Viewer(title="napari-glandseg demo"), slide, mpp)
    napari.run()
    return 0
