"""Put a guided result on a gland labels grid (the compute side of the viewer's click tool).

A labels grid (``slide.placement.GridPlacement``) sits on the slide like a napari layer: its pixel
``(i, j)`` has its centre at level-0 ``translate + (i, j) * scale`` (napari's pixel-centre
convention; the layer metadata's ``label_scale0``/``label_translate0``). The guided model's
``GlandWindow`` is resampled onto that grid, then merged: a click on background adds a new label, a click on a gland redraws that gland
(its label kept). Other glands are never overwritten, and exclusion points stay background.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_glandseg.interactive.segment import GlandWindow
from napari_glandseg.labels.edit import gland_bbox, union_window
from napari_glandseg.slide.placement import GridPlacement

Window = tuple[slice, slice]


@dataclass(frozen=True)
class GlandEdit:
    """A merge ready to write: ``new`` replaces ``labels[window]``; ``added``: a new label."""

    window: Window
    new: np.ndarray
    label: int
    added: bool


def _axis_coords(n_grid: int, t: float, s: float, origin: float, n_model: int, ppm: float) -> tuple[slice, np.ndarray]:
    """Grid indices whose pixel centre lies in the window along one axis, and their model coords."""
    # Grid pixel i's centre is at level-0 corner coordinate t + i*s + 0.5; model pixel k spans
    # [origin + k*ppm, origin + (k+1)*ppm) there, its centre at model coordinate k.
    lo = int(np.ceil((origin - 0.5 - t) / s))
    hi = int(np.ceil((origin + n_model * ppm - 0.5 - t) / s))
    lo, hi = max(0, lo), min(n_grid, hi)
    idx = np.arange(lo, max(lo, hi))
    return slice(lo, max(lo, hi)), (t + idx * s + 0.5 - origin) / ppm - 0.5


def _lerp(values: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``values`` at fractional ``coords`` along ``axis`` (edges clamped)."""
    n = values.shape[axis]
    c = np.clip(coords, 0, n - 1)
    i0 = np.clip(np.floor(c).astype(int), 0, max(0, n - 2))
    i1 = np.minimum(i0 + 1, n - 1)
    w = c - i0
    shape = [1, 1]
    shape[axis] = -1
    w = w.reshape(shape)
    return np.take(values, i0, axis) * (1 - w) + np.take(values, i1, axis) * w


def footprint(found: GlandWindow, grid: GridPlacement) -> tuple[tuple[slice, np.ndarray], tuple[slice, np.ndarray]]:
    """The grid rows and columns whose pixel centres lie in ``found``'s window, each with their
    model coordinates (see ``_axis_coords``)."""
    (h, w), (oy, ox), ppm = found.mask.shape, found.origin, found.px_per_model
    return (_axis_coords(grid.shape[0], grid.translate[0], grid.scale, oy, h, ppm),
            _axis_coords(grid.shape[1], grid.translate[1], grid.scale, ox, w, ppm))


def window_on_grid(found: GlandWindow, grid: GridPlacement) -> tuple[Window, np.ndarray] | None:
    """The found gland on the grid: ``(window, bool mask)`` cropped to the gland, or None if empty.

    Probabilities are interpolated (the selected component kept ≥ 0.5, all else below) so the
    outline follows the gland at the grid's resolution, finer or coarser than the model's.
    """
    if not found.mask.any():
        return None
    prob = np.where(found.mask, np.maximum(found.probability, 0.5), np.minimum(found.probability, 0.5 - 1e-3))
    (rows, u), (cols, v) = footprint(found, grid)
    if u.size == 0 or v.size == 0:
        return None
    mask = _lerp(_lerp(prob.astype(np.float32), u, 0), v, 1) >= 0.5
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    crop = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    window = (slice(rows.start + crop[0].start, rows.start + crop[0].stop),
              slice(cols.start + crop[1].start, cols.start + crop[1].stop))
    return window, mask[crop]


def _pixels(points: Sequence[Sequence[float]] | np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Grid pixels (rows, cols) under (y, x) points, those outside the grid dropped."""
    pts = np.floor(np.asarray(points, float).reshape(-1, 2) + 0.5).astype(int)
    keep = (pts[:, 0] >= 0) & (pts[:, 0] < shape[0]) & (pts[:, 1] >= 0) & (pts[:, 1] < shape[1])
    return pts[keep, 0], pts[keep, 1]


def gland_under(labels: np.ndarray, points: Sequence[Sequence[float]] | np.ndarray) -> int:
    """The label most of the (y, x) grid points fall on (0: mostly background or outside)."""
    rr, cc = _pixels(points, labels.shape)
    if rr.size == 0:
        return 0
    vals, counts = np.unique(np.asarray(labels[rr, cc]), return_counts=True)
    return max(0, int(vals[np.argmax(counts)]))


def merge_gland(labels: np.ndarray, mask: np.ndarray, label: int) -> np.ndarray:
    """A copy of ``labels`` where gland ``label`` is ``mask`` (other glands untouched)."""
    if mask.shape != labels.shape:
        raise ValueError(f"mask shape {mask.shape} differs from labels {labels.shape}")
    if label <= 0:
        raise ValueError(f"label must be positive, got {label}")
    out = labels.copy()
    out[(labels == label) & ~mask] = 0
    out[mask & ((labels == 0) | (labels == label))] = label
    return out


def place_gland(labels: np.ndarray, found: GlandWindow, grid: GridPlacement, include: Sequence[Sequence[float]] | np.ndarray,
                exclude: Sequence[Sequence[float]] | np.ndarray = (), *, label: int | None = None,
                grow_only: bool = False) -> GlandEdit | None:
    """The edit that puts ``found`` on ``labels`` (include/exclude: the guidance in grid (y, x)).

    A click mostly on gland ``k`` redraws ``k``; on background it adds ``labels.max() + 1``;
    ``label`` given (a refining click): that gland is redrawn wherever the click was;
    ``grow_only`` (a "this too" click): none of its pixels are taken away.
    None when nothing would be drawn (no gland found, or only on other glands' pixels).
    """
    if tuple(labels.shape) != tuple(grid.shape):
        raise ValueError(f"labels shape {labels.shape} differs from the grid's {grid.shape}")
    located = window_on_grid(found, grid)
    if located is None:
        return None
    win, mask = located
    refining = label is not None
    label = gland_under(labels, include) if label is None else int(label)
    added = label == 0
    if added:
        label = int(labels.max()) + 1 if labels.size else 1
        if np.issubdtype(labels.dtype, np.integer) and label > np.iinfo(labels.dtype).max:
            raise ValueError(f"no room for a new label in a {labels.dtype} layer (max {np.iinfo(labels.dtype).max})")
    else:  # the old outline goes, also where it lies outside the new one
        old = gland_bbox(labels, label)
        if old is not None:
            win = union_window(win, old)
    full = np.zeros((win[0].stop - win[0].start, win[1].stop - win[1].start), bool)
    ry, rx = located[0]
    full[ry.start - win[0].start:ry.stop - win[0].start, rx.start - win[1].start:rx.stop - win[1].start] = mask
    crop = np.asarray(labels[win])
    if refining:  # the model saw only its window: the gland beyond it stays as it was
        seen = np.zeros(full.shape, bool)
        (rows, _), (cols, _) = footprint(found, grid)
        seen[max(0, rows.start - win[0].start):max(0, rows.stop - win[0].start),
             max(0, cols.start - win[1].start):max(0, cols.stop - win[1].start)] = True
        full |= (crop == label) & ~seen
        if grow_only:
            full |= crop == label
    rr, cc = _pixels(np.asarray(exclude, float).reshape(-1, 2) - (win[0].start, win[1].start), full.shape)
    full[rr, cc] = False  # an exclusion point is never in the gland, whatever the grid's resolution
    if not (full & ((crop == 0) | (crop == label))).any():
        return None
    return GlandEdit(win, merge_gland(crop, full, label), label, added)


def gland_window(labels: np.ndarray, label: int, grid: GridPlacement) -> GlandWindow | None:
    """Gland ``label`` of a labels grid as a ``GlandWindow`` in level-0 pixels (a refining
    click's previous result); None when the label is not on the grid."""
    box = gland_bbox(labels, label)
    if box is None:
        return None
    mask = np.asarray(labels[box]) == label
    s = grid.scale
    # grid pixel i covers level-0 [t + i*s + 0.5 - s/2, … + s) (pixel-centre convention, see above)
    origin = tuple(float(t + b.start * s + 0.5 - s / 2) for t, b in zip(grid.translate, box, strict=True))
    return GlandWindow(mask, mask.astype(np.float32), origin, float(s))
