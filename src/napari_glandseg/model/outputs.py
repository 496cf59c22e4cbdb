"""What a network's output channels mean: class logits first (a softmax over them), then maps,
each its own sigmoid (a distance head's normalised distance of a pixel to its gland's edge).

Everything that turns logits into probabilities (the predictor, validation, test-time
augmentation) goes through here, so a model with a distance head runs wherever one without does:
its probabilities are the class probabilities with the maps stacked after them.
"""

from __future__ import annotations

import torch


def to_probabilities(logits: torch.Tensor, n_classes: int) -> torch.Tensor:
    """N×C×H×W logits → float32 probabilities: softmax over the first ``n_classes`` channels,
    a sigmoid on each one after them."""
    logits = logits.float()
    if logits.shape[1] == n_classes:
        return logits.softmax(1)
    return torch.cat([logits[:, :n_classes].softmax(1), logits[:, n_classes:].sigmoid()], 1)


def to_logits(probs: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The inverse of :func:`to_probabilities` (up to the softmax's free constant): log class
    probabilities, logit maps. Test-time augmentation averages probabilities and returns these."""
    classes = torch.log(probs[:, :n_classes].clamp_min(1e-8))
    if probs.shape[1] == n_classes:
        return classes
    return torch.cat([classes, torch.logit(probs[:, n_classes:], eps=1e-6)], 1)
