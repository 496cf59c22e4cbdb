"""Fixtures for inference tests: deterministic models and synthetic slides of dark discs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _inference_models (also for dask workers: spawn copies sys.path)
sys.path.insert(0, str(HERE.parent))  # tests/_pyramids.py

from _inference_models import ThresholdModel  # noqa: E402


@pytest.fixture
def threshold_model() -> ThresholdModel:
    return ThresholdModel().eval()


def disc_image(
    height: int, width: int, discs: list[tuple[int, int, int]], tissue: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Glass (near white) with a pink tissue box (y0, x0, y1, x1) and dark discs (cy, cx, r).

    Without ``tissue`` the whole image is pink.
    """
    img = np.full((height, width, 3), (200, 120, 180), np.uint8)
    if tissue is not None:
        y0, x0, y1, x1 = tissue
        glass = np.full_like(img, 246)
        glass[y0:y1, x0:x1] = img[y0:y1, x0:x1]
        img = glass
    yy, xx = np.mgrid[:height, :width]
    for cy, cx, r in discs:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (60, 45, 75)
    return img


def write_disc_slide(path: Path, img: np.ndarray, mpp: float) -> Path:
    """A lossless 2-level tiled pyramidal TIFF of ``img``."""
    from _pyramids import write_pyramid_tiff

    write_pyramid_tiff(path, img, n_levels=2, mpp=mpp, compression="zlib", tile=128)
    return path
