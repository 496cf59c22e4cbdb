"""The distance head's target: each gland pixel's distance to its gland's own edge, as a share
of that gland's deepest pixel (1 at a gland's core, 0 at its edge and off glands).

Where two glands touch along a whole side the class target has only a 2-px border between them,
and a model that misses it merges them; their distance maps still have two separate cores, which
the post-processing seeds apart (``postprocess.seed_distance``). Edges are background and other
glands; an image's edge is no gland's edge (a gland the image cuts keeps its depth there).

The map is made once per training image, at full size, so that a crop sees the depth of the
whole gland, not of the part the crop holds. It travels through cropping, resizing and
augmentation packed into the instance labels (``pack_labels``), and into the loss packed into
the class target (``pack_target``); a level of 0 means "no distance known here" (padding, glass
cuts, targets made without one), where the distance loss does not look.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_glandseg.labels.metrics import distinct

#: the distance is stored in LEVELS steps, as level 1 + round(LEVELS * distance); 0 is "unknown"
LEVELS = 254
_LABEL_SHIFT = 20  # instance ids below 2**20, levels above
_TARGET_SHIFT = 8  # classes (with SEPARATION, IGNORE = 255) below 2**8, levels above


def gland_distance(labels: np.ndarray) -> np.ndarray:
    """float32 H×W: each gland pixel's Euclidean distance to the nearest pixel not of its gland,
    divided by the largest such distance in its gland; 0 off glands."""
    labels = np.asarray(labels)
    fg = labels > 0
    if not fg.any():
        return np.zeros(labels.shape, np.float32)
    # a pixel whose 3×3 neighbourhood is all its own gland is inside it; mode "nearest": the image's
    # edge is no gland's edge
    lo = ndi.minimum_filter(labels, size=3, mode="nearest")
    hi = ndi.maximum_filter(labels, size=3, mode="nearest")
    inside = fg & (lo == labels) & (hi == labels)
    if inside.all():  # one gland fills the image: no edge to measure from
        return np.ones(labels.shape, np.float32)
    depth = ndi.distance_transform_edt(inside).astype(np.float32)
    ids, dense = distinct(labels)
    deepest = np.asarray(ndi.maximum(depth, dense, np.arange(len(ids))), np.float32)
    return np.where(fg, depth / np.maximum(deepest[dense], 1.0), 0.0).astype(np.float32)


def pack_labels(labels: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """int32 instance labels (renumbered 1..n: a slide's stitched ids run far beyond what the low
    bits hold) with their :func:`gland_distance` levels in the high bits. With ``valid``, the
    distances are those of the reviewed labels (``data.reviewed_labels``): whatever unreviewed
    pixels hold draws no edge inside a reviewed gland."""
    from napari_glandseg.train.data import reviewed_labels

    values, ids = distinct(np.asarray(labels))
    if len(values) and values[0] != 0:  # no background: the smallest id must not become it
        ids = ids + 1
    if len(values) >= 1 << _LABEL_SHIFT:
        raise ValueError(f"{len(values)} glands in one image: at most {(1 << _LABEL_SHIFT) - 1} carry a distance")
    ids = ids.astype(np.int32)
    depth = gland_distance(ids if valid is None else reviewed_labels(ids, valid))
    level = 1 + np.rint(LEVELS * depth).astype(np.int32)
    return ids | (level << _LABEL_SHIFT)


def split_labels(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pack_labels`'s output (cropped, resized, augmented: any pixel may be 0) → (instance
    ids, levels; 0 where nothing was packed)."""
    packed = np.asarray(packed, np.int32)
    return packed & ((1 << _LABEL_SHIFT) - 1), packed >> _LABEL_SHIFT


def with_distance(sample):
    """A ``data.Sample`` whose labels carry their distance levels (:func:`pack_labels`)."""
    return dataclasses.replace(sample, labels=pack_labels(sample.labels, sample.valid))


def pack_target(target: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """A class target (``data.make_targets``, uint8) with distance levels above it: int64."""
    return target.astype(np.int64) | (levels.astype(np.int64) << _TARGET_SHIFT)


def split_target(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A (packed) target batch → (class target, distance in [0, 1], where the distance is known)."""
    level = target >> _TARGET_SHIFT
    return target & ((1 << _TARGET_SHIFT) - 1), (level - 1).clamp_min(0).float() / LEVELS, level > 0
