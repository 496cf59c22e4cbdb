"""Segmentation losses. Every term is a mean of per-sample losses, so that DDP's gradient
averaging over equal per-rank batches equals single-process training on the global batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from napari_glandseg.train.data import IGNORE, SEPARATION
from napari_glandseg.train.distance_target import split_target


def split_separation(target: torch.Tensor, weight: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Targets with ``SEPARATION`` marks (``data.make_targets``) → plain classes and per-pixel
    cross-entropy weights (``weight`` where two glands lie close, 1 elsewhere; None: a weight of 1).
    No host-device sync: a GPU step does not wait for it."""
    marked = (target >= SEPARATION) & (target != IGNORE)
    plain = torch.where(marked, target - SEPARATION, target)
    return plain, (1.0 + (weight - 1.0) * marked.float()) if weight != 1.0 else None


def per_sample_ce(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None,
                  pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy averaged over each sample's labelled pixels (each counted ``pixel_weights``
    times where given) → N values."""
    ce = F.cross_entropy(logits.float(), target, weight=class_weights, ignore_index=IGNORE, reduction="none")
    valid = (target != IGNORE).float()
    if pixel_weights is not None:
        valid = valid * pixel_weights
    return (ce * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1.0)


def per_sample_dice(logits: torch.Tensor, target: torch.Tensor, classes=(1, 2), eps: float = 1.0) -> torch.Tensor:
    """1 − soft Dice of the gland region (gland ∪ border) and of each foreground class → N values."""
    probs = logits.float().softmax(1)
    valid = (target != IGNORE).float()
    t = torch.where(target == IGNORE, torch.zeros_like(target), target)
    terms = []
    region_p = probs[:, list(classes)].sum(1)
    region_t = (t > 0).float()
    terms.append(_dice(region_p, region_t, valid, eps))
    for c in classes:
        if c < probs.shape[1]:
            terms.append(_dice(probs[:, c], (t == c).float(), valid, eps))
    return 1.0 - torch.stack(terms, 1).mean(1)


def _dice(p: torch.Tensor, t: torch.Tensor, valid: torch.Tensor, eps: float) -> torch.Tensor:
    p, t = (p * valid).flatten(1), (t * valid).flatten(1)
    return (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)


def segmentation_loss(
    out: dict, target: torch.Tensor, *, dice_weight: float = 1.0, deep_weights=(0.2, 0.1, 0.05),
    class_weights: torch.Tensor | None = None, classes: tuple[int, ...] = (1, 2), separation_weight: float = 1.0,
    distance_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Dice + CE on the full-resolution logits plus down-weighted deep-supervision terms;
    ``classes``: the foreground classes (gland, border; the guided model has gland only);
    ``separation_weight``: the cross-entropy weight of pixels marked as lying between glands;
    a distance head's map (an output channel after the classes) learns the target's distances
    (``train.distance_target``), weighing ``distance_weight``."""
    marked, distance, known = split_target(target)
    target, pixel_weights = split_separation(marked, separation_weight)
    n_classes = max(classes) + 1
    logits = out["logits"][:, :n_classes]
    main_ce = per_sample_ce(logits, target, class_weights, pixel_weights)
    main_dice = per_sample_dice(logits, target, classes)
    loss = main_ce + dice_weight * main_dice
    parts = {"ce": float(main_ce.detach().mean()), "dice_loss": float(main_dice.detach().mean())}
    if out["logits"].shape[1] > n_classes:  # a distance head (model.outputs)
        d_loss = per_sample_distance(out["logits"][:, n_classes], distance, known & (target != IGNORE))
        loss = loss + distance_weight * d_loss
        parts["distance"] = float(d_loss.detach().mean())
    for w, logits in zip(deep_weights, out.get("deep", []), strict=False):
        small, small_weights = split_separation(
            F.interpolate(marked[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long(), separation_weight)
        loss = loss + w * (per_sample_ce(logits, small, class_weights, small_weights)
                           + dice_weight * per_sample_dice(logits, small, classes))
    return loss.mean(), parts


def per_sample_distance(logit: torch.Tensor, distance: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the distance map (N×H×W logits) against the soft target, averaged
    over each sample's pixels where the distance is known → N values (0 where none is)."""
    bce = F.binary_cross_entropy_with_logits(logit.float(), distance, reduction="none")
    w = known.float()
    return (bce * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1.0)


def tumor_loss(out: dict, tumor: torch.Tensor) -> torch.Tensor:
    """Per-sample CE of the tumor head where the label is known (−1 = unknown → 0 loss)."""
    known = tumor >= 0
    ce = F.cross_entropy(out["tumor"].float(), tumor.clamp_min(0), reduction="none")
    return (ce * known.float()).mean()
