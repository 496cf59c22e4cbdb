"""The ``Slide`` object shared by all backends: a lazy pyramid of Y×X×3 uint8 dask arrays."""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from napari_glandseg.errors import SlideError

#: Chunk edge used when the file's own tiles are not square (strips, whole images).
DEFAULT_CHUNK_PX = 512
#: A computed pyramid halves a level again while its shorter side is at least this.
MIN_SHORT_SIDE_PX = 512


class GuardedArray:
    """Array-like over a backend reader that turns any read failure into a ``SlideError``.

    Dask calls ``__getitem__`` once per chunk; wrapping here means a corrupt tile raises an
    error naming the file instead of a raw codec exception from deep inside a thread pool.
    """

    def __init__(
        self,
        source: Any,
        path: str | os.PathLike,
        what: str,
        *,
        check: Callable[[tuple[slice, ...]], None] | None = None,
    ) -> None:
        self._source = source
        self._path = os.fspath(path)
        self._what = what
        self._check = check
        self.shape = tuple(int(s) for s in source.shape)
        self.dtype = np.dtype(source.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            if self._check is not None:
                self._check(key if isinstance(key, tuple) else (key,))
            return np.asarray(self._source[key])
        except SlideError:
            raise
        except Exception as exc:  # codecs raise many unrelated types
            where = _describe_key(key)
            raise SlideError(
                self._path, f"cannot read {self._what} at {where}: {type(exc).__name__}: {exc}"
            ) from exc


def _describe_key(key: Any) -> str:
    parts = []
    for k in key if isinstance(key, tuple) else (key,):
        if isinstance(k, slice):
            parts.append(f"{k.start}:{k.stop}")
        else:
            parts.append(str(k))
    return "[" + ", ".join(parts) + "]"


def dask_from_source(
    source: Any, chunks: Sequence[int], name: str, path: str | os.PathLike, what: str, **kw: Any
) -> da.Array:
    """Wrap a backend array-like as dask; ``name`` is explicit so dask never hashes the source."""
    guarded = GuardedArray(source, path, what, **kw)
    return da.from_array(
        guarded, chunks=tuple(chunks), name=name, asarray=False, fancy=False, lock=False
    )


def square_chunks(chunks: Sequence[int]) -> int | None:
    """The tile edge when the file's chunks (Y, X, ...) are square and sensible, else None."""
    cy, cx = int(chunks[0]), int(chunks[1])
    if cy == cx and 64 <= cy <= 4096:
        return cy
    return None


def _halve(block: np.ndarray) -> np.ndarray:
    """2× mean downsampling of one block (even-sized except at the array's edge)."""
    h, w = block.shape[0] // 2 * 2, block.shape[1] // 2 * 2
    b = block[:h, :w].astype(np.uint16)
    s = b[0::2, 0::2] + b[1::2, 0::2] + b[0::2, 1::2] + b[1::2, 1::2]
    return ((s + 2) // 4).astype(np.uint8)


#: Computed levels by dask name, so that small reads can bypass dask's whole-chunk reads.
_COMPUTED: weakref.WeakValueDictionary[str, HalvedLevel] = weakref.WeakValueDictionary()
#: A read of a computed level goes straight down to the stored level when it needs at most
#: this many stored pixels; larger reads go chunk by chunk (bounded memory).
EXACT_READ_PX = 2**24


class HalvedLevel:
    """Array-like: ``parent`` (a Y×X×3 uint8 dask array) 2×-averaged, odd edges trimmed.

    Dask reads a chunk through the parent's own chunks (bounded memory), so making a computed
    level costs nothing however big the image. :meth:`read` reads an exact box through the
    computed levels above down to the stored one: a small read of a low level of a huge image
    without stored lower levels decodes only the tiles under it.
    """

    def __init__(self, parent: da.Array) -> None:
        self.parent = parent
        self.shape = (int(parent.shape[0]) // 2, int(parent.shape[1]) // 2, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        y0, y1, _ = key[0].indices(self.shape[0])
        x0, x1, _ = key[1].indices(self.shape[1])
        if y1 <= y0 or x1 <= x0:
            return np.zeros((max(0, y1 - y0), max(0, x1 - x0), 3), np.uint8)[(slice(None), slice(None), *key[2:])]
        block = np.asarray(self.parent[2 * y0 : 2 * y1, 2 * x0 : 2 * x1].compute(scheduler="sync"))
        return _halve(block)[(slice(None), slice(None), *key[2:])]

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows y0:y1, columns x0:x1 (inside the level), read exactly through the levels above."""
        above = _COMPUTED.get(self.parent.name)
        if above is not None:
            block = above.read(2 * y0, 2 * y1, 2 * x0, 2 * x1)
        else:
            block = np.asarray(self.parent[2 * y0 : 2 * y1, 2 * x0 : 2 * x1].compute(scheduler="sync"))
        return _halve(block)

    def stored_px(self, h: int, w: int) -> int:
        """Stored pixels under an h×w box of this level."""
        above = _COMPUTED.get(self.parent.name)
        return 4 * h * w if above is None else above.stored_px(2 * h, 2 * w)


def computed_pyramid(level0: da.Array, chunk_px: int = DEFAULT_CHUNK_PX) -> list[da.Array]:
    """Level 0 plus lazily 2×-averaged levels until the shorter side is below ``MIN_SHORT_SIDE_PX``.

    Level k+1 pixel (i, j) is the rounded mean of level-k pixels (2i..2i+1, 2j..2j+1). The
    levels are built in constant time whatever the image size (see ``HalvedLevel``).
    """
    levels = [level0]
    current = level0
    while min(current.shape[:2]) >= MIN_SHORT_SIDE_PX:
        name = f"{current.name}-half"
        source = HalvedLevel(current)
        current = da.from_array(source, chunks=(chunk_px, chunk_px, 3), name=name,
                                asarray=False, fancy=False, lock=False, meta=np.empty((0, 0, 3), np.uint8))
        _COMPUTED[name] = source
        levels.append(current)
    return levels


def slide_name(path: str | os.PathLike) -> str:
    """A slide's name: its file name without the extension (``.ome.tiff`` / ``.ome.zarr`` whole)."""
    p = Path(path)
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if p.name.lower().endswith(suffix):
            return p.name[: -len(suffix)]
    return p.stem if p.suffix else p.name


class Slide:
    """A whole-slide image: lazy pyramid levels (Y×X×3 uint8) plus what the file says about them."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        format: str,
        levels: list[da.Array],
        downsamples: list[float] | None = None,
        mpp: float | None = None,
        magnification: float | None = None,
        associated: dict[str, Callable[[], np.ndarray]] | None = None,
        metadata: dict[str, Any] | None = None,
        native_levels: int | None = None,
        tile_px: int | None = None,
        closer: Callable[[], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = slide_name(self.path)
        self.format = format
        self.levels = levels
        h0, w0 = levels[0].shape[:2]
        if downsamples is None:
            downsamples = [((h0 / lv.shape[0]) + (w0 / lv.shape[1])) / 2 for lv in levels]
            if native_levels == 1:
                # computed levels average exact 2×2 blocks (odd edges trimmed): exact powers of 2
                downsamples = [2.0**i for i in range(len(levels))]
        self.downsamples = [float(d) for d in downsamples]
        self.mpp = None if mpp is None else float(mpp)
        self.magnification = None if magnification is None else float(magnification)
        self.associated = dict(associated or {})
        self.metadata = dict(metadata or {})
        self.native_levels = len(levels) if native_levels is None else native_levels
        self.tile_px = tile_px
        self._closer = closer
        self._lock = threading.Lock()

    # -- geometry -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """Level-0 (H, W)."""
        return tuple(int(s) for s in self.levels[0].shape[:2])  # type: ignore[return-value]

    @property
    def level_shapes(self) -> list[tuple[int, int]]:
        return [(int(lv.shape[0]), int(lv.shape[1])) for lv in self.levels]

    def best_level_for_downsample(self, ds: float) -> int:
        """The coarsest level whose downsample does not exceed ``ds`` (1 % tolerance)."""
        best = 0
        for i, d in enumerate(self.downsamples):
            if d <= ds * 1.01:
                best = i
        return best

    # -- pixels ---------------------------------------------------------------------------
    def read_region(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        """h×w×3 uint8 from ``level`` at (y, x) in that level's pixels; outside is white."""
        if not 0 <= level < len(self.levels):
            raise SlideError(self.path, f"no level {level}; the slide has {len(self.levels)}")
        h, w, y, x = int(h), int(w), int(y), int(x)
        out = np.full((max(h, 0), max(w, 0), 3), 255, np.uint8)
        arr = self.levels[level]
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + h, arr.shape[0]), min(x + w, arr.shape[1])
        if y1 > y0 and x1 > x0:
            computed = _COMPUTED.get(arr.name)
            if computed is not None and computed.stored_px(y1 - y0, x1 - x0) <= EXACT_READ_PX:
                out[y0 - y : y1 - y, x0 - x : x1 - x] = computed.read(y0, y1, x0, x1)
            else:
                out[y0 - y : y1 - y, x0 - x : x1 - x] = arr[y0:y1, x0:x1].compute(scheduler="threads")
        return out

    def read_at_mpp(
        self, bbox0: tuple[float, float, float, float], target_mpp: float
    ) -> np.ndarray:
        """Read a level-0 box resampled to ``target_mpp``: round(h*mpp/target) × round(w*mpp/target)."""
        if self.mpp is None:
            raise SlideError(
                self.path,
                "the file does not say its resolution (µm/px); pass mpp=... "
                "(CLI: --mpp) to say what it is",
            )
        from PIL import Image

        y, x, h, w = (float(v) for v in bbox0)
        out_h = round(h * self.mpp / target_mpp)
        out_w = round(w * self.mpp / target_mpp)
        if out_h <= 0 or out_w <= 0:
            return np.zeros((max(out_h, 0), max(out_w, 0), 3), np.uint8)
        level = self.best_level_for_downsample(target_mpp / self.mpp)
        ds = self.downsamples[level]
        # box in level pixels; read whole pixels around it and let PIL resample the sub-pixel box
        ly0, lx0 = y / ds, x / ds
        ly1, lx1 = (y + h) / ds, (x + w) / ds
        ry0, rx0 = math.floor(ly0), math.floor(lx0)
        ry1, rx1 = max(math.ceil(ly1), ry0 + 1), max(math.ceil(lx1), rx0 + 1)
        region = self.read_region(level, ry0, rx0, ry1 - ry0, rx1 - rx0)
        if region.shape[:2] == (out_h, out_w) and (ly0, lx0) == (ry0, rx0):
            return region
        img = Image.fromarray(region)
        box = (lx0 - rx0, ly0 - ry0, lx1 - rx0, ly1 - ry0)
        # BILINEAR in PIL widens its kernel when shrinking, so it is anti-aliased as well
        return np.asarray(img.resize((out_w, out_h), Image.Resampling.BILINEAR, box=box))

    # -- facts ----------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """JSON-able facts about the slide (what ``glandseg info`` prints)."""
        levels = []
        for i, (lv, ds) in enumerate(zip(self.levels, self.downsamples, strict=True)):
            levels.append(
                {
                    "level": i,
                    "shape": [int(lv.shape[0]), int(lv.shape[1])],
                    "downsample": round(ds, 4),
                    "chunk": [int(lv.chunksize[0]), int(lv.chunksize[1])],
                    "native": i < self.native_levels,
                    "mpp": None if self.mpp is None else round(self.mpp * ds, 6),
                }
            )
        return {
            "path": str(self.path),
            "name": self.name,
            "format": self.format,
            "shape": list(self.shape),
            "levels": levels,
            "mpp": self.mpp,
            "magnification": self.magnification,
            "associated": sorted(self.associated),
            "tile_size": self.tile_px,
            "metadata": self.metadata,
        }

    def close(self) -> None:
        with self._lock:
            if self._closer is not None:
                self._closer()
                self._closer = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Slide({str(self.path)!r}, format={self.format!r}, shape={self.shape}, "
            f"levels={len(self.levels)}, mpp={self.mpp})"
        )
