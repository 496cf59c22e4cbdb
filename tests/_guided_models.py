"""Tiny guided models for the click-to-segment tests (the real network, no trained weights)."""

from __future__ import annotations

import torch

from napari_glandseg.model import create_model


def tiny_guided() -> torch.nn.Module:
    """The tiny guided network (RGB + inclusion + exclusion → background / gland), untrained."""
    torch.manual_seed(0)
    return create_model("glandseg_tiny", in_chans=5, num_classes=2, tile_px=128, overlap_px=0).eval()


def gland_everywhere() -> torch.nn.Module:
    """The tiny guided network with its output head set to call every pixel gland.

    Deterministic: the window grows to its largest (``MAX_GROWTHS``) and the gland found is that
    whole window minus the exclusion marks, so tests can check where a result lands.
    """
    model = tiny_guided()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([-3.0, 3.0]))
    return model
