"""Fixtures for CLI tests: a tiny untrained checkpoint and the real slides / GlaS images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from napari_glandseg.model import create_model, save_checkpoint

    torch.manual_seed(0)
    model = create_model("glandseg_tiny")
    weights, _ = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny")
    return weights
