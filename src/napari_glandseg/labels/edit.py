"""GUI-free editing tools for gland instance labels.

Every function takes a 2-D integer labels array (0 = background, glands = positive ids) and returns
a NEW array of the same shape and dtype; the input is never modified, so callers can diff the old
and new arrays for undo. Callers usually pass windows (crops) of big layers, so the work is kept
local: per-gland operations run on the gland's bounding box only.

Pixel coordinates follow napari: pixel ``(i, j)`` has its centre at ``(y, x) = (i, j)`` and covers
``[i - 0.5, i + 0.5) x [j - 0.5, j + 0.5)``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line as draw_line
from skimage.segmentation import watershed

from napari_glandseg.labels._objects import check_labels, compact_labels, gland_objects

__all__ = [
    "delete_gland",
    "fill_holes",
    "gland_bbox",
    "label_at",
    "merge_glands",
    "relabel_consecutive",
    "remove_small",
    "split_gland",
]

#: 4-connectivity (edge neighbours only) used for connected components throughout.
FOUR = ndi.generate_binary_structure(2, 1)

#: Default smallest part (in pixels) that a split may create; smaller slivers are given back.
MIN_PART_PX = 4


# ----------------------------------------------------------------------------------------------
# validation helpers


def _as_label(label: int) -> int:
    """Return ``label`` as a Python int (rejects floats and other non-integers with TypeError)."""
    return operator.index(label)


def _check_line(line_yx: np.ndarray) -> np.ndarray:
    """Return the polyline as an (N, 2) float array after checking shape and finiteness."""
    line = np.asarray(line_yx, dtype=float)
    if line.ndim != 2 or line.shape[1] != 2 or line.shape[0] < 2:
        raise ValueError(f"line_yx must be an (N, 2) array of (y, x) vertices with N >= 2, got shape {line.shape}")
    if not np.isfinite(line).all():
        raise ValueError("line_yx contains non-finite coordinates")
    return line


def _bbox(arr: np.ndarray, label: int, margin: int = 0) -> tuple[slice, slice] | None:
    """Bounding box of ``arr == label`` grown by ``margin`` and clipped; None when absent."""
    if label <= 0:
        return None
    mask = arr == label
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = arr.shape
    return (
        slice(max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin)),
        slice(max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin)),
    )


# ----------------------------------------------------------------------------------------------
# simple edits


def delete_gland(labels: np.ndarray, label: int) -> np.ndarray:
    """Return a copy of ``labels`` with gland ``label`` set to background (0).

    A label of 0 or one that is absent gives an unchanged copy.
    """
    arr = check_labels(labels)
    label = _as_label(label)
    out = arr.copy()
    if label > 0:
        out[arr == label] = 0
    return out


def merge_glands(labels: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """Return a copy of ``labels`` in which the glands ``ids`` share one label.

    The merged gland gets the smallest of the given ids that is present in the array. This only
    relabels: glands that do not touch stay apart spatially (no gap is filled between them), so
    the merged gland may consist of several pieces. Non-positive or absent ids are ignored; when
    fewer than two distinct positive ids are present the result is an unchanged copy.
    """
    arr = check_labels(labels)
    wanted = np.array(sorted({_as_label(i) for i in ids if _as_label(i) > 0}), dtype=np.int64)
    out = arr.copy()
    if wanted.size < 2:
        return out
    mask = np.isin(arr, wanted)
    present = np.unique(arr[mask])
    if present.size < 2:
        return out
    out[mask] = present[0]
    return out


def remove_small(labels: np.ndarray, min_area_px: float) -> np.ndarray:
    """Return a copy of ``labels`` where glands with fewer than ``min_area_px`` pixels become 0.

    A gland with exactly ``min_area_px`` pixels is kept.
    """
    arr = check_labels(labels)
    ids, counts = np.unique(arr, return_counts=True)
    small = ids[(counts < min_area_px) & (ids > 0)]
    out = arr.copy()
    if small.size:
        out[np.isin(arr, small)] = 0
    return out


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Return a copy of ``labels`` with glands renumbered 1..n.

    The new numbering follows the order of the sorted original label values (the smallest
    original id becomes 1, and so on), not raster order. Background stays 0 and the partition of
    pixels into glands is unchanged.
    """
    arr = check_labels(labels)
    return compact_labels(arr)[0].astype(arr.dtype)


def union_window(a: tuple[slice, slice], b: tuple[slice, slice]) -> tuple[slice, slice]:
    """The smallest (rows, cols) window holding windows ``a`` and ``b``."""
    return (slice(min(a[0].start, b[0].start), max(a[0].stop, b[0].stop)),
            slice(min(a[1].start, b[1].start), max(a[1].stop, b[1].stop)))


def label_at(labels: np.ndarray, y: float, x: float) -> int:
    """Return the label under pixel position ``(y, x)``; 0 outside the array (or non-finite)."""
    arr = check_labels(labels)
    if not (np.isfinite(y) and np.isfinite(x)):
        return 0
    i, j = int(np.floor(y + 0.5)), int(np.floor(x + 0.5))
    if 0 <= i < arr.shape[0] and 0 <= j < arr.shape[1]:
        return int(arr[i, j])
    return 0


def gland_bbox(labels: np.ndarray, label: int, margin: int = 0) -> tuple[slice, slice] | None:
    """Return ``(rows, cols)`` slices bounding gland ``label``, grown by ``margin`` and clipped.

    None when the gland is absent (label 0, the background, counts as absent).
    """
    arr = check_labels(labels)
    margin = _as_label(margin)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    return _bbox(arr, _as_label(label), margin)


# ----------------------------------------------------------------------------------------------
# fill holes


def fill_holes(labels: np.ndarray) -> np.ndarray:
    """Return a copy of ``labels`` where holes inside each gland get that gland's label.

    A hole is a background region (4-connected) enclosed by one gland alone. Background that is
    enclosed only by several glands together stays background, and so does a hole that contains
    another (nested) gland; other glands are never overwritten.
    """
    arr = check_labels(labels)
    out = arr.copy()
    for label, box in gland_objects(arr):
        _fill_holes_of(arr, out, label, box)
    return out


def _fill_holes_of(arr: np.ndarray, out: np.ndarray, label: int, box: tuple[slice, slice]) -> None:
    """Fill the holes of gland ``label`` (read from ``arr``) into ``out``, within ``box``."""
    crop = arr[box]
    mask = crop == label
    holes = ndi.binary_fill_holes(mask) & ~mask
    if not holes.any():
        return
    hole_ids, n = ndi.label(holes, FOUR)
    occupied = ndi.maximum(crop, hole_ids, np.arange(1, n + 1))
    fill = np.isin(hole_ids, np.flatnonzero(np.asarray(occupied) == 0) + 1)
    out[box][fill] = label


# ----------------------------------------------------------------------------------------------
# split


def split_gland(
    labels: np.ndarray,
    label: int,
    line_yx: np.ndarray,
    *,
    next_label: int | None = None,
    min_part_px: int = MIN_PART_PX,
) -> np.ndarray:
    """Return a copy of ``labels`` with gland ``label`` cut in pieces along a polyline.

    ``line_yx`` is an (N, 2) array of (y, x) vertices (N >= 2) in the array's pixel coordinates;
    it may extend beyond the gland and the array (it is clipped). The line is rasterised 1 px wide
    between the rounded vertices, with the corner pixel of every diagonal step added so the cut is
    4-connected. The gland pixels on the cut are removed and the remaining 4-connected components
    become the parts: the largest part keeps ``label``, the others get ``next_label``,
    ``next_label + 1``, ... in raster order (default ``next_label``: the array's maximum + 1; pass
    it explicitly when ``labels`` is a window of a bigger layer, so new ids stay unique there).

    No area is lost: the cut pixels, and slivers smaller than ``min_part_px`` pixels, are given
    back to the adjacent part by growing the parts 4-connectedly inside the gland (so every part
    remains one 4-connected piece); pixels that growth cannot reach (only when the gland was not
    4-connected to begin with) go to the nearest part by Euclidean distance.

    An unchanged copy is returned when ``label`` is 0 or absent, or when the line does not split
    the gland, i.e. when it leaves no more parts of at least ``min_part_px`` pixels than the gland
    had 4-connected pieces before.
    """
    arr = check_labels(labels)
    label = _as_label(label)
    line = _check_line(line_yx)
    out = arr.copy()
    box = _bbox(arr, label)
    if box is None:
        return out
    mask = arr[box] == label
    cut = _rasterise_polyline(line, (box[0].start, box[1].start), mask.shape) & mask
    if not cut.any():
        return out
    parts = _parts_after_cut(mask, cut, max(1, min_part_px))
    if parts is None:
        return out
    parts = _give_back(parts, mask)
    new_ids = _part_ids(arr, parts, label, next_label)
    out[box][mask] = new_ids[parts[mask]]
    return out


def _parts_after_cut(mask: np.ndarray, cut: np.ndarray, min_part_px: int) -> np.ndarray | None:
    """Label the parts left by ``cut`` (1..k, slivers dropped to 0); None if the cut splits nothing."""
    parts, n = ndi.label(mask & ~cut, FOUR)
    sizes = np.bincount(parts.ravel(), minlength=n + 1)[1:]
    keep = np.flatnonzero(sizes >= min_part_px) + 1
    _, pieces_before = ndi.label(mask, FOUR)
    if keep.size <= pieces_before:
        return None
    renumber = np.zeros(n + 1, dtype=np.int32)
    renumber[keep] = np.arange(1, keep.size + 1)
    return renumber[parts]


def _give_back(parts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Assign the unlabelled pixels of ``mask`` to a part: geodesic 4-connected growth, then nearest."""
    grown = watershed(np.zeros(mask.shape, dtype=np.uint8), markers=parts, mask=mask, connectivity=1)
    left = mask & (grown == 0)
    if left.any():
        iy, ix = ndi.distance_transform_edt(grown == 0, return_distances=False, return_indices=True)
        grown[left] = grown[iy[left], ix[left]]
    return grown


def _part_ids(arr: np.ndarray, parts: np.ndarray, label: int, next_label: int | None) -> np.ndarray:
    """Lookup table part index -> gland id: the largest part keeps ``label``, others get new ids."""
    n = int(parts.max())
    current = int(arr.max())
    first = current + 1 if next_label is None else _as_label(next_label)
    if first <= current:
        raise ValueError(f"next_label must exceed every label in the array ({current}), got {first}")
    if first + n - 2 > np.iinfo(arr.dtype).max:
        raise ValueError(f"not enough room for {n - 1} new label(s) starting at {first} in dtype {arr.dtype}")
    sizes = np.bincount(parts.ravel(), minlength=n + 1)[1:]
    largest = int(np.argmax(sizes)) + 1
    ids = np.zeros(n + 1, dtype=arr.dtype)
    others = [p for p in range(1, n + 1) if p != largest]
    ids[largest] = label
    ids[others] = np.arange(first, first + len(others))
    return ids


def _rasterise_polyline(line: np.ndarray, origin: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask (of ``shape``, whose pixel (0, 0) is ``origin``) of the 4-connected cut line."""
    verts = np.rint(line) - np.asarray(origin, dtype=float)
    lo, hi = np.array([-1.0, -1.0]), np.array(shape, dtype=float)  # one pixel of margin
    rr, cc = [], []
    for p, q in zip(verts[:-1], verts[1:], strict=True):
        seg = _clip_segment(p, q, lo, hi)
        if seg is None:
            continue
        a, b = np.rint(seg[0]).astype(int), np.rint(seg[1]).astype(int)
        r, c = draw_line(a[0], a[1], b[0], b[1])
        rr.append(r)
        cc.append(c)
    result = np.zeros(shape, dtype=bool)
    if not rr:
        return result
    r, c = np.concatenate(rr), np.concatenate(cc)
    diagonal = (np.abs(np.diff(r)) == 1) & (np.abs(np.diff(c)) == 1)
    r = np.concatenate([r, r[:-1][diagonal]])  # corner pixel of each diagonal step
    c = np.concatenate([c, c[1:][diagonal]])
    inside = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
    result[r[inside], c[inside]] = True
    return result


def _clip_segment(p: np.ndarray, q: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Clip segment p-q to the box [lo, hi] (Liang-Barsky); None when it misses the box."""
    d = q - p
    t0, t1 = 0.0, 1.0
    for k in range(2):
        for step, room in ((-d[k], p[k] - lo[k]), (d[k], hi[k] - p[k])):
            if step == 0:
                if room < 0:
                    return None
                continue
            t = room / step
            if step < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
    if t0 > t1:
        return None
    return p + t0 * d, p + t1 * d
