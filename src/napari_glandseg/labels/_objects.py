"""Glands of a label image by id, also when ids are huge and sparse (whole-slide stores).

``ndimage.find_objects`` allocates one entry per id up to the largest, and whole-slide runs give
ids like ``chunk << 16``: those are compacted first.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def check_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as an ndarray, checked to be 2-D, integer-typed (not bool: that is a mask) and non-negative."""
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels must be a 2-D array, got {arr.ndim}-D with shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must have an integer dtype, got {arr.dtype}")
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.size and arr.min() < 0:
        raise ValueError(f"labels must be non-negative (0 = background), found minimum {arr.min()}")
    return arr


def compact_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(compact, ids)``: labels renumbered 1..n (int32) and ``ids[k]`` the original id of k (ids[0] = 0)."""
    ids, inverse = np.unique(labels, return_inverse=True)
    if ids.size == 0 or ids[0] != 0:
        ids, inverse = np.concatenate([[0], ids]).astype(ids.dtype), inverse + 1
    return inverse.reshape(labels.shape).astype(np.int32), ids


def is_sparse(labels: np.ndarray) -> bool:
    """True when the largest id is far above the pixel count (find_objects would waste memory)."""
    return labels.size > 0 and int(labels.max()) > 2 * labels.size + 1024


def gland_objects(labels: np.ndarray) -> list[tuple[int, tuple[slice, slice]]]:
    """``(label, bounding box)`` of every gland (label > 0), in increasing label order."""
    if labels.size == 0:
        return []
    if not is_sparse(labels):
        return [(i + 1, box) for i, box in enumerate(ndi.find_objects(labels)) if box is not None]
    compact, ids = compact_labels(labels)
    return [(int(ids[i + 1]), box) for i, box in enumerate(ndi.find_objects(compact)) if box is not None]
