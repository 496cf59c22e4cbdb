"""Test-time augmentation: the model's class probabilities averaged over flips and 90° rotations.

``with_tta(model)`` wraps a model so that everything that runs models (the predictor, Segment
view, whole-slide runs, evaluation) gets TTA without knowing about it: its forward returns the
log of the averaged probabilities (logits of averaged maps), which ``model.outputs`` turns back
into those probabilities.
Costs ``len(transforms)`` forward passes (8 for the full dihedral group, 4 for flips only).
"""

from __future__ import annotations

import torch
from torch import nn

from napari_glandseg.model.outputs import to_logits, to_probabilities

# (k quarter turns, flip left-right): the 8 symmetries of a square tile
DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))
FLIPS = ((0, False), (0, True), (2, False), (2, True))


def _apply(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, k, dims=(-2, -1)) if k else x
    return torch.flip(x, dims=(-1,)) if flip else x


def _undo(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.flip(x, dims=(-1,)) if flip else x
    return torch.rot90(x, -k, dims=(-2, -1)) if k else x


class TTAModel(nn.Module):
    """A model whose logits are those of the mean over transforms of the probabilities of
    model(T x) mapped back (``model.outputs``: log class probabilities, logit maps)."""

    def __init__(self, model: nn.Module, transforms=DIHEDRAL):
        super().__init__()
        if isinstance(model, TTAModel):
            model = model.model
        self.model, self.transforms = model, tuple(transforms)

    @property
    def card(self):
        return self.model.card

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.model.normalize(rgb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A quarter turn of a non-square tile changes its shape: those are skipped.
        used = [t for t in self.transforms if not (t[0] % 2 and x.shape[-1] != x.shape[-2])]
        n = len(self.card.classes)
        total = sum(_undo(to_probabilities(self.model(_apply(x, k, flip)), n), k, flip) for k, flip in used)
        return to_logits(total / len(used), n)


def with_tta(model: nn.Module, enabled: bool = True, transforms=DIHEDRAL) -> nn.Module:
    """``model`` wrapped for test-time augmentation (or itself when ``enabled`` is false)."""
    return TTAModel(model, transforms) if enabled else model
