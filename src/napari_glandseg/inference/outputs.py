"""Outputs of a run: a label store for a region, and polygons + measurements made block by block.

A whole-slide store can be gigapixels: it is read in blocks (4096² store px plus a margin),
and each gland is taken from the block that holds the centre of its bounding box, with the
margin so that it is whole. Glands keep their store ids in the GeoJSON and the CSV.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

BLOCK_PX = 4096
MARGIN_PX = 512  # larger than any gland at the model's µm/px (≈ 0.6 mm at 1.24 µm/px)


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
    import math

    from napari_glandseg._atomic import atomic_path
    from napari_glandseg.labels.store import LabelStore

    f = res.scale
    h0, w0 = slide.shape
    shape = (max(1, math.ceil(h0 / f)), max(1, math.ceil(w0 / f)))
    y, x = round(res.bbox0[0] / f), round(res.bbox0[1] / f)
    h, w = res.labels.shape
    h, w = min(h, shape[0] - y), min(w, shape[1] - x)
    with atomic_path(path, is_dir=True) as tmp:
        store = LabelStore.create(tmp, shape, mpp=res.mpp, source=str(slide.path))
        store.levels[0][y : y + h, x : x + w] = res.labels[:h, :w]
        store.build_pyramid()
    return LabelStore.open(path)


def iter_blocks(store: Any, block: int = BLOCK_PX, margin: int = MARGIN_PX) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """``(y0, x0, local, ids)`` per block: consecutive local labels of the glands whose bbox centre
    lies in the block (others zeroed), placed at store px (y0, x0); ``ids[local]`` is the store id."""
    hh, ww = (int(s) for s in store.levels[0].shape)
    for by in range(0, hh, block):
        for bx in range(0, ww, block):
            y0, x0 = max(0, by - margin), max(0, bx - margin)
            y1, x1 = min(hh, by + block + margin), min(ww, bx + block + margin)
            data = np.asarray(store.read_region(y0, x0, y1 - y0, x1 - x0))
            if not data.any():
                continue
            ids, inv = np.unique(data, return_inverse=True)
            local = inv.reshape(data.shape).astype(np.int32)
            if ids[0] != 0:  # no background in this block: shift so 0 stays background
                ids, local = np.concatenate([[0], ids]), local + 1
            keep = np.zeros(len(ids), bool)
            for k, sl in enumerate(ndi.find_objects(local), start=1):
                if sl is None:
                    continue
                cy = y0 + (sl[0].start + sl[0].stop) / 2
                cx = x0 + (sl[1].start + sl[1].stop) / 2
                keep[k] = by <= cy < by + block and bx <= cx < bx + block
            if not keep.any():
                continue
            lut = np.zeros(len(ids), np.int32)
            lut[keep] = np.arange(1, int(keep.sum()) + 1)
            yield y0, x0, lut[local], ids[keep]


def _relabel(rows: list[dict], fc: dict | None, ids: np.ndarray) -> tuple[list[dict], list[dict]]:
    """Block-local labels (1..n) back to store ids in measurement rows and GeoJSON properties."""
    rows = [{**r, "label": int(ids[int(r["label"]) - 1])} for r in rows]
    features = []
    for feat in (fc or {}).get("features", []):
        props = feat["properties"]
        props["label"] = int(ids[int(props["label"]) - 1])
        props["name"] = f"Gland {props['label']}"
        features.append(feat)
    return rows, features


def write_tables(store: Any, out_dir: Path, *, factor: float, mpp: float, geojson: bool = True,
                 slide_shape: tuple[int, int] | None = None) -> int:
    """Write ``measurements.csv`` (and ``glands.geojson``) for a store; returns the gland count.

    ``slide_shape`` (level-0 h, w) keeps polygons on the slide (the store grid may overhang it).
    """
    from napari_glandseg.labels import geojson as gj
    from napari_glandseg.labels.export import write_measurements_csv
    from napari_glandseg.labels.measure import measure_glands

    rows: list[dict] = []
    features: list[dict] = []
    for y0, x0, local, ids in iter_blocks(store):
        offset = (y0 * factor, x0 * factor)  # level-0 px of the block's top-left corner
        local_rows = measure_glands(local, mpp, offset=offset, scale=factor)
        fc = None
        if geojson:
            fc = gj.labels_to_features(local, scale=factor, offset=offset, measurements=local_rows,
                                       clip_to=slide_shape)
        block_rows, block_features = _relabel(local_rows, fc, ids)
        rows.extend(block_rows)
        features.extend(block_features)
    rows.sort(key=lambda r: r["label"])
    write_measurements_csv(out_dir / "measurements.csv", rows)
    if geojson:
        gj.write_geojson(out_dir / "glands.geojson", {"type": "FeatureCollection", "features": features})
    return len(rows)
