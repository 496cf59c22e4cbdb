"""Per-gland shape measurements of a label image, in micrometres and level-0 slide pixels.

Each gland (label > 0) gets one row of plain Python numbers (JSON-able), so the rows can go
straight into a CSV table or into the ``measurements`` of a QuPath GeoJSON feature.

Conventions:

* ``mpp`` is micrometres per LABEL pixel. Label images are often made at a lower resolution
  than the slide (``scale`` slide pixels per label pixel); the caller passes the label pixel's
  size, i.e. ``slide_mpp * scale``.
* Centroids are in level-0 slide pixels with the pixel-centre convention: label pixel ``i``
  covers slide pixels ``[offset + i*scale, offset + (i+1)*scale)``, so its centre sits at
  ``offset + (i + 0.5)*scale - 0.5`` in slide pixel-centre coordinates.
* The perimeter is the Crofton estimate (4 directions, :func:`skimage.measure.perimeter_crofton`):
  within about 1 % of the true length on smooth shapes such as disks and ellipses, where the
  boundary-pixel chain of ``regionprops.perimeter`` reads 3-4 % high. Its known bias: long
  axis-aligned straight edges read low (a square by about 6 %).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull
from skimage.measure import perimeter_crofton, regionprops

from napari_glandseg.labels._objects import check_labels, compact_labels, is_sparse

if TYPE_CHECKING:
    import pandas as pd

MEASUREMENT_COLUMNS: tuple[str, ...] = (
    "label",
    "area_px",
    "area_um2",
    "perimeter_um",
    "eccentricity",
    "solidity",
    "major_axis_um",
    "minor_axis_um",
    "centroid_y",
    "centroid_x",
)


def measure_glands(
    labels: np.ndarray,
    mpp: float,
    *,
    offset: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
) -> list[dict]:
    """Measure every gland of a 2-D label image; one dict per label > 0, sorted by label.

    ``mpp`` is micrometres per label pixel; ``offset`` (y, x) and ``scale`` place the label grid
    on the level-0 slide (see the module docstring). The dict keys are
    :data:`MEASUREMENT_COLUMNS`; the values are plain ``int`` / ``float``.
    Regions are cropped to their bounding boxes, so a 4096² image with hundreds of glands
    takes about a second.
    """
    labels = check_labels(labels)
    _check_positive(mpp, "mpp")
    _check_positive(scale, "scale")
    if not labels.any():
        return []
    ids = None
    if is_sparse(labels):  # whole-slide ids (chunk << 16): regionprops would allocate per id
        labels, ids = compact_labels(labels)
    rows = [_measure_region(region, float(mpp), offset, float(scale)) for region in regionprops(labels)]
    if ids is not None:
        for row in rows:
            row["label"] = int(ids[row["label"]])
    rows.sort(key=lambda row: row["label"])
    return rows


def measurements_table(rows: list[dict]) -> pd.DataFrame:
    """The rows of :func:`measure_glands` as a DataFrame with :data:`MEASUREMENT_COLUMNS`.

    pandas is imported here, not at module import: it is not a core dependency of the package.
    """
    import pandas as pd

    if not rows:
        return pd.DataFrame(
            {
                name: pd.Series(dtype="int64" if name in ("label", "area_px") else "float64")
                for name in MEASUREMENT_COLUMNS
            }
        )
    return pd.DataFrame(
        [{name: row[name] for name in MEASUREMENT_COLUMNS} for row in rows], columns=list(MEASUREMENT_COLUMNS)
    )


def _measure_region(region, mpp: float, offset: tuple[float, float], scale: float) -> dict:
    """One row of measurements for one ``regionprops`` region (label-pixel units → µm)."""
    area_px = int(region.area)
    cy, cx = region.centroid
    return {
        "label": int(region.label),
        "area_px": area_px,
        "area_um2": float(area_px * mpp * mpp),
        "perimeter_um": _perimeter_px(region.image) * mpp,
        "eccentricity": _finite(region.eccentricity),
        "solidity": area_px / _convex_area_px(region.image),
        "major_axis_um": _finite(region.axis_major_length) * mpp,
        "minor_axis_um": _finite(region.axis_minor_length) * mpp,
        "centroid_y": label_to_slide_centre(cy, offset[0], scale),
        "centroid_x": label_to_slide_centre(cx, offset[1], scale),
    }


def label_to_slide_centre(coord: float, offset: float, scale: float) -> float:
    """A label-pixel-centre coordinate → level-0 slide pixel-centre coordinate."""
    return float(offset + (coord + 0.5) * scale - 0.5)


def _perimeter_px(mask: np.ndarray) -> float:
    """Crofton perimeter (4 directions) of a cropped region mask, in label pixels."""
    return float(perimeter_crofton(np.pad(mask, 1), directions=4))


def _convex_area_px(mask: np.ndarray) -> int:
    """Number of pixels whose centres lie in the convex hull of a region (hull edges included).

    Same definition as ``regionprops.area_convex`` (hull of the mid-points of the boundary
    pixels' edges) but counted row by row instead of testing every pixel, about 3x faster.
    """
    rows, cols = np.nonzero(mask & ~ndi.binary_erosion(mask))
    centres = np.stack([rows, cols], axis=1).astype(np.float64)
    points = np.concatenate([centres + step for step in ((-0.5, 0.0), (0.5, 0.0), (0.0, -0.5), (0.0, 0.5))])
    hull = points[ConvexHull(points).vertices]
    y1, x1 = hull[:, 0], hull[:, 1]
    y2, x2 = np.roll(y1, -1), np.roll(x1, -1)
    y = np.arange(mask.shape[0], dtype=np.float64)[:, None]
    crosses = (y >= np.minimum(y1, y2)) & (y <= np.maximum(y1, y2)) & (y1 != y2)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    left = np.where(crosses, x, np.inf).min(axis=1)
    right = np.where(crosses, x, -np.inf).max(axis=1)
    tolerance = 1e-9  # a pixel centre on a hull edge counts as inside
    count = np.floor(right + tolerance) - np.ceil(left - tolerance) + 1
    return int(count[np.isfinite(count) & (count > 0)].sum())


def _finite(value: float) -> float:
    """``value`` as a Python float; NaN (degenerate moments) becomes 0.0 so rows stay JSON-able."""
    value = float(value)
    return value if math.isfinite(value) else 0.0


def _check_positive(value: float, name: str) -> None:
    """Raise ValueError unless ``value`` is a finite number > 0."""
    if not (isinstance(value, int | float | np.number) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
