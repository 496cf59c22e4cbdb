"""Fixtures for inference tests: deterministic models and synthetic slides of dark discs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _inference_models (also for dask workers: spawn copies sys.path)
sys.path.insert(0, str(HERE.parent))  # tests/_pyramids.py

from _inference_models import ThresholdModel  # noqa: E402


@pytest.fixture
def threshold_model() -> ThresholdModel:
    return ThresholdModel().eval()
