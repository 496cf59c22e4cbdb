"""GUI-free: export the reviewed regions of a layer's label store as a training package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_glandseg.labels.layer_meta import GlandLayerMeta


def reviewed_store(meta: GlandLayerMeta) -> tuple[Any, list[dict[str, Any]]]:
    """The layer's label store and its reviewed regions (quick: for a check before a job starts).

    Raises ``ValueError`` when nothing was committed yet: only reviewed regions are ground truth.
    """
    from napari_glandseg.labels.store import LabelStore

    if not meta.store:
        raise ValueError("this layer has no label store")
    store_path = Path(meta.store)
    if not store_path.exists():
        raise ValueError(f"{store_path}: no label store yet; Commit your corrections first")
    store = LabelStore.open(store_path, read_only=True)
    regions = store.reviewed_regions()
    if not regions:
        raise ValueError(f"{store_path}: no reviewed regions; Commit your corrections first")
    return store, regions


def export_reviewed(meta: GlandLayerMeta, out_dir: str | Path) -> Path:
    """Write image tiles + masks of every reviewed region of ``meta["store"]`` to ``out_dir``."""
    from napari_glandseg.labels.export import export_training_package
    from napari_glandseg.slide import open_slide

    store, regions = reviewed_store(meta)
    if not meta.slide_path:
        raise ValueError("the slide file of this layer is unknown; open the slide with napari-glandseg")
    slide = open_slide(meta.slide_path, mpp=meta.slide_mpp)
    mpp = getattr(store, "mpp", None) or meta.model_mpp
    return export_training_package(out_dir, slide, store, regions, mpp=mpp, model_name=meta.model)


def layer_base_model(meta: GlandLayerMeta, known: list[str], default: str) -> str:
    """The model that made a gland layer, when it can be loaded by name (a preset or a user
    model); else ``default``."""
    name = meta.model
    return name if name in known else default


def finetune_reviewed(meta: GlandLayerMeta, base: str, out_dir: Path, *, model_mpp: float, minutes: float,
                      extra: str | Path | None = None, extra_mpp: float | None = None,
                      settings: dict[str, Any] | None = None, progress: Any = None, cancel: Any = None) -> Any:
    """Fine-tune ``base`` on the reviewed regions of the layer's store (plus ``extra``: a training
    package, or a folder with images/ and masks/ at ``extra_mpp``) into ``out_dir``
    (``finetune_on_corrections``; call from a worker). ``model_mpp``: the base model's µm/px."""
    from napari_glandseg.errors import GlandsegError
    from napari_glandseg.train.corrections import TOTAL, finetune_on_corrections
    from napari_glandseg.train.corrections_data import ImageFolders, reviewed_samples
    from napari_glandseg.train.corrections_settings import CorrectionSettings

    if progress is not None:
        progress(0, TOTAL, "reading the reviewed regions…")
    store, regions = reviewed_store(meta)
    packages, folders = [], []
    if extra:
        extra = Path(extra)
        if (extra / "manifest.json").exists():
            packages.append(extra)
        elif (extra / "images").is_dir() and (extra / "masks").is_dir():
            if not extra_mpp:
                raise GlandsegError(f"{extra}: give the µm/px of its images")
            folders.append(ImageFolders(extra / "images", extra / "masks", float(extra_mpp)))
        else:
            raise GlandsegError(f"{extra}: neither a training package (manifest.json) nor a folder with images/ and masks/")
    if not meta.slide_path:
        raise GlandsegError("the slide file of this layer is unknown; open the slide with napari-glandseg")
    samples = reviewed_samples(store.path, meta.slide_path, model_mpp=model_mpp, slide_mpp=meta.slide_mpp)
    source = {"reviewed": str(store.path), "slide": str(meta.slide_path), "regions": len(regions)}
    return finetune_on_corrections(
        base, out_dir=out_dir, samples=samples, sources=[source], folders=folders, packages=packages,
        settings=CorrectionSettings(minutes=minutes, **(settings or {})), progress=progress, cancel=cancel)
