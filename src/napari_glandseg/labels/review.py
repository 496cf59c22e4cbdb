"""GUI-free commit of corrected labels into the slide's label store (autosave + review log).

A corrected layer is either a region opened from the store ("edit": same pixel grid, written
back as is) or a "Segment view"/imported result placed on the slide in level-0 px (resampled
onto the store's grid, creating the store next to the slide at the model's µm/px if needed).
``LabelStore.write_region`` writes atomically per chunk and appends the reviewed-region log,
so every commit is on disk at once.
"""

from __future__ import annotations

import getpass
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg.labels.layer_meta import GlandLayerMeta
from napari_glandseg.slide.placement import GridPlacement
from napari_glandseg.slide.view_geometry import resample_to_grid


def store_mpp_for(meta: GlandLayerMeta) -> float:
    """µm/px of a new store for this layer's slide: the model's (what segment_slide writes)."""
    if meta.model_mpp:
        return float(meta.model_mpp)
    if meta.labels_mpp:
        return float(meta.labels_mpp)
    raise ValueError("cannot autosave: neither the model's nor the slide's µm/px is known")


def open_or_create_store(meta: GlandLayerMeta) -> Any:
    """The layer's label store; created (empty, at the model's µm/px) if it does not exist yet."""
    from napari_glandseg.labels.store import LabelStore

    if not meta.store:
        raise ValueError("this layer has no label store to commit to")
    path = Path(meta.store)
    if path.exists():
        return LabelStore.open(path)
    mpp = store_mpp_for(meta)
    f = mpp / float(meta.slide_mpp) if meta.slide_mpp else float(meta.placement.scale)
    shape = GridPlacement.whole_slide(meta.slide_shape, f).shape
    return LabelStore.create(path, shape, mpp=mpp, source=meta.slide_path)


def store_placement(store: Any, meta: GlandLayerMeta) -> GridPlacement:
    """Where the store's level 0 sits on the layer's slide."""
    return GridPlacement.of_store(store.levels[0].shape, meta.slide_shape, getattr(store, "mpp", None),
                                  meta.slide_mpp)


def to_store_region(labels: np.ndarray, meta: GlandLayerMeta, store: Any) -> tuple[int, int, np.ndarray]:
    """``(y, x, data)``: the layer's labels on the store's level-0 grid."""
    if meta.kind == "edit" and meta.store_region:
        y, x = meta.store_region[:2]
        return int(y), int(x), np.asarray(labels)
    grid = store_placement(store, meta)
    src = meta.placement
    # resample_to_grid wants store pixel j's centre at j*f: place the layer relative to the store.
    return resample_to_grid(np.asarray(labels), src.scale, src.relative_to(grid), grid.scale,
                            dst_shape=store.levels[0].shape)


def commit(labels: np.ndarray, meta: GlandLayerMeta, *, reviewed_by: str | None = None) -> dict[str, Any]:
    """Write the layer's labels into its store and log the region as reviewed.

    Returns the review record (store path, region in store px, time, model), which the widget
    also keeps in the layer's metadata. Holds the store's lock: a whole-slide run or another
    commit writing the same store makes this one fail with ``FolderLocked``.
    """
    from napari_glandseg._lock import FolderLock

    if not meta.store:
        raise ValueError("this layer has no label store to commit to")
    user = reviewed_by or _user()
    with FolderLock(meta.store, f"commit corrections by {user}"):  # one writer per store
        store = open_or_create_store(meta)
        y, x, data = to_store_region(labels, meta, store)
        if data.size == 0:
            raise ValueError("the layer does not overlap the slide: nothing to commit")
        store.write_region(y, x, data.astype(np.int32, copy=False), reviewed_by=user, model=meta.model)
    return {
        "store": str(meta.store),
        "region": [int(y), int(x), int(data.shape[0]), int(data.shape[1])],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "model": meta.model,
        "reviewed_by": user,
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"
