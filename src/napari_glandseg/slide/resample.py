"""Resampling between grids: RGB (bilinear, anti-aliased) and labels (nearest by pixel centre),
and a slide with a given µm/px. Used by inference, the label exports and training alike."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
from PIL import Image

from napari_glandseg.errors import GlandsegError


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of H×W×3 uint8 (PIL widens the kernel when shrinking: anti-aliased)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    img = Image.fromarray(rgb)
    return np.asarray(img.resize((width, height), Image.Resampling.BILINEAR))


def read_on_grid(slide: Any, origin0: tuple[float, float], shape: tuple[int, int], factor: float,
                 mpp: float) -> np.ndarray:
    """The slide's RGB read at ``mpp`` onto an H×W grid of ``factor`` level-0 px per pixel from
    ``origin0`` (the reader's rounding fitted away)."""
    h, w = shape
    rgb = slide.read_at_mpp((origin0[0], origin0[1], h * factor, w * factor), mpp)
    return rgb if rgb.shape[:2] == (h, w) else resize_rgb(rgb, h, w)


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize by pixel centres (exact, label ids unchanged)."""
    h, w = labels.shape
    if (h, w) == (height, width):
        return labels
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.intp), w - 1)
    return labels[rows[:, None], cols[None, :]]


def with_mpp(slide: Any, mpp: float | None) -> Any:
    """The slide with ``mpp`` as its µm/px (a shallow copy when it overrides the file's)."""
    if mpp is not None:
        if not (isinstance(mpp, int | float) and math.isfinite(mpp) and mpp > 0):
            raise GlandsegError(f"{slide.path}: mpp must be a positive number of µm per pixel, got {mpp!r}")
        if slide.mpp != mpp:
            slide = copy.copy(slide)
            slide.mpp = float(mpp)
    if slide.mpp is None:
        raise GlandsegError(
            f"{slide.path}: the file does not say its resolution (µm/px); pass mpp=... "
            "(CLI: --mpp) to say what it is"
        )
    return slide
