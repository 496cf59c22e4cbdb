"""Scoring a model on held-back corrections, and choosing its post-processing there.

The model runs once per scored image (``predict_boxes``); the probabilities are kept, so the
post-processing can then be scored at many settings for the price of post-processing alone
(``score_boxes``). ``calibrate_postprocess`` picks, after a fine-tune, the gland threshold and
minimum gland area that give the best object F1 on the held-back corrections, as long as the
held-out replay images (the organs the model knew) lose no more than a set tolerance: a model
fine-tuned on prostate corrections learns where prostate glands are, but the settings made for
its base model's specks and glands may not fit what it now predicts. With few held-back glands
the choice follows noise (measured: on strips of 3 RINGS tiles holding a handful of glands it
chose settings that lost 0.04 object F1 on unseen tiles in 2 of 4 runs), so it only runs when
the held-back corrections hold at least ``MIN_GLANDS`` glands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_glandseg.train.data import Sample

#: Image context (model px) segmented around a scored box, so glands at its edge are seen whole.
CONTEXT_PX = 96
#: The candidate gland thresholds and multiples of the base minimum area.
GLAND_THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8)
AREA_FACTORS = (0.5, 1.0, 2.0, 4.0, 8.0)
#: Held-back glands needed before the post-processing is chosen on them.
MIN_GLANDS = 30


@dataclass(frozen=True)
class ScoredBox:
    """A scored image's probabilities (C×H×W, its box plus context) and what counts in its box."""

    probs: np.ndarray
    box: tuple[slice, slice]  # the scored box within ``probs``
    truth: np.ndarray  # instance labels of the box, 0 outside ``keep``
    keep: np.ndarray  # the box's pixels that are scored


def predict_boxes(model: torch.nn.Module, samples: Sequence[Sample], device: torch.device,
                  amp: bool = True, cancel: Any = None) -> list[ScoredBox]:
    """Probabilities of each sample's ``valid`` box and ``CONTEXT_PX`` around it, as
    ``segment_image`` computes them for users (tiles, blending). ``cancel.is_set()`` stops it
    between batches of tiles (``Cancelled``)."""
    from napari_glandseg.inference.predictor import Predictor
    from napari_glandseg.inference.region import probabilities

    was_training = model.training
    predictor = Predictor(model, device=device, amp=amp)
    out = []
    for s in samples:
        ys, xs = np.nonzero(s.valid.any(1))[0], np.nonzero(s.valid.any(0))[0]
        y0, x0 = max(0, ys[0] - CONTEXT_PX), max(0, xs[0] - CONTEXT_PX)
        probs = probabilities(np.ascontiguousarray(s.image[y0 : ys[-1] + 1 + CONTEXT_PX,
                                                           x0 : xs[-1] + 1 + CONTEXT_PX]), predictor,
                              cancel=cancel)
        box = (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
        keep = s.valid[box]
        out.append(ScoredBox(probs, (slice(ys[0] - y0, ys[-1] + 1 - y0), slice(xs[0] - x0, xs[-1] + 1 - x0)),
                             np.where(keep, s.labels[box], 0), keep))
    model.train(was_training)
    return out


def score_boxes(boxes: Sequence[ScoredBox], *, mpp: float, params: dict[str, Any]) -> dict[str, float]:
    """Mean object F1, pixel Dice and object Dice over ``boxes`` at post-processing ``params``.
    (No Hausdorff distance: on a poor model's specks it takes minutes.)"""
    from napari_glandseg.inference.postprocess import probabilities_to_instances
    from napari_glandseg.labels import metrics

    rows = []
    for b in boxes:
        pred = np.where(b.keep, probabilities_to_instances(b.probs, mpp=mpp, params=params)[b.box], 0)
        rows.append([metrics.object_f1(pred, b.truth), metrics.pixel_dice(pred, b.truth),
                     metrics.object_dice(pred, b.truth)])
    means = np.mean(rows, axis=0) if rows else np.full(3, np.nan)
    return {"object_f1": float(means[0]), "pixel_dice": float(means[1]), "object_dice": float(means[2]),
            "images": len(rows)}


def candidates(base: dict[str, Any]) -> list[dict[str, Any]]:
    """The post-processing settings tried: the base's, and its gland threshold × minimum area grid."""
    from napari_glandseg.model.card import DEFAULT_POSTPROCESS

    base = {**DEFAULT_POSTPROCESS, **base}
    out = [base]
    for t in GLAND_THRESHOLDS:
        for f in AREA_FACTORS:
            p = {**base, "gland_threshold": t, "min_area_um2": round(float(base["min_area_um2"]) * f, 1)}
            if p != base:
                out.append(p)
    return out


def held_back_glands(boxes: Sequence[ScoredBox]) -> int:
    """Glands of the truth in the scored boxes (a gland cut by two boxes counts twice)."""
    return sum(len(np.unique(b.truth[b.keep & (b.truth > 0)])) for b in boxes)


def calibrate_postprocess(user: Sequence[ScoredBox], replay: Sequence[ScoredBox], *, mpp: float,
                          base: dict[str, Any], min_gain: float = 0.02, tolerance: float = 0.01,
                          min_glands: int = MIN_GLANDS,
                          cancelled: Callable[[], bool] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(post-processing, report): the candidate with the best object F1 on ``user`` among those
    whose object F1 on ``replay`` is within ``tolerance`` of the base settings'; the base settings
    unless that gains at least ``min_gain``, or when ``user`` holds fewer than ``min_glands``
    glands. The report holds both settings' scores. ``cancelled()`` is asked between candidates
    (``Cancelled``)."""
    from napari_glandseg.model.card import DEFAULT_POSTPROCESS

    base = {**DEFAULT_POSTPROCESS, **base}  # both paths return complete settings
    glands = held_back_glands(user)
    if glands < min_glands:
        return dict(base), {"skipped": f"{glands} held-back glands, fewer than {min_glands}: base settings kept",
                            "candidates": 1, "base": dict(base), "chosen": dict(base)}
    tried = []
    for params in candidates(base):
        if cancelled is not None and cancelled():
            from napari_glandseg.errors import Cancelled

            raise Cancelled("fine-tuning cancelled")
        u = score_boxes(user, mpp=mpp, params=params)
        r = score_boxes(replay, mpp=mpp, params=params) if replay else None
        tried.append((params, u, r))
    base_params, base_u, base_r = tried[0]
    allowed = [t for t in tried if t[2] is None or t[2]["object_f1"] >= base_r["object_f1"] - tolerance]
    best = max(allowed, key=lambda t: (t[1]["object_f1"], t[1]["pixel_dice"]))
    chosen = best if best[1]["object_f1"] >= base_u["object_f1"] + min_gain else tried[0]
    report = {
        "chosen_on": "held-back corrections (object F1), replay object F1 within "
                     f"{tolerance} of the base settings', a gain of at least {min_gain}",
        "candidates": len(tried), "held_back_glands": glands, "base": base_params, "chosen": chosen[0],
        "held_back": {"base": base_u, "chosen": chosen[1]},
        "replay": {"base": base_r, "chosen": chosen[2]} if replay else None,
    }
    return chosen[0], report


def describe_postprocess(params: dict[str, Any]) -> str:
    """The settings the calibration chooses, in words."""
    from napari_glandseg.model.card import DEFAULT_POSTPROCESS

    p = {**DEFAULT_POSTPROCESS, **params}
    return f"gland threshold {p['gland_threshold']:g}, minimum gland area {p['min_area_um2']:g} µm²"
