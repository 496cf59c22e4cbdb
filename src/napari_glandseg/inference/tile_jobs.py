"""The model side of a whole-slide run: tiles on the slide's one grid, run once, in full batches.

Why the result does not depend on the chunk size:

* tiles sit on one grid fixed on the store (``tiling.SlideTiles``), never on a chunk, and each
  tile is read from the slide by its own box, so its pixels and its output are the same
  whichever chunk asks for it;
* a chunk blends *every* tile that meets its padded box, in the grid's order, so each pixel's
  probabilities are the same sums in the same order in every chunking;
* the model always runs full batches of the predictor's batch size: on CPU (oneDNN, bf16) a
  tile's output changes with the batch size (by up to 0.04 here), never with its batch mates or
  its place in the batch. The last batch of a run is padded with blank tiles.

Why it runs each tile once: a tile that several chunks blend (it meets their padded boxes) is
saved to a cache folder when first computed and loaded by the others; a tile whose core has no
tissue (the tissue mask with its safety margin) is certain background and never runs.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg.inference.beside_model import executor_beside
from napari_glandseg.inference.stitch import ChunkGeom
from napari_glandseg.inference.tiling import BlendAccumulator, SlideTiles
from napari_glandseg.slide.resample import read_on_grid

Key = tuple[int, int]


@dataclass(frozen=True)
class TissueTiles:
    """Which tiles of the slide grid have tissue in their core (``grid[i - i0, j - j0]``)."""

    i0: int
    j0: int
    grid: np.ndarray

    def __call__(self, i: int, j: int) -> bool:
        a, b = i - self.i0, j - self.j0
        return 0 <= a < self.grid.shape[0] and 0 <= b < self.grid.shape[1] and bool(self.grid[a, b])

    @property
    def count(self) -> int:
        return int(self.grid.sum())


def tissue_tiles(layout: SlideTiles, shape: tuple[int, int], mask: np.ndarray, mask_ds: float,
                 factor: float) -> TissueTiles:
    """The tiles of a ``shape`` store whose core meets the tissue ``mask`` (level-0 px per mask
    px ``mask_ds``; store px per level-0 px ``1 / factor``)."""
    rows, cols = layout.span(0, shape[0]), layout.span(0, shape[1])
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int32)  # counts < 2**31 mask px
    np.cumsum(np.cumsum(mask, axis=0, dtype=np.int32), axis=1, out=integral[1:, 1:])

    def bounds(idx: range, n: int) -> tuple[np.ndarray, np.ndarray]:
        lo = np.array([layout.core(i)[0] for i in idx], np.float64) * factor / mask_ds
        hi = np.array([layout.core(i)[1] for i in idx], np.float64) * factor / mask_ds
        return np.clip(np.floor(lo), 0, n).astype(np.intp), np.clip(np.ceil(hi), 0, n).astype(np.intp)

    y0, y1 = bounds(rows, mask.shape[0])
    x0, x1 = bounds(cols, mask.shape[1])
    total = (integral[y1][:, x1] - integral[y0][:, x1] - integral[y1][:, x0] + integral[y0][:, x0])
    return TissueTiles(rows.start, cols.start, total > 0)


@dataclass(frozen=True)
class ChunkWork:
    """A chunk and its tiles: those with tissue (to run or load) and, of them, the ones other
    chunks blend too (kept in the cache). Small and picklable: the task sent to a worker."""

    geom: ChunkGeom
    tissue: frozenset[Key]
    shared: frozenset[Key]
    runs_model: bool  # a tile with tissue meets the core: otherwise the core is all background


def box_keys(layout: SlideTiles, geom: ChunkGeom) -> list[Key]:
    """The tiles meeting the chunk's padded box, in the grid's (blending) order."""
    (py, px), (ph, pw) = geom.padded_origin, geom.padded_shape
    return [(i, j) for i in layout.span(py, py + ph) for j in layout.span(px, px + pw)]


def plan_work(geoms: Iterable[ChunkGeom], layout: SlideTiles, tissue: TissueTiles, *,
              skip_glass: bool = True) -> list[ChunkWork]:
    """One ``ChunkWork`` per chunk (same order). ``skip_glass=False`` runs every tile of a chunk
    that has tissue (the engine before tile-level skipping: for comparisons)."""
    geoms = list(geoms)
    runs, keys = {}, {}
    for g in geoms:
        box = box_keys(layout, g)
        keys[g.index] = [k for k in box if tissue(*k)]
        core_rows, core_cols = layout.span(g.y0, g.y0 + g.h), layout.span(g.x0, g.x0 + g.w)
        runs[g.index] = any(i in core_rows and j in core_cols for i, j in keys[g.index])
        if not skip_glass:
            keys[g.index] = box
    users: dict[Key, int] = {}
    for g in geoms:
        if runs[g.index]:
            for k in keys[g.index]:
                users[k] = users.get(k, 0) + 1
    return [
        ChunkWork(g, frozenset(keys[g.index]) if runs[g.index] else frozenset(),
                  frozenset(k for k in keys[g.index] if users.get(k, 0) > 1) if runs[g.index] else frozenset(),
                  runs[g.index])
        for g in geoms
    ]


class TileCache:
    """Tile probabilities (float32 C×t×t ``.npy``) shared by the chunks that blend them."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: Key) -> Path:
        return self.folder / f"{key[0]}_{key[1]}.npy"

    def has(self, key: Key) -> bool:
        return self.path(key).exists()

    def load(self, key: Key) -> np.ndarray:
        return np.load(self.path(key))

    def save(self, key: Key, probs: np.ndarray) -> None:
        target = self.path(key)
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, probs.astype(np.float32, copy=False))
        os.replace(tmp, target)  # whole or absent: a reader never sees half a tile

    def discard(self, key: Key) -> None:
        self.path(key).unlink(missing_ok=True)


class ChunkJob:
    """Blends one chunk's tiles in the grid's order as they become available."""

    def __init__(self, work: ChunkWork, layout: SlideTiles, n_classes: int, cache: TileCache | None):
        self.work, self.layout, self.cache = work, layout, cache
        g = work.geom
        self.origin = g.padded_origin
        self.keys = box_keys(layout, g)
        self.acc = BlendAccumulator(n_classes, *g.padded_shape, layout.tile_px, layout.overlap_px)
        self.from_cache: set[Key] = set()
        self._ready: dict[Key, np.ndarray] = {}
        self._pos = 0

    @property
    def needs(self) -> list[Key]:
        """Tiles with tissue, in blending order (the model or the cache provides them)."""
        return [k for k in self.keys if k in self.work.tissue]

    @property
    def complete(self) -> bool:
        return self._pos == len(self.keys)

    def put(self, key: Key, probs: np.ndarray) -> None:
        """A tile's probabilities (the caller may reuse ``probs`` after this returns)."""
        if self._next() == key:
            self._add(key, probs)
        else:
            self._ready[key] = probs.copy()
        self.advance()

    def advance(self) -> None:
        """Blend every tile that is available in order (background and cached ones always are)."""
        while not self.complete:
            key = self.keys[self._pos]
            if key not in self.work.tissue:
                self._add(key, None)
            elif key in self._ready:
                self._add(key, self._ready.pop(key))
            elif key in self.from_cache:
                self._add(key, self.cache.load(key))
            else:
                return

    def probabilities(self) -> np.ndarray:
        return self.acc.result()

    def _next(self) -> Key | None:
        return self.keys[self._pos] if not self.complete else None

    def _add(self, key: Key, probs: np.ndarray | None) -> None:
        y, x = self.layout.origin(key[0]) - self.origin[0], self.layout.origin(key[1]) - self.origin[1]
        self.acc.add(probs, y, x, background=probs is None)
        self._pos += 1


class TileBatcher:
    """Feeds jobs' tiles to the model in full batches; each tile runs once for all jobs waiting.

    Tiles are read in one reader thread (the slide is never read from two threads), the next
    batch's while the model runs on this one, where a core is spare for it; else in this thread
    between batches (``beside_model``). ``close()`` stops the thread.
    """

    def __init__(self, predictor: Any, read_tile: Callable[[Key], np.ndarray], cache: TileCache | None,
                 on_batch: Callable[[int], None] | None = None):
        self.predictor = predictor
        self.on_batch = on_batch  # called with the tiles run so far after each batch
        self.read_tile = read_tile
        self.cache = cache
        self.n = int(predictor.batch_size)
        t = predictor.card.tile_px
        self._batch = np.zeros((self.n, t, t, 3), np.uint8)
        self._queue: deque[Key] = deque()
        self._waiting: dict[Key, list[ChunkJob]] = {}
        self._shared: set[Key] = set()
        self._reads: dict[Key, Future] = {}
        self._reader = executor_beside(predictor, "glandseg-read")
        self.stats = {"tiles_run": 0, "tiles_padding": 0, "tiles_from_cache": 0, "tiles_background": 0}

    def add(self, job: ChunkJob) -> None:
        """Queue the job's tiles (those not in flight or cached) and run every full batch."""
        self.stats["tiles_background"] += len(job.keys) - len(job.needs)
        for key in job.needs:
            if key in self._waiting:
                self._waiting[key].append(job)
            elif self.cache is not None and key in job.work.shared and self.cache.has(key):
                job.from_cache.add(key)
                self.stats["tiles_from_cache"] += 1
            else:
                self._waiting[key] = [job]
                self._queue.append(key)
                if key in job.work.shared:
                    self._shared.add(key)
        job.advance()
        while len(self._queue) >= self.n:
            self._run(self.n)

    def flush(self) -> None:
        """Run what is queued (the last batch padded with blank tiles)."""
        while self._queue:
            self._run(min(self.n, len(self._queue)))

    def close(self) -> None:
        self._reader.shutdown(wait=True, cancel_futures=True)

    def _read(self, key: Key) -> Future:
        if key not in self._reads:
            self._reads[key] = self._reader.submit(self.read_tile, key)
        return self._reads[key]

    def _run(self, n: int) -> None:
        keys = [self._queue.popleft() for _ in range(n)]
        for i, key in enumerate(keys):
            self._batch[i] = self._read(key).result()
            del self._reads[key]
        self._batch[n:] = 0  # always a full batch: outputs depend on the batch size
        for key in islice(self._queue, self.n):  # the next batch is read while the model runs
            self._read(key)
        out = self.predictor.predict(self._batch)
        self.stats["tiles_run"] += n
        self.stats["tiles_padding"] += self.n - n
        if self.on_batch is not None:
            self.on_batch(self.stats["tiles_run"])
        for i, key in enumerate(keys):
            if key in self._shared and self.cache is not None:
                self.cache.save(key, out[i])
                self._shared.discard(key)
            for job in self._waiting.pop(key):
                job.put(key, out[i])


def tile_reader(slide: Any, layout: SlideTiles, factor: float, mpp: float) -> Callable[[Key], np.ndarray]:
    """Reads tile ``(i, j)`` from the slide by its own level-0 box (so it is the same for every
    chunk that asks), resampled to the model's µm/px."""

    t = layout.tile_px

    def read(key: Key) -> np.ndarray:
        return read_on_grid(slide, (layout.origin(key[0]) * factor, layout.origin(key[1]) * factor), (t, t), factor, mpp)

    return read


def consumers(layout: SlideTiles, key: Key, chunk_px: int, margin: int, shape: tuple[int, int]) -> list[Key]:
    """(cy, cx) of the chunks whose padded box the tile meets."""
    ranges = []
    for axis, i in enumerate(key):
        lo, hi = layout.origin(i), layout.origin(i) + layout.tile_px
        n = math.ceil(shape[axis] / chunk_px)
        candidates = range(max(0, (lo - margin) // chunk_px - 1), min(n, (hi + margin) // chunk_px + 1))
        ranges.append([c for c in candidates
                       if c * chunk_px - margin < hi and min((c + 1) * chunk_px, shape[axis]) + margin > lo])
    return [(cy, cx) for cy in ranges[0] for cx in ranges[1]]
