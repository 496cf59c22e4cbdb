"""GUI-free: export the reviewed regions of a layer's label store as a training package."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def reviewed_store(meta: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """The layer's label store and its reviewed regions (quick: for a check before a job starts).

    Raises ``ValueError`` when nothing was committed yet: only reviewed regions are ground truth.
    """
    from napari_glandseg.labels.store import LabelStore

    store_path = Path(meta["store"])
    if not store_path.exists():
        raise ValueError(f"{store_path}: no label store yet; Commit your corrections first")
    store = LabelStore.open(store_path, read_only=True)
    regions = store.reviewed_regions()
    if not regions:
        raise ValueError(f"{store_path}: no reviewed regions; Commit your corrections first")
    return store, regions


def export_reviewed(meta: dict[str, Any], out_dir: str | Path) -> Path:
    """Write image tiles + masks of every reviewed region of ``meta["store"]`` to ``out_dir``."""
    from napari_glandseg.labels.export import export_training_package
    from napari_glandseg.slide import open_slide

    store, regions = reviewed_store(meta)
    if not meta.get("slide_path"):
        raise ValueError("the slide file of this layer is unknown; open the slide with napari-glandseg")
    slide = open_slide(meta["slide_path"], mpp=meta.get("slide_mpp"))
    mpp = getattr(store, "mpp", None) or meta.get("model_mpp")
    return export_training_package(out_dir, slide, store, regions, mpp=mpp, model_name=meta.get("model"))
