"""Inference: tiling and blending, the predictor, region and whole-slide runs, post-processing."""

from __future__ import annotations

from typing import Any

from napari_glandseg.inference.predictor import Predictor
from napari_glandseg.inference.region import RegionResult, segment_image, segment_region

__all__ = ["Predictor", "RegionResult", "segment_image", "segment_many", "segment_region", "segment_slide"]


def __getattr__(name: str) -> Any:
    # the whole-slide engine pulls in zarr and the label store: import it only when asked for
    if name in ("segment_slide", "segment_many"):
        from napari_glandseg.inference import slide_run

        return getattr(slide_run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
