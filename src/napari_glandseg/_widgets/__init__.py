"""napari dock widgets: the package that imports napari, Qt and magicgui (the npe2 modules
_reader/_writer/_sample_data may import napari too, but need not and do not).

The widget classes load lazily so that importing the package does not pull in Qt. The GUI-free
helpers the widgets use live in compute packages (``slide.view_geometry``, ``slide.placement``,
``labels.layer_meta``, ``labels.review``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CorrectWidget", "ExportWidget", "SegmentWidget"]

_WHERE = {
    "SegmentWidget": "napari_glandseg._widgets._segment",
    "CorrectWidget": "napari_glandseg._widgets._correct",
    "ExportWidget": "napari_glandseg._widgets._export",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        from napari_glandseg._widgets._gl_safety import keep_triton_out

        keep_triton_out()  # before anything imports the model inside a GL context

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
