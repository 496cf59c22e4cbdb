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
