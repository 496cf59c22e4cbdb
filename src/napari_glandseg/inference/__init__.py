"""Inference: tiling and blending, the predictor, region and whole-slide runs, post-processing.

The names below are imported on first use, so that importing the package does not pull in torch.
The GeoJSON/CSV outputs of a run are written by ``labels.outputs`` / ``labels.tables``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Predictor", "RegionResult", "SlideRun", "SlideRunSettings", "segment_image", "segment_many",
           "segment_region", "segment_slide"]

_WHERE = {
    "Predictor": "predictor", "RegionResult": "region", "segment_image": "region", "segment_region": "region",
    "segment_slide": "slide_run", "segment_many": "slide_run",
    "SlideRun": "slide_run_types", "SlideRunSettings": "slide_run_types",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        from importlib import import_module

        return getattr(import_module(f"napari_glandseg.inference.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
