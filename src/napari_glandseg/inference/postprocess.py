"""From class probabilities to gland instances.

Touching glands are the hard case: the model predicts a thin *border* class between them. We
take the gland interiors (gland probability high, border probability low) as seeds, label them,
and grow each seed back over the whole gland region (interior + border) so that the border
pixels are returned to the gland they belong to. Where two glands touch without a border the
model saw, their interiors join at a neck: ``neck_um`` > 0 erodes the seeds by that radius, so
that each core left is a seed of its own (a seed no core survives in stays whole). Holes are
filled and objects smaller than a minimum area in µm² are dropped. A model with a distance head
(``model.outputs``) seeds glands where its map says a pixel lies deep inside one
(``seed_distance``): what separates glands that touch along a whole side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import disk
from skimage.segmentation import watershed

from napari_glandseg.model.card import DEFAULT_POSTPROCESS


def probabilities_to_instances(
    probs: np.ndarray,
    *,
    mpp: float,
    params: dict[str, Any] | None = None,
) -> np.ndarray:
    """C×H×W probabilities (background, gland[, border[, distance]]) → int32 H×W gland labels
    (0 = none)."""
    return _to_instances(probs, mpp=mpp, params=params, keep_edge_objects=False)


def probabilities_to_instances_keep_edges(
    probs: np.ndarray, *, mpp: float, params: dict[str, Any] | None = None
) -> np.ndarray:
    """As :func:`probabilities_to_instances`, but objects touching the image edge are kept
    whatever their size: in a whole-slide run they may be parts of a gland cut by the chunk's
    edge, and the stitch pass filters them by the area of the whole gland."""
    return _to_instances(probs, mpp=mpp, params=params, keep_edge_objects=True)


def _to_instances(
    probs: np.ndarray, *, mpp: float, params: dict[str, Any] | None, keep_edge_objects: bool
) -> np.ndarray:
    if probs.ndim != 3 or probs.shape[0] < 2:
        raise ValueError(f"expected C×H×W class probabilities with C >= 2, got {probs.shape}")
    p = {**DEFAULT_POSTPROCESS, **(params or {})}
    gland = probs[1].astype(np.float32, copy=False)
    border = probs[2] if probs.shape[0] > 2 else np.zeros_like(gland)
    region = (gland + border) >= p["gland_threshold"]
    interior = region & (border < p["border_threshold"]) & (gland >= border)
    deep = ridge = None
    if probs.shape[0] > 3 and p.get("seed_distance", 0.0) > 0:
        deep = probs[3] >= p["seed_distance"]
        if p.get("seed_valley", 0.0) > 0:
            ridge = probs[3] >= p["seed_distance"] - p["seed_valley"]
    return _instances_from_masks(
        region, interior, float(p["min_area_um2"]) / (mpp * mpp), bool(p["fill_holes"]),
        keep_edge_objects=keep_edge_objects, neck_px=float(p.get("neck_um", 0.0)) / mpp, deep=deep, ridge=ridge,
    )


def split_at_cores(seeds: np.ndarray, deep: np.ndarray, min_core_px: float,
                   ridge: np.ndarray | None = None) -> np.ndarray:
    """Labelled ``seeds`` with every seed that holds two or more cores (pieces of it that lie
    ``deep`` in their gland by a distance head's map, of ``min_core_px`` or more) replaced by
    those cores, one seed each: glands that touch without a border between them are seeded
    apart. Cores joined by a ``ridge`` (the map a valley's depth below the core level: a mask
    holding ``deep``) are one core: what splits is a real valley, not noise along a gland's
    middle. A seed with one core or none stays whole: the map splits glands, it never merges,
    shrinks or deletes one."""
    cores, n = ndi.label((seeds > 0) & deep)
    if n >= 2 and ridge is not None:
        ridges, n = ndi.label((seeds > 0) & ridge)
        cores = np.where(cores > 0, ridges, 0)  # a core is named by the ridge it lies on
    if n < 2:
        return seeds
    big = np.bincount(cores.ravel(), minlength=n + 1) >= min_core_px
    big[0] = False
    inside = cores > 0
    seed_of_core = np.zeros(n + 1, np.int64)
    seed_of_core[cores[inside]] = seeds[inside]  # a core lies in one seed
    n_cores = np.bincount(seed_of_core[big], minlength=int(seeds.max()) + 1)
    split = n_cores >= 2
    split[0] = False
    moved = big & split[seed_of_core]
    lut = np.zeros(n + 1, np.int32)
    lut[moved] = int(seeds.max()) + 1 + np.arange(int(moved.sum()), dtype=np.int32)
    out = np.where(split[seeds], 0, seeds).astype(np.int32)
    return np.where(lut[cores] > 0, lut[cores], out)


def _instances_from_masks(
    region: np.ndarray,
    interior: np.ndarray,
    min_area_px: float,
    fill_holes: bool,
    *,
    keep_edge_objects: bool = False,
    neck_px: float = 0.0,
    deep: np.ndarray | None = None,
    ridge: np.ndarray | None = None,
) -> np.ndarray:
    # Seeds must be a meaningful part of a gland; specks in the border band would split glands.
    seeds, n = ndi.label(interior)
    if n == 0:
        return np.zeros(region.shape, np.int32)
    min_seed_px = max(4.0, 0.1 * min_area_px)
    if deep is not None:
        seeds = split_at_cores(seeds, deep, min_seed_px, ridge)
    seed_sizes = np.bincount(seeds.ravel())
    small = seed_sizes < min_seed_px
    small[0] = False
    seeds[small[seeds]] = 0
    if round(neck_px) >= 1:
        # the image's edge is no gland's edge: erode from the seeds' own outlines only, so that a
        # whole-slide chunk seeds a gland as a one-piece run does
        seeds = seeds_at_necks(seeds > 0, disk(round(neck_px)), min_core_px=min_seed_px, border_value=1)
    labels = flood_seeds(region, interior, seeds)
    if fill_holes:
        labels = fill_label_holes(labels)
    keep = None
    if keep_edge_objects:
        keep = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return remove_small_objects(labels, min_area_px, keep=keep)


def seeds_at_necks(mask: np.ndarray, structure: np.ndarray, *, min_core_px: float = 1.0,
                   border_value: int = 0) -> np.ndarray:
    """int32 seeds of ``mask``: the cores left after eroding it by ``structure`` (of at least
    ``min_core_px`` pixels), one seed each, so a piece joined by a neck narrower than the
    structure gives two; a piece of ``mask`` where no such core survives is one seed whole."""
    cores, n = ndi.label(ndi.binary_erosion(mask, structure, border_value=border_value))
    if n:
        small = np.bincount(cores.ravel()) < min_core_px
        small[0] = False
        cores[small[cores]] = 0
        cores, n = ndi.label(cores > 0)
    pieces, m = ndi.label(mask)
    lone = np.ones(m + 1, bool)
    lone[pieces[cores > 0]] = False
    lone[0] = False
    lut = np.zeros(m + 1, np.int32)
    lut[lone] = np.arange(n + 1, n + 1 + int(lone.sum()), dtype=np.int32)
    return np.where(cores > 0, cores, lut[pieces]).astype(np.int32)


def flood_seeds(region: np.ndarray, interior: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Grow the labelled ``seeds`` over the gland ``region`` (int32 labels; region pixels no seed
    reaches stay 0), one region component at a time.

    A component with one seed is that seed's gland whatever the flooding order; one with none is
    dropped. Only components where two or more seeds compete are flooded (a watershed in the
    component's box), in order of distance to the interior of that component, so how a gland
    cluster is split never depends on pixels outside it: a whole-slide chunk that sees the whole
    cluster splits it as a one-piece run does.
    """
    comps, n = ndi.label(region)
    if n == 0:
        return np.zeros(region.shape, np.int32)
    where = seeds > 0
    base = int(seeds.max()) + 1
    pairs = np.unique(comps[where].astype(np.int64) * base + seeds[where])  # (component, seed)
    comp_of, seed_of = pairs // base, (pairs % base).astype(np.int32)
    n_seeds = np.bincount(comp_of, minlength=n + 1)
    single = n_seeds[comp_of] == 1
    lut = np.zeros(n + 1, np.int32)
    lut[comp_of[single]] = seed_of[single]
    labels = lut[comps]
    boxes = ndi.find_objects(comps)
    for k in np.nonzero(n_seeds >= 2)[0]:
        sl = boxes[k - 1]
        inside = comps[sl] == k
        priority = ndi.distance_transform_edt(~(interior[sl] & inside))
        flooded = watershed(priority, np.where(inside, seeds[sl], 0), mask=inside)
        labels[sl][inside] = flooded[inside]
    return labels


def fill_label_holes(labels: np.ndarray) -> np.ndarray:
    """Fill background holes fully enclosed by one gland."""
    out = labels.copy()
    # a hole of one gland is a hole of all glands together: only glands whose box holds one look
    any_hole = enclosed(labels > 0)
    if not any_hole.any():
        return out
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None or not any_hole[sl].any():
            continue
        holes = enclosed(labels[sl] == i) & (labels[sl] == 0)
        out[sl][holes] = i
    return out


def enclosed(mask: np.ndarray) -> np.ndarray:
    """The pixels off ``mask`` that no 4-connected path off it joins to the image's edge (what
    ``ndi.binary_fill_holes`` adds), by one labelling instead of a dilation run to convergence."""
    off, n = ndi.label(~mask)
    if n == 0:
        return np.zeros(mask.shape, bool)
    inner = np.ones(n + 1, bool)
    inner[0] = False
    inner[np.concatenate([off[0], off[-1], off[:, 0], off[:, -1]])] = False
    return inner[off]


def remove_small_objects(
    labels: np.ndarray, min_area_px: float, keep: np.ndarray | None = None
) -> np.ndarray:
    """Drop objects under ``min_area_px`` (except the ids in ``keep``); renumber the rest 1..n (int32)."""
    sizes = np.bincount(labels.ravel())
    keep_mask = sizes >= min_area_px
    if keep is not None:
        keep_mask[np.asarray(keep, np.intp)] = True
    keep_mask[0] = False
    lut = np.zeros(len(sizes), np.int32)
    lut[keep_mask] = np.arange(1, int(keep_mask.sum()) + 1, dtype=np.int32)
    return lut[labels]
