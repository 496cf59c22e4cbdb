"""Fixtures for inference tests: deterministic models and synthetic slides of dark discs."""

from __future__ import annotations

import pytest
from _inference_models import ThresholdModel  # on sys.path by pyproject's pythonpath (dask workers too)


@pytest.fixture
def threshold_model() -> ThresholdModel:
    return ThresholdModel().eval()
