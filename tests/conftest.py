"""Shared test set-up: offscreen Qt and the real data folder next to the repository."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests never see (or write) the user's own fine-tuned models; tests of the folder set their own.
os.environ["GLANDSEG_MODELS_DIR"] = tempfile.mkdtemp(prefix="glandseg_test_models_")
# The same bits every run: "auto" would time bf16 against fp32 (a race on a busy machine) and
# count free cores; tests of that choice clear these (tests/model/test_precision.py).
os.environ["GLANDSEG_PRECISION"] = "fp32"
os.environ["GLANDSEG_THREADS"] = str(min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2))

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (GlaS images, real slides); tests skip when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA.resolve()} (see README)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cmu_svs(shared_data: Path) -> Path:
    """CMU-1-Small-Region.svs: one level, 0.499 µm/px, JPEG, with label and macro images."""
    return shared_data / "slides" / "cmu-1-small-region.svs"
