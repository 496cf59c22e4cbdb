"""The pixel grid that imported GeoJSON glands are rasterised on: on the slide, and bounded.

A GeoJSON file says nothing about how big a grid its polygons need; a 245-byte square of
20,000-px sides must not become a 7.8 GB label image. The grid covers the polygons (plus a
margin to paint in) clipped to the slide, at level-0 pixels when that fits in ``max_px``,
else at the smallest whole number of level-0 px per label px that does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from napari_glandseg.errors import GlandsegError
from napari_glandseg.slide.placement import GridPlacement

#: Room around the glands (level-0 px) to paint next to them.
IMPORT_MARGIN_PX = 32
#: Largest grid (pixels) an import makes: 2**25 int32 labels are 128 MiB.
MAX_GRID_PX = 2**25


def polygon_bounds(fc: dict) -> tuple[float, float, float, float] | None:
    """``(y0, x0, y1, x1)`` around every ring of the (Multi)Polygon features, or None."""
    from napari_glandseg.labels.geojson import feature_polygons

    lo = np.array([np.inf, np.inf])
    hi = -lo
    for feature in fc.get("features", []) if isinstance(fc, dict) else []:
        for polygon in feature_polygons(feature):
            for ring in polygon:
                xy = np.asarray(ring, dtype=np.float64)[:, :2]
                lo, hi = np.minimum(lo, xy.min(axis=0)), np.maximum(hi, xy.max(axis=0))
    if not np.isfinite(lo).all():
        return None
    return float(lo[1]), float(lo[0]), float(hi[1]), float(hi[0])


def import_grid(
    fc: dict,
    slide_shape: Sequence[int],
    *,
    margin_px: int = IMPORT_MARGIN_PX,
    max_px: int = MAX_GRID_PX,
) -> tuple[tuple[int, int], tuple[float, float], float]:
    """``((h, w), (ty, tx), scale)``: the grid for ``features_to_labels`` of ``fc`` on a slide.

    ``scale`` is level-0 px per label px (1 unless the box would exceed ``max_px``); ``(ty, tx)``
    is the level-0 position of label pixel (0, 0)'s centre (napari's translate); its corner is
    ``t - (scale - 1) / 2``. Raises ``GlandsegError`` when no polygon lies on the slide.
    """
    bounds = polygon_bounds(fc)
    if bounds is None:
        raise GlandsegError("the GeoJSON has no polygon coordinates")
    height, width = (int(v) for v in slide_shape[:2])
    y0, x0, y1, x1 = bounds
    if y1 <= 0 or x1 <= 0 or y0 >= height or x0 >= width:
        raise GlandsegError(
            f"the polygons (x {x0:g}..{x1:g}, y {y0:g}..{y1:g}) lie outside the slide "
            f"({width} × {height} px)"
        )
    top, left = max(0, math.floor(y0) - margin_px), max(0, math.floor(x0) - margin_px)
    bottom, right = min(height, math.ceil(y1) + margin_px), min(width, math.ceil(x1) + margin_px)
    h, w = bottom - top, right - left
    scale = max(1, math.ceil(math.sqrt(h * w / max_px))) if h * w > max_px else 1
    while math.ceil(h / scale) * math.ceil(w / scale) > max_px:
        scale += 1
    grid = GridPlacement.from_corner(scale, (top, left), (math.ceil(h / scale), math.ceil(w / scale)))
    return grid.shape, grid.translate, grid.scale
