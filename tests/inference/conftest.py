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


def disc_image(height: int, width: int, discs: list[tuple[int, int, int]]) -> np.ndarray:
    """White (glass-like, slightly pink so tissue detection sees it) with dark discs (cy, cx, r)."""
    img = np.full((height, width, 3), (235, 200, 225), np.uint8)
    yy, xx = np.mgrid[:height, :width]
    for cy, cx, r in discs:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (70, 30, 100)
    return img


def write_disc_slide(path: Path, img: np.ndarray, mpp: float) -> Path:
    """A lossless 2-level tiled pyramidal TIFF of ``img``."""
    from _pyramids import write_pyramid_tiff

    write_pyramid_tiff(path, img, n_levels=2, mpp=mpp, compression="zlib", tile=128)
    return path
