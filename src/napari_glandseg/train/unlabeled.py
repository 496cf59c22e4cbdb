"""Unlabeled H&E tiles for self-supervised pretraining, each returned as two augmented views.

Sources: image folders (``images/*.png`` of GlaS-style folders — masks are ignored — or plain
folders of images) resampled to the model's µm/px, and slide files, from which tiles over
tissue (``slide.find_tissue.tissue_mask``) are read at the model's µm/px on demand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_glandseg.labels.folders import image_files, validation_names
from napari_glandseg.labels.masks import read_image
from napari_glandseg.slide.ngff import is_zarr
from napari_glandseg.train.data import DataSource, hed_jitter, resize_plane, weighted_index


@dataclass
class SlideTiles:
    """Level-0 boxes (y, x, h, w) over tissue in one slide, read lazily at ``mpp``."""

    path: Path
    slide_mpp: float | None
    boxes: list[tuple[int, int, int, int]]
    mpp: float
    _slide: object | None = None
    weight: float = 1.0  # the chance of each tile, relative to an image's weight

    def read(self, i: int) -> np.ndarray:
        if self._slide is None:
            from napari_glandseg.slide import open_slide

            self._slide = open_slide(self.path, mpp=self.slide_mpp)
        return np.asarray(self._slide.read_at_mpp(self.boxes[i], self.mpp))


def load_image_folder(folder: Path, *, source_mpp: float, model_mpp: float,
                      skip: frozenset[str] = frozenset()) -> list[np.ndarray]:
    """Every image of ``folder/images`` (or of ``folder``) but those named in ``skip`` (stems), RGB
    uint8 at the model's µm/px (the files ``labels.folders`` calls images; masks are not read)."""
    folder = Path(folder)
    root = folder / "images" if (folder / "images").is_dir() else folder
    scale = source_mpp / model_mpp
    out = []
    for p in image_files(root):
        if p.stem in skip:
            continue
        img = read_image(p)
        shape = (max(1, round(img.shape[0] * scale)), max(1, round(img.shape[1] * scale)))
        out.append(resize_plane(img, shape, nearest=False))
    return out


def slide_tiles(path: Path, *, tile_px: int, model_mpp: float, slide_mpp: float | None = None,
                min_tissue: float = 0.5, max_tiles: int = 2000, seed: int = 0) -> SlideTiles:
    """Boxes of ``tile_px`` (at the model's µm/px) whose tissue-mask fraction ≥ ``min_tissue``."""
    from napari_glandseg.slide import open_slide
    from napari_glandseg.slide.find_tissue import tissue_mask

    slide = open_slide(path, mpp=slide_mpp)
    if slide.mpp is None:
        raise ValueError(f"{path}: the slide has no µm/px; give slide_mpp in the config")
    mask, ds = tissue_mask(slide)
    size0 = int(math.ceil(tile_px * model_mpp / slide.mpp))  # the tile's side in level-0 px
    h0, w0 = slide.shape
    boxes = []
    for y in range(0, max(1, h0 - size0 + 1), size0):
        for x in range(0, max(1, w0 - size0 + 1), size0):
            sub = mask[int(y / ds):int(math.ceil((y + size0) / ds)), int(x / ds):int(math.ceil((x + size0) / ds))]
            if sub.size and sub.mean() >= min_tissue:
                boxes.append((y, x, size0, size0))
    slide.close()
    if not boxes:
        raise ValueError(f"{path}: no {tile_px}-px tiles with ≥ {min_tissue:.0%} tissue")
    if len(boxes) > max_tiles:  # a fixed random subset: pretraining needs variety, not coverage
        keep = np.random.default_rng(seed).choice(len(boxes), max_tiles, replace=False)
        boxes = [boxes[i] for i in sorted(keep)]
    return SlideTiles(Path(path), slide_mpp, boxes, model_mpp)


class TwoViewDataset(torch.utils.data.Dataset):
    """Random regions of the sources, each as two overlapping augmented crops (uint8 H×W×3).

    Deterministic given ``seed`` and the index (the same views on resume and on every rank
    layout), like ``_data.CropDataset``.
    """

    def __init__(self, images: list[np.ndarray], slides: list[SlideTiles], crop_px: int, *,
                 seed: int = 0, region_scale: float = 1.5, scale_jitter: float = 0.2, augment: bool = True,
                 image_weights: list[float] | None = None):
        self.entries = [("image", i) for i in range(len(images))]
        self.entries += [("slide", (s, j)) for s in range(len(slides)) for j in range(len(slides[s].boxes))]
        if not self.entries:
            raise ValueError("no unlabeled images or slide tiles")
        weights = list(image_weights) if image_weights is not None else [1.0] * len(images)
        if len(weights) != len(images):
            raise ValueError(f"{len(weights)} image weights for {len(images)} images")
        weights += [slides[s].weight for s in range(len(slides)) for _ in slides[s].boxes]
        self.weights = np.asarray(weights, dtype=np.float64)
        self.images, self.slides, self.crop_px, self.seed = images, slides, crop_px, seed
        self.region_px = int(round(crop_px * region_scale))
        self.scale_jitter, self.augment = scale_jitter, augment

    def __len__(self) -> int:
        return 10**9

    def _region(self, rng: np.random.Generator) -> np.ndarray:
        kind, ref = self.entries[weighted_index(self.weights, rng)]
        if kind == "slide":
            s, j = ref
            return self.slides[s].read(j)
        img = self.images[ref]
        size = self.region_px
        ph, pw = max(0, size - img.shape[0]), max(0, size - img.shape[1])
        if ph or pw:
            img = np.pad(img, ((0, ph), (0, pw), (0, 0)), constant_values=255)
        y = rng.integers(img.shape[0] - size + 1)
        x = rng.integers(img.shape[1] - size + 1)
        return img[y:y + size, x:x + size]

    def _view(self, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        scale = float(np.exp(rng.uniform(-self.scale_jitter, self.scale_jitter))) if self.augment else 1.0
        src = min(max(8, round(self.crop_px / scale)), min(region.shape[:2]))
        y = rng.integers(region.shape[0] - src + 1)
        x = rng.integers(region.shape[1] - src + 1)
        view = resize_plane(np.ascontiguousarray(region[y:y + src, x:x + src]), (self.crop_px,) * 2, nearest=False)
        if self.augment:
            view = np.rot90(view, int(rng.integers(4)), axes=(0, 1))
            if rng.random() < 0.5:
                view = view[:, ::-1]
            if rng.random() < 0.8:
                view = hed_jitter(np.ascontiguousarray(view), rng)
            if rng.random() < 0.2:
                sigma = rng.uniform(0.3, 1.2)
                view = ndi.gaussian_filter(view.astype(np.float32), (sigma, sigma, 0)).clip(0, 255).astype(np.uint8)
        return np.array(view, copy=True, order="C")  # writable: torch.from_numpy needs it

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        region = self._region(rng)
        return torch.from_numpy(self._view(region, rng)), torch.from_numpy(self._view(region, rng))


def load_unlabeled(sources: list, *, crop_px: int, model_mpp: float, data_mpp: float,
                   slide_mpp: float | None, seed: int, max_tiles_per_slide: int,
                   holdout: float = 0.0) -> tuple[list, list, list]:
    """(images, slide tile lists, image weights) from folders and slide files: each source a path
    or a config entry ``{path, mpp, weight}`` (``mpp`` overrides ``data_mpp`` for a folder and
    ``slide_mpp`` for a slide; ``weight`` multiplies the chance of each of its images or tiles).

    ``holdout``: leave out the images a supervised run with ``val_fraction=holdout`` and the same
    ``seed`` validates on (folders with masks), so an ablation's arms never see them."""
    images, slides, weights = [], [], []
    for src in map(DataSource.parse, sources):
        path = src.path
        if path.is_dir() and not is_zarr(path):
            skip = frozenset(validation_names(path, holdout, seed))
            loaded = load_image_folder(path, source_mpp=src.mpp or data_mpp, model_mpp=model_mpp, skip=skip)
            images += loaded
            weights += [src.weight] * len(loaded)
        else:
            tiles = slide_tiles(path, tile_px=int(round(crop_px * 1.5)), model_mpp=model_mpp,
                                slide_mpp=src.mpp or slide_mpp, max_tiles=max_tiles_per_slide, seed=seed)
            tiles.weight = src.weight
            slides.append(tiles)
    return images, slides, weights

