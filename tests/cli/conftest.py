"""Fixtures for CLI tests: a tiny untrained checkpoint and the real slides / GlaS images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

#: An untrained network finds glands or not depending on its random init (timm, torch versions):
#: with this post-processing all tissue is gland, so the tests find glands whatever the init.
ALL_TISSUE_IS_GLAND = {"gland_threshold": 0.0, "border_threshold": 1.0, "min_area_um2": 0.0, "fill_holes": True}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from napari_glandseg.model import create_model, save_checkpoint

    torch.manual_seed(0)
    model = create_model("glandseg_tiny")
    weights, _ = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny",
                                 card=model.card.replace(postprocess=ALL_TISSUE_IS_GLAND))
    return weights
