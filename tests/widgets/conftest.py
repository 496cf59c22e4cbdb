"""Fixtures for the widget tests: a deterministic "dark pixels are gland" model, known slides."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from _jobs import TINY_BASE
from _layers import BLOBS, SYNTH_MPP, SYNTH_SHAPE

from napari_glandseg.model.card import ModelCard


class DarkModel(torch.nn.Module):
    """A real torch model whose "gland" logit is high where the pixel is dark (grey < 0.5).

    Deterministic and instant, so a known dark region must come back as a known gland: what
    the tests check is where the widgets put it, not what a trained network thinks.
    """

    def __init__(self, mpp: float = 1.0, tile_px: int = 128, overlap_px: int = 16,
                 gate: threading.Event | None = None):
        super().__init__()
        self.card = ModelCard(
            name="dark-test", mpp=mpp, tile_px=tile_px, overlap_px=overlap_px,
            mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
            postprocess={"gland_threshold": 0.5, "border_threshold": 0.99, "min_area_um2": 50.0, "fill_holes": True},
        )
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # so .to(device)/.parameters() work
        self.gate = gate

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        x = rgb.permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.card.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.card.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def forward(self, x: torch.Tensor, return_all: bool = False):
        if self.gate is not None and not self.gate.wait(120):  # the test acts while the run waits here
            raise TimeoutError("the test never opened the gate")
        grey = x.float().mean(1, keepdim=True)
        gland = 40.0 * (0.5 - grey)
        logits = torch.cat([-gland, gland, torch.full_like(gland, -40.0)], 1) + 0 * self.anchor
        return {"logits": logits} if return_all else logits


@pytest.fixture
def dark_model() -> DarkModel:
    return DarkModel().eval()


@pytest.fixture
def make_dark_model():
    """DarkModel factory (e.g. one that waits for the test: ``make_dark_model(gate=threading.Event())``)."""
    return lambda **kw: DarkModel(**kw).eval()


@pytest.fixture(scope="session")
def synth_image() -> np.ndarray:
    """White slide with dark rectangles at ``BLOBS`` (level-0 px)."""
    img = np.full((*SYNTH_SHAPE, 3), 235, np.uint8)
    for y, x, h, w in BLOBS:
        img[y : y + h, x : x + w] = (60, 30, 90)
    return img


@pytest.fixture(scope="session")
def synth_slide(tmp_path_factory, synth_image) -> Path:
    """A 3-level tiled pyramidal TIFF (lossless) of ``synth_image`` at 0.5 µm/px."""
    from _pyramids import write_pyramid_tiff

    path = tmp_path_factory.mktemp("synth") / "synth.tif"
    write_pyramid_tiff(path, synth_image, n_levels=3, mpp=SYNTH_MPP, compression="zlib")
    return path


@pytest.fixture
def artifacts() -> Path:
    out = Path(__file__).resolve().parents[2] / "test-artifacts"
    out.mkdir(exist_ok=True)
    return out


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """A user models folder holding one tiny model, ``tiny-base``."""
    from napari_glandseg.model import create_model, save_checkpoint
    from napari_glandseg.model.user_models import ENV_VAR

    folder = tmp_path / "models"
    monkeypatch.setenv(ENV_VAR, str(folder))
    torch.manual_seed(0)
    model = create_model("glandseg_tiny")
    save_checkpoint(model, folder / TINY_BASE / "model", card=model.card.replace(name=TINY_BASE))
    return folder
