"""Polygons and measurements of a whole-slide label store: the store read once, gland by gland.

The store is read block by block (``BLOCK_PX``² store px, no overlap), and each block's glands
are found in one pass (``ndimage.value_indices``: the pixels of every id, no sorting). A gland
that reaches near a block border stays in pieces until no unread block lies within
``MARGIN_PX`` of it (the parts of one gland are never farther apart); then it is whole, and its
bounding-box mask is measured (``labels.measure.measure_mask``) and traced
(``labels.geojson.labels_to_features``) on its own.

The files are those of the block-with-margin implementation this replaced, value for value:
each gland is placed in the frame of the block that holds its bounding-box centre (that
block's top-left corner less the margin), so that every coordinate is computed by the same
operations, and the features come in that block order, then by id.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_glandseg._atomic import json_default

BLOCK_PX = 4096
MARGIN_PX = 512  # farther than the parts of one gland lie apart (≈ 0.6 mm at 1.24 µm/px)


@dataclass
class Gland:
    """One whole gland: its id and bounding-box mask, whose top-left pixel is store (row0, col0)."""

    label: int
    row0: int
    col0: int
    mask: np.ndarray

    @classmethod
    def from_pixels(cls, label: int, rows: np.ndarray, cols: np.ndarray) -> Gland:
        r0, c0 = int(rows.min()), int(cols.min())
        mask = np.zeros((int(rows.max()) + 1 - r0, int(cols.max()) + 1 - c0), bool)
        mask[rows - r0, cols - c0] = True
        return cls(label, r0, c0, mask)

    def __getstate__(self) -> tuple:  # sent to worker processes as bits
        return self.label, self.row0, self.col0, self.mask.shape, np.packbits(self.mask)

    def __setstate__(self, state: tuple) -> None:
        self.label, self.row0, self.col0, shape, bits = state
        self.mask = np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool)


def iter_glands(store: Any, block: int = BLOCK_PX, margin: int = MARGIN_PX) -> Iterator[Gland]:
    """Every gland of the store's level 0 once, whole; each block is read once."""
    hh, ww = (int(s) for s in store.levels[0].shape)
    pieces: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    boxes: dict[int, list[int]] = {}  # row0, col0, row1, col1 (inclusive) so far
    for by in range(0, hh, block):
        for bx in range(0, ww, block):
            data = np.asarray(store.read_region(by, bx, min(block, hh - by), min(block, ww - bx)))
            if data.any():
                for label, (r, c) in ndi.value_indices(data, ignore_value=0).items():
                    r, c = r.astype(np.int32) + by, c.astype(np.int32) + bx
                    pieces.setdefault(int(label), []).append((r, c))
                    b = boxes.setdefault(int(label), [hh, ww, -1, -1])
                    b[:] = min(b[0], int(r[0])), min(b[1], int(c.min())), max(b[2], int(r[-1])), max(b[3], int(c.max()))
            whole = [label for label, b in boxes.items() if not _near_unread(b, by, bx, block, margin, hh, ww)]
            for label in whole:
                parts = pieces.pop(label)
                del boxes[label]
                yield Gland.from_pixels(label, np.concatenate([p[0] for p in parts]),
                                        np.concatenate([p[1] for p in parts]))


def _near_unread(b: list[int], by: int, bx: int, block: int, margin: int, hh: int, ww: int) -> bool:
    """Whether the box ``b`` grown by ``margin`` meets a block not read yet (after block (by, bx))."""
    rows_below = by + block < hh and b[2] + margin >= by + block
    right_in_row = (bx + block < ww and b[3] + margin >= bx + block
                    and b[2] + margin >= by and b[0] - margin < by + block)
    return rows_below or right_in_row


@dataclass(frozen=True)
class TableSpec:
    """How glands become rows and features: the store grid on level 0, the slide's extent."""

    factor: float  # level-0 px per store px
    mpp: float  # µm per store px
    geojson: bool = True
    clip_to: tuple[int, int] | None = None  # level-0 (h, w) of the slide
    block: int = BLOCK_PX
    margin: int = MARGIN_PX
    confidence: dict[int, float] | None = None  # per gland, from the store (``LabelStore.read_confidence``)


def gland_record(g: Gland, spec: TableSpec) -> tuple[tuple[int, int, int], dict, str | None]:
    """(order key, measurement row, GeoJSON feature as JSON text or None) of one whole gland."""
    from napari_glandseg.labels import geojson as gj
    from napari_glandseg.labels.measure import measure_mask

    f, (h, w) = spec.factor, g.mask.shape
    r0, c0 = g.row0, g.col0
    by, bx = int((2 * r0 + h) / 2 // spec.block), int((2 * c0 + w) / 2 // spec.block)
    fy, fx = max(0, by * spec.block - spec.margin), max(0, bx * spec.block - spec.margin)
    offset = (fy * f, fx * f)  # level-0 px of the frame's top-left corner (see the module doc)
    row = measure_mask(g.mask, g.label, spec.mpp, origin=(r0 - fy, c0 - fx), offset=offset, scale=f)
    if spec.confidence and g.label in spec.confidence:
        row["confidence"] = spec.confidence[g.label]
    if not spec.geojson:
        return (by, bx, g.label), row, None
    corner = (offset[0] + (r0 - fy) * f, offset[1] + (c0 - fx) * f)
    clip = spec.clip_to
    if clip is not None and corner[0] + (h + 1) * f <= clip[0] and corner[1] + (w + 1) * f <= clip[1]:
        clip = None  # wholly on the slide: clipping would change nothing
    fc = gj.labels_to_features(g.mask.astype(np.uint8), scale=f, offset=corner,
                               measurements=[{**row, "label": 1}], clip_to=clip)
    feature = fc["features"][0]
    feature["properties"]["label"] = g.label
    feature["properties"]["name"] = f"Gland {g.label}"
    return (by, bx, g.label), row, json.dumps(feature, default=json_default, allow_nan=False)


def _records(glands: list[Gland], spec: TableSpec) -> list[tuple]:
    return [gland_record(g, spec) for g in glands]


def _batch_spec(spec: TableSpec, glands: list[Gland]) -> TableSpec:
    """``spec`` for one batch sent to a worker: only its glands' confidences travel with it."""
    if not spec.confidence:
        return spec
    return dataclasses.replace(spec, confidence={g.label: spec.confidence[g.label] for g in glands
                                                 if g.label in spec.confidence})


def table_records(store: Any, spec: TableSpec, workers: int = 1, batch: int = 64) -> list[tuple]:
    """``gland_record`` of every gland of the store, in the files' order.

    With ``workers`` > 1 the glands go to that many processes (forkserver: no torch, no
    threads copied) in batches, at most two batches per worker in flight.
    """
    glands = iter_glands(store, spec.block, spec.margin)
    if workers <= 1:
        out = [gland_record(g, spec) for g in glands]
    else:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from itertools import islice

        out = []
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["napari_glandseg.labels.tables", "napari_glandseg.labels.measure"])
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            running: set = set()
            while True:
                chunk = list(islice(glands, batch))
                if chunk:
                    running.add(pool.submit(_records, chunk, _batch_spec(spec, chunk)))
                if len(running) >= 2 * workers or (not chunk and running):
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        out.extend(fut.result())
                if not chunk and not running:
                    break
    out.sort(key=lambda r: r[0])
    return out


def write_feature_texts(path: Path, texts: list[str]) -> None:
    """A FeatureCollection file from features already in JSON (the bytes ``json.dumps`` of the
    whole collection would give), written atomically."""
    from napari_glandseg._atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write('{"type": "FeatureCollection", "features": [')
            for i, text in enumerate(texts):
                if i:
                    fh.write(", ")
                fh.write(text)
            fh.write("]}\n")
            fh.flush()
            os.fsync(fh.fileno())
