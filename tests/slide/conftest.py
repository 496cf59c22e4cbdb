"""Fixtures for slide tests: the real slides and generated pyramids made of real GlaS tissue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import _pyramids


@pytest.fixture(scope="session")
def slides_dir(shared_data: Path) -> Path:
    return shared_data / "slides"


@pytest.fixture(scope="session")
def tcga_svs(slides_dir: Path) -> Path:
    return slides_dir / "tcga-cr-7395-01a-01-ts1.svs"


@pytest.fixture(scope="session")
def glas_dir(shared_data: Path) -> Path:
    return shared_data / "glas"


@pytest.fixture(scope="session")
def mosaic(glas_dir: Path) -> np.ndarray:
    """2000 × 3000 px of real colon tissue (GlaS crops)."""
    return _pyramids.glas_mosaic(glas_dir, 2000, 3000)


@pytest.fixture(scope="session")
def gen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generated")
