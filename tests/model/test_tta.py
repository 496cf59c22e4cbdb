"""Test-time augmentation averages over symmetries and leaves the rest of the model alone."""

from __future__ import annotations

import torch

from napari_glandseg.model import create_model
from napari_glandseg.model.tta import DIHEDRAL, TTAModel, with_tta


def test_tta_is_invariant_to_the_symmetries_it_averages():
    torch.manual_seed(0)
    model = create_model("glandseg_tiny").eval()
    tta = with_tta(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        p = tta(x).softmax(1)
        p_rot = tta(torch.rot90(x, 1, dims=(-2, -1))).softmax(1)
        plain = model(x).softmax(1)
    assert torch.allclose(torch.rot90(p, 1, dims=(-2, -1)), p_rot, atol=1e-5)
    assert torch.allclose(p.sum(1), torch.ones(1, 64, 64), atol=1e-4)
    assert not torch.allclose(p, plain, atol=1e-3), "an untrained model is not symmetric: TTA changes it"


def test_the_identity_alone_changes_nothing_and_the_card_passes_through():
    torch.manual_seed(0)
    model = create_model("glandseg_tiny").eval()
    ident = TTAModel(model, transforms=[(0, False)])
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(ident(x).softmax(1), model(x).softmax(1), atol=1e-5)
        assert with_tta(model)(x).shape == (2, 3, 64, 96), "non-square tiles skip the quarter turns"
    assert ident.card is model.card and with_tta(model, enabled=False) is model
    assert len(DIHEDRAL) == 8 and TTAModel(with_tta(model)).model is model
