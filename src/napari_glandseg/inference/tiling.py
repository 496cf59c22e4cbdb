"""Tiles with overlap over an image, and seam-free blending of the tiles' probabilities.

Each tile's probabilities are multiplied by a 2-D window that is flat in the middle and falls
off with a raised cosine over the overlap at each side. The window never reaches 0, so every
pixel (also at the image border, where only one tile covers it) gets weight; dividing the
weighted sum by the summed weights gives a convex combination per pixel, so a model that
predicts a constant gives exactly that constant everywhere, seams included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from napari_glandseg.errors import Progress

#: Smallest window weight: small enough not to matter where tiles overlap, > 0 so that pixels
#: covered only by a tile's edge (the image border) still get a value.
MIN_WEIGHT = 1e-3


def tile_starts(length: int, tile_px: int, overlap_px: int) -> list[int]:
    """Start offsets of tiles of ``tile_px`` with at least ``overlap_px`` overlap covering ``length``.

    The last tile is shifted back to end exactly at ``length`` (never past it); a ``length``
    smaller than one tile gives ``[0]`` (the caller pads the image to one tile).
    """
    if tile_px <= 0 or not 0 <= overlap_px < tile_px:
        raise ValueError(f"need tile_px > 0 and 0 <= overlap_px < tile_px, got {tile_px}, {overlap_px}")
    if length <= tile_px:
        return [0]
    stride = tile_px - overlap_px
    n = -(-(length - tile_px) // stride) + 1  # ceil
    starts = [i * stride for i in range(n - 1)]
    starts.append(length - tile_px)
    return starts


@lru_cache(maxsize=16)
def window_1d(tile_px: int, overlap_px: int) -> np.ndarray:
    """Flat 1 in the middle, raised-cosine ramp over ``overlap_px`` at each end, >= MIN_WEIGHT."""
    w = np.ones(tile_px, np.float32)
    if overlap_px > 0:
        i = np.arange(overlap_px, dtype=np.float64)
        ramp = 0.5 - 0.5 * np.cos(np.pi * (i + 0.5) / overlap_px)
        w[:overlap_px] = ramp
        w[-overlap_px:] = ramp[::-1]
    w = np.maximum(w, MIN_WEIGHT).astype(np.float32)
    w.flags.writeable = False
    return w


@lru_cache(maxsize=16)
def window_2d(tile_px: int, overlap_px: int) -> np.ndarray:
    """Separable 2-D blending window (tile_px × tile_px, float32, read-only)."""
    w1 = window_1d(tile_px, overlap_px)
    w = np.outer(w1, w1).astype(np.float32)
    w.flags.writeable = False
    return w


@dataclass(frozen=True)
class TileGrid:
    """Tile positions over an H×W image (padded up to one tile where it is smaller)."""

    height: int
    width: int
    tile_px: int
    overlap_px: int

    @property
    def padded_shape(self) -> tuple[int, int]:
        return max(self.height, self.tile_px), max(self.width, self.tile_px)

    @property
    def ys(self) -> list[int]:
        return tile_starts(self.padded_shape[0], self.tile_px, self.overlap_px)

    @property
    def xs(self) -> list[int]:
        return tile_starts(self.padded_shape[1], self.tile_px, self.overlap_px)

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def positions(self) -> Iterator[tuple[int, int]]:
        for y in self.ys:
            for x in self.xs:
                yield y, x


@dataclass(frozen=True)
class SlideTiles:
    """The one tile grid of a whole-slide run, fixed on the store grid (not on any chunk).

    Tile ``i`` along an axis covers store px ``[i*s - o, i*s - o + t)`` (``s = t - o``); its
    *core* ``[i*s - o//2, i*s - o//2 + s)`` is where it outweighs its neighbours, and the cores
    tile the plane. A pixel's blended value depends only on the tiles covering it, so every
    chunking of the slide that blends all tiles meeting its box gets the same probabilities.
    """

    tile_px: int
    overlap_px: int

    @property
    def stride(self) -> int:
        return self.tile_px - self.overlap_px

    def origin(self, i: int) -> int:
        return i * self.stride - self.overlap_px

    def span(self, lo: int, hi: int) -> range:
        """Indices of the tiles that meet the store px range ``[lo, hi)``."""
        s = self.stride
        return range(lo // s, -(-(hi + self.overlap_px) // s))

    def core(self, i: int) -> tuple[int, int]:
        lo = i * self.stride - self.overlap_px // 2
        return lo, lo + self.stride


def pad_to_tile(rgb: np.ndarray, tile_px: int) -> np.ndarray:
    """Pad an H×W×3 image that is smaller than a tile by mirroring (natural context for the model)."""
    h, w = rgb.shape[:2]
    ph, pw = max(0, tile_px - h), max(0, tile_px - w)
    if ph == 0 and pw == 0:
        return rgb
    return np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="symmetric")


class BlendAccumulator:
    """Weighted sum of tile probabilities over a C×H×W canvas; ``result()`` normalises in place."""

    def __init__(self, n_classes: int, height: int, width: int, tile_px: int, overlap_px: int):
        self.probs = np.zeros((n_classes, height, width), np.float32)
        self.weight = np.zeros((height, width), np.float32)
        self.window = window_2d(tile_px, overlap_px)
        self.tile_px = tile_px
        self._scratch = np.empty((tile_px, tile_px), np.float32)

    def add(self, tile_probs: np.ndarray | None, y: int, x: int, *, background: bool = False) -> None:
        """Add one C×t×t tile whose top-left corner is at canvas (y, x); parts off the canvas
        are dropped. ``background`` adds a tile of certain background (class 0) without data."""
        t = self.tile_px
        _, h, w_ = self.probs.shape
        ty0, tx0 = max(0, -y), max(0, -x)
        ty1, tx1 = min(t, h - y), min(t, w_ - x)
        if ty1 <= ty0 or tx1 <= tx0:
            return
        w = self.window[ty0:ty1, tx0:tx1]
        acc = self.probs[:, y + ty0 : y + ty1, x + tx0 : x + tx1]
        # a multiply into a reused tile-sized buffer and an add per class: no temporaries
        if background:
            acc[0] += w
        else:
            scratch = self._scratch[: ty1 - ty0, : tx1 - tx0]
            for c in range(acc.shape[0]):
                np.multiply(tile_probs[c, ty0:ty1, tx0:tx1], w, out=scratch)
                acc[c] += scratch
        self.weight[y + ty0 : y + ty1, x + tx0 : x + tx1] += w

    def result(self) -> np.ndarray:
        """C×H×W blended probabilities (the accumulator's own buffer, normalised)."""
        np.maximum(self.weight, np.finfo(np.float32).tiny, out=self.weight)
        self.probs /= self.weight[None]
        return self.probs


def predict_tiled(
    rgb: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    n_classes: int,
    tile_px: int,
    overlap_px: int,
    batch_size: int,
    progress: Progress | None = None,
    cancel=None,
) -> np.ndarray:
    """Blended C×H×W probabilities of an H×W×3 uint8 image, tile batches through ``predict``.

    ``predict`` maps N×t×t×3 uint8 to N×C×t×t float probabilities. Only one batch of tiles
    and one batch of outputs exist at a time (the batch buffer is reused).
    """
    from napari_glandseg.errors import Cancelled

    h, w = rgb.shape[:2]
    img = pad_to_tile(rgb, tile_px)
    grid = TileGrid(h, w, tile_px, overlap_px)
    acc = BlendAccumulator(n_classes, *img.shape[:2], tile_px, overlap_px)
    positions = list(grid.positions())
    batch = np.empty((min(batch_size, len(positions)), tile_px, tile_px, 3), np.uint8)
    for start in range(0, len(positions), batch_size):
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        chunk = positions[start : start + batch_size]
        for i, (y, x) in enumerate(chunk):
            batch[i] = img[y : y + tile_px, x : x + tile_px]
        out = predict(batch[: len(chunk)])
        for i, (y, x) in enumerate(chunk):
            acc.add(out[i], y, x)
        if progress is not None:
            progress(start + len(chunk), len(positions), "tiles")
    return acc.result()[:, :h, :w]
