"""Folders of images and their ground-truth masks: the one reader behind ``glandseg evaluate``,
``glandseg finetune`` (and the viewer's fine-tune) and the training scripts, so that a folder one
of them accepts the others accept too, and a bad one gets the same error through every door.

Pairing: a mask has its image's name (any suffix of ``IMAGE_SUFFIXES``) or GlaS's original
``NAME_anno``; images and masks may share one folder (GlaS as distributed: ``train_1.bmp`` beside
``train_1_anno.bmp``). Every image needs exactly one mask and every mask an image. Hidden files
(``._x.png`` of macOS copies) are not images. Masks are read by ``labels.masks.read_mask``
(binary, instance or colour-coded; lossy formats refused).

A GlaS-style folder holds ``images/`` and ``masks/`` and, where it has them, the official
instance masks in ``instances/``: those are preferred (touching glands stay apart).
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_glandseg.errors import GlandsegError
from napari_glandseg.labels.masks import read_image, read_mask

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
#: GlaS's images are 20× scans at about 0.62 µm/px: the µm/px of folders that say nothing.
GLAS_MPP = 0.62
#: GlaS's original mask names: ``NAME_anno.bmp`` beside ``NAME.bmp``.
ANNO_TAG = "_anno"


@dataclass(frozen=True)
class ImageMask:
    """One image and its mask."""

    image: Path
    mask: Path

    @property
    def name(self) -> str:
        return self.image.stem

    def check(self, *, allow_empty: bool = True) -> None:
        """The mask reads (not lossy), has the image's size (read from its header) and, unless
        ``allow_empty``, some gland pixels; ``GlandsegError`` naming the file otherwise."""
        mask = read_mask(self.mask)
        width, height = image_size(self.image)
        _check_size(self, (height, width), mask.shape)
        if not allow_empty and not mask.any():
            raise GlandsegError(f"{self.mask}: the mask is empty (no gland pixels); draw the glands, or leave "
                                "the image out")

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 image, 2-D mask ids) after the same size check as ``check``."""
        image, mask = read_image(self.image), read_mask(self.mask)
        _check_size(self, image.shape[:2], mask.shape)
        return image, mask


def _check_size(pair: ImageMask, image_hw: tuple[int, ...], mask_hw: tuple[int, ...]) -> None:
    if tuple(mask_hw) != tuple(image_hw):
        raise GlandsegError(f"{pair.mask}: the mask is {mask_hw[1]}×{mask_hw[0]} px but {pair.image.name} is "
                            f"{image_hw[1]}×{image_hw[0]} (W×H); masks must match their images")


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file from its header (nothing decoded)."""
    from PIL import Image, UnidentifiedImageError

    from napari_glandseg._atomic import open_regular

    try:
        with open_regular(path) as f, Image.open(f) as im:  # a FIFO must not hang the caller
            return im.size
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
        raise GlandsegError(f"{path}: cannot read the image: {exc}") from exc


def image_files(folder: str | os.PathLike, what: str = "images") -> list[Path]:
    """The image files of ``folder`` in natural order (``x_2`` before ``x_10``); a missing folder
    or one without images is an error naming it (``what`` says which folder it is)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GlandsegError(f"{folder}: the {what} folder does not exist")
    files = sorted((p for p in folder.iterdir() if _is_image_file(p)), key=_natural)
    if not files:
        raise GlandsegError(f"{folder}: no {what} ({', '.join(IMAGE_SUFFIXES)})")
    return files


def pair_folders(images: str | os.PathLike, masks: str | os.PathLike) -> list[ImageMask]:
    """(image, mask) pairs by name (see the module doc), in natural order; names only are checked."""
    images, masks = Path(images), Path(masks)
    image_list, mask_list = image_files(images), image_files(masks, "masks")
    same = images.resolve() == masks.resolve()
    if same:  # one folder: NAME_anno.* are the masks, the rest the images
        image_list = [p for p in image_list if not p.stem.endswith(ANNO_TAG)]
        mask_list = [p for p in mask_list if p.stem.endswith(ANNO_TAG)]
    by_stem: dict[str, list[Path]] = {}
    for m in mask_list:
        by_stem.setdefault(m.stem, []).append(m)
    _check_unique(image_list, images)
    pairs, lonely_images, used = [], [], set()
    for img in image_list:
        found = by_stem.get(img.stem, []) + by_stem.get(img.stem + ANNO_TAG, [])
        if not found:
            lonely_images.append(img.name)
            continue
        if len(found) > 1:
            raise GlandsegError(f"{masks}: {len(found)} masks for {img.name} ({', '.join(p.name for p in found)}); "
                                "keep one")
        pairs.append(ImageMask(img, found[0]))
        used.add(found[0])
    lonely_masks = [m.name for m in mask_list if m not in used]
    if lonely_images or lonely_masks:
        parts = [f"no mask for {len(lonely_images)} image(s) in {masks}: {lonely_images[:3]}"] if lonely_images else []
        parts += [f"no image for {len(lonely_masks)} mask(s) in {images}: {lonely_masks[:3]}"] if lonely_masks else []
        raise GlandsegError("image and mask names do not match (a mask has its image's name, or NAME"
                            f"{ANNO_TAG}): " + "; ".join(parts))
    return pairs


def checked_pairs(images: str | os.PathLike, masks: str | os.PathLike, *, allow_empty: bool = True,
                  limit: int | None = None) -> list[ImageMask]:
    """``pair_folders`` (the first ``limit`` pairs), each pair checked (``ImageMask.check``)."""
    pairs = pair_folders(images, masks)
    pairs = pairs[:limit] if limit else pairs
    for pair in pairs:
        pair.check(allow_empty=allow_empty)
    return pairs


def glas_masks(folder: str | os.PathLike) -> Path:
    """The mask folder of a GlaS-style folder: ``instances/`` where it exists, else ``masks/``."""
    folder = Path(folder)
    return folder / "instances" if (folder / "instances").is_dir() else folder / "masks"


def glas_pairs(folder: str | os.PathLike) -> list[ImageMask]:
    """The pairs of a GlaS-style folder (``images/`` with ``instances/`` or ``masks/``)."""
    folder = Path(folder)
    if not (folder / "images").is_dir():
        raise GlandsegError(f"{folder}: no images/ folder (a GlaS-style folder has images/ and masks/)")
    return pair_folders(folder / "images", glas_masks(folder))


def _check_unique(files: list[Path], folder: Path) -> None:
    seen: dict[str, Path] = {}
    for p in files:
        if p.stem in seen:
            raise GlandsegError(f"{folder}: two images named {p.stem} ({seen[p.stem].name}, {p.name}); keep one")
        seen[p.stem] = p


def _is_image_file(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _natural(p: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name))


def split_names(names: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Deterministic train/validation split of image names."""
    names = sorted(names)
    rnd = random.Random(seed)
    val = sorted(rnd.sample(names, max(1, round(len(names) * val_fraction)))) if val_fraction > 0 else []
    return [n for n in names if n not in val], val


def validation_names(folder: str | os.PathLike, fraction: float, seed: int) -> list[str]:
    """The images a training run with ``val_fraction=fraction`` and ``seed`` validates on in
    ``folder`` (a folder with masks; none for a plain image folder or ``fraction`` 0)."""
    folder = Path(folder)
    if fraction <= 0 or not (folder / "images").is_dir() or not glas_masks(folder).is_dir():
        return []  # a plain image folder (no masks): nothing is validated on
    names = [pair.name for pair in glas_pairs(folder)]
    return split_names(names, fraction, seed)[1] if names else []
