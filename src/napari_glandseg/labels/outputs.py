"""Outputs of a run: output folder names, a label store for a region, polygons + measurements.

A whole-slide store can be gigapixels: it is read once, block by block, and each gland is
measured and traced whole on its own (``labels.tables``). Glands keep their store ids in the
GeoJSON and the CSV.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg.slide.placement import GridPlacement


def output_folders(paths: Sequence[str | os.PathLike]) -> list[str]:
    """One distinct output folder name per slide: its name, or ``<name>-<parent folder>`` when
    several slides of one run share a name (``A/slide.svs``, ``B/slide.svs``), numbered if need be.

    Names are compared case-insensitively, as some file systems do.
    """
    from napari_glandseg.slide._base import slide_name

    names = [slide_name(p) for p in paths]
    counts = Counter(n.casefold() for n in names)
    folders = [n if counts[n.casefold()] == 1 else f"{n}-{Path(p).resolve().parent.name or 'root'}"
               for n, p in zip(names, paths, strict=True)]
    seen: Counter[str] = Counter()
    out = []
    for f in folders:
        seen[f.casefold()] += 1
        out.append(f if seen[f.casefold()] == 1 else f"{f}-{seen[f.casefold()]}")
    return out


def region_store(path: Path, slide: Any, res: Any) -> Any:
    """A label store on the slide's model-µm/px grid holding only the region's labels."""
    from napari_glandseg._atomic import atomic_path
    from napari_glandseg.labels.store import LabelStore

    grid = GridPlacement.whole_slide(slide.shape, res.scale)
    shape = grid.shape
    y, x = grid.nearest_index(res.bbox0[:2])
    h, w = res.labels.shape
    h, w = min(h, shape[0] - y), min(w, shape[1] - x)
    with atomic_path(path, is_dir=True) as tmp:
        store = LabelStore.create(tmp, shape, mpp=res.mpp, source=str(slide.path))
        store.levels[0][y : y + h, x : x + w] = res.labels[:h, :w]
        store.build_pyramid((y, x, h, w))  # the rest is empty: a huge slide's store costs nothing
        if getattr(res, "confidence", None):
            store.write_confidence(region_confidence(res.labels[:h, :w], res.confidence, (y, x)))
    return LabelStore.open(path)


def region_confidence(labels: np.ndarray, confidence: dict[int, float], at: tuple[int, int]) -> dict[int, list[float]]:
    """{id: [confidence, y0, x0, y1, x1]} of a region's glands, boxes in the store's pixels."""
    from napari_glandseg.labels._objects import gland_objects

    y, x = at
    return {gid: [float(confidence[gid]), y + rs.start, x + cs.start, y + rs.stop, x + cs.stop]
            for gid, (rs, cs) in gland_objects(labels) if gid in confidence}


def write_tables(store: Any, out_dir: Path, *, factor: float, mpp: float, geojson: bool = True,
                 slide_shape: tuple[int, int] | None = None, workers: int | None = None) -> int:
    """Write ``measurements.csv`` (and ``glands.geojson``) for a store; returns the gland count.

    ``slide_shape`` (level-0 h, w) keeps polygons on the slide (the store grid may overhang it).
    The store is read once, block by block; each gland is measured and traced whole on its own
    (``labels.tables``), in ``workers`` processes (default: one per core for stores larger
    than one block).
    """
    from napari_glandseg.labels.export import write_measurements_csv
    from napari_glandseg.labels.tables import BLOCK_PX, TableSpec, table_records, write_feature_texts
    from napari_glandseg.model.precision import allowed_cores

    if workers is None:
        h, w = (int(s) for s in store.levels[0].shape)
        workers = len(allowed_cores()) if h * w > BLOCK_PX * BLOCK_PX else 1
    confidence = {k: v[0] for k, v in store.read_confidence().items()} if hasattr(store, "read_confidence") else None
    spec = TableSpec(float(factor), float(mpp), geojson, None if slide_shape is None else tuple(slide_shape),
                     confidence=confidence or None)
    records = table_records(store, spec, workers)
    rows = sorted((r[1] for r in records), key=lambda row: row["label"])
    write_measurements_csv(out_dir / "measurements.csv", rows)
    if geojson:
        write_feature_texts(out_dir / "glands.geojson", [r[2] for r in records])
    return len(rows)
