"""GUI-free bookkeeping carried in a labels layer's ``metadata["glandseg"]``.

A gland labels layer must remember where it sits on the slide and where its corrections go,
so that commit, export and the writers work from the layer alone (after a pan, a layer
switch, or a save/re-open). Plain JSON-able dicts: napari copies metadata around freely.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

KEY = "glandseg"

#: Kinds of gland layers: a "Segment view" result, a whole-slide store, a store region opened
#: for editing, or glands imported from GeoJSON.
KINDS = ("view", "store", "edit", "import")


def default_store_path(slide_path: str | os.PathLike, slide_name: str | None = None) -> Path:
    """``<slide folder>/<slide name>.glandseg.zarr``: where whole-slide results and autosaves go."""
    p = Path(slide_path)
    name = slide_name or p.name.split(".")[0]
    return p.parent / f"{name}.glandseg.zarr"


def make_meta(
    *,
    kind: str,
    slide_path: str | None,
    slide_name: str,
    slide_mpp: float | None,
    slide_shape: tuple[int, int],
    label_scale0: float,
    label_translate0: tuple[float, float],
    model: str | None = None,
    model_mpp: float | None = None,
    bbox0: tuple[int, int, int, int] | None = None,
    store: str | None = None,
    store_region: tuple[int, int, int, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``metadata["glandseg"]`` dict of a gland labels layer.

    ``label_scale0``/``label_translate0`` place label pixel ``i`` at level-0 px
    ``translate + i * scale`` (the writers convert with these); ``store_region`` is the
    ``(y, x, h, w)`` of an edited region in the store's own pixels.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown gland layer kind {kind!r}; expected one of {KINDS}")
    meta = {
        "kind": kind,
        "slide_path": None if slide_path is None else str(slide_path),
        "slide_name": slide_name,
        "slide_mpp": slide_mpp,
        "slide_shape": [int(slide_shape[0]), int(slide_shape[1])],
        "label_scale0": float(label_scale0),
        "label_translate0": [float(label_translate0[0]), float(label_translate0[1])],
        "model": model,
        "model_mpp": model_mpp,
        "bbox0": None if bbox0 is None else [int(v) for v in bbox0],
        "store": None if store is None else str(store),
        "store_region": None if store_region is None else [int(v) for v in store_region],
        "reviewed": [],
    }
    meta.update(extra)
    return meta


def get_meta(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """The glandseg dict of a layer's metadata, or None for layers this plugin did not make."""
    if not metadata:
        return None
    meta = metadata.get(KEY)
    return meta if isinstance(meta, dict) else None


def labels_mpp(meta: dict[str, Any]) -> float | None:
    """µm per label pixel: the slide's µm/px times level-0 px per label px (None if unknown)."""
    if meta.get("slide_mpp"):
        return float(meta["slide_mpp"]) * float(meta.get("label_scale0", 1.0))
    return meta.get("model_mpp")
