"""Apply gland edits (labels/edit.py) to a napari Labels layer as one undoable step.

The edit functions are pure (array in, array out). Here the difference between the old and
new array is written with ``Labels.data_setitem``, which records napari's undo history, so
Ctrl+Z / Ctrl+Shift+Z undo and redo every tool like a brush stroke. Edits that concern one
gland work on that gland's bounding box (plus a margin), which keeps a tool on a 4096² layer
to a few milliseconds instead of diffing the whole array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def apply_new_labels(layer, new: np.ndarray, window: tuple[slice, slice] | None = None) -> int:
    """Write ``new`` into ``layer.data[window]`` where it differs; returns pixels changed.

    One ``data_setitem`` call = one undo step.
    """
    data = layer.data
    window = window or (slice(0, data.shape[0]), slice(0, data.shape[1]))
    old = np.asarray(data[window])
    if new.shape != old.shape:
        raise ValueError(f"edit returned shape {new.shape}, expected {old.shape}")
    changed = np.nonzero(new != old)
    n = int(changed[0].size)
    if n:
        idx = (changed[0] + window[0].start, changed[1] + window[1].start)
        layer.data_setitem(idx, new[changed].astype(data.dtype, copy=False))
    return n


def label_at(layer, world_point: Sequence[float]) -> int:
    """The label under a world position (0 outside the layer): ``labels.edit.label_at`` there."""
    from napari_glandseg.labels.edit import label_at as label_at_pixel

    y, x = np.asarray(layer.world_to_data(world_point), float)[-2:]
    return label_at_pixel(layer.data, y, x)


def line_in_data(layer, world_vertices: np.ndarray) -> np.ndarray:
    """A drawn path's vertices (world, N×2) in the layer's data pixels (N×2, y, x)."""
    pts = np.asarray(world_vertices, float)[:, -2:]
    return np.array([np.asarray(layer.world_to_data(p), float)[-2:] for p in pts])


def label_under_line(labels: np.ndarray, line: np.ndarray) -> int:
    """The gland a line crosses most (0 when it crosses none)."""
    samples = []
    for p, q in zip(line[:-1], line[1:], strict=False):
        n = int(np.ceil(np.abs(q - p).max())) + 1
        samples.append(np.linspace(p, q, n))
    if not samples:
        return 0
    pts = np.round(np.concatenate(samples)).astype(int)
    h, w = labels.shape
    inside = (pts[:, 0] >= 0) & (pts[:, 0] < h) & (pts[:, 1] >= 0) & (pts[:, 1] < w)
    vals = labels[pts[inside, 0], pts[inside, 1]]
    vals = vals[vals > 0]
    return int(np.bincount(vals).argmax()) if vals.size else 0


def on_window(fn: Callable[[np.ndarray], np.ndarray], labels: np.ndarray, window) -> np.ndarray:
    """Run an edit on a crop; edit functions return new arrays and never write their input (tests check it)."""
    return fn(np.array(labels[window], copy=True))


def features_table(rows: list[dict]) -> Any:
    """A napari Labels features table (``index`` = label value) from measurement rows (None if none)."""
    import pandas as pd

    if not rows:
        return None
    df = pd.DataFrame(rows)
    if "label" in df:
        df.insert(0, "index", df["label"].astype(int))
    return df
