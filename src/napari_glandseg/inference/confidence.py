"""How sure the model is of each gland it drew, from its own probabilities.

A pathologist correcting a slide should look first where the model hesitated. Per gland, from
the foreground probability ``fg`` (gland + border) and the border probability:

- ``margin``: mean of |2·fg − 1| over the gland and a thin ring around it — low where the
  model was undecided whether pixels are gland;
- ``edge``: mean fg just inside the outline minus just outside it — a crisp outline is near 1;
- ``ridge``: the share of the gland's interior where the border class is likely (reported; on
  validation it marked right glands more often than wrong ones, so it is not in the score).

``confidence`` = margin × edge, in [0, 1] (higher: surer). Chosen on validation images (15 % of
GlaS train and one RINGS tile, which the bundled models never trained on;
``benchmarks/review_order.py``) among the features alone, their products and gland-size terms;
never on a test set.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

RING_PX = 2  # model pixels (~2.5 µm) each side of the outline
RIDGE_P = 0.35  # border probability that marks a ridge pixel
FEATURES = ("margin", "edge", "ridge")


def foreground(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P(gland or border), P(border)) from C×H×W class probabilities."""
    border = probs[2] if probs.shape[0] > 2 else np.zeros(probs.shape[1:], np.float32)
    return np.clip(probs[1] + border, 0, 1), border


def gland_features(labels: np.ndarray, probs: np.ndarray, ids: np.ndarray | None = None) -> dict[int, dict[str, float]]:
    """``FEATURES`` of every gland of ``labels`` (H×W) from ``probs`` (C×H×W, same grid); only
    those of ``ids`` where given."""
    if probs.shape[1:] != labels.shape:
        raise ValueError(f"probabilities {probs.shape[1:]} and labels {labels.shape} are not on one grid")
    fg, border = foreground(probs)
    out = {}
    h, w = labels.shape
    pad = RING_PX + 1
    wanted = None if ids is None else set(np.asarray(ids).tolist())
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None or (wanted is not None and i not in wanted):
            continue
        box = (slice(max(0, sl[0].start - pad), min(h, sl[0].stop + pad)),
               slice(max(0, sl[1].start - pad), min(w, sl[1].stop + pad)))
        mask = labels[box] == i
        grown = ndi.binary_dilation(mask, iterations=RING_PX)
        shrunk = ndi.binary_erosion(mask, iterations=RING_PX)
        inner, outer = mask & ~shrunk, grown & ~mask
        f = fg[box]
        edge = (f[inner].mean() if inner.any() else 1.0) - (f[outer].mean() if outer.any() else 0.0)
        core = shrunk if shrunk.any() else mask
        out[i] = {
            "margin": float(np.abs(2 * f[grown] - 1).mean()),
            "edge": float(edge),
            "ridge": float((border[box][core] > RIDGE_P).mean()),
        }
    return out


def confidence_of(features: dict[str, float]) -> float:
    """One gland's confidence in [0, 1] from its ``FEATURES``."""
    return float(np.clip(features["margin"] * features["edge"], 0, 1))


def gland_confidence(labels: np.ndarray, probs: np.ndarray, ids: np.ndarray | None = None) -> dict[int, float]:
    """Confidence in [0, 1] of every gland of ``labels`` (id → value); only those of ``ids`` where given."""
    return {i: round(confidence_of(f), 4) for i, f in gland_features(labels, probs, ids).items()}


def merge_pieces(pieces: dict[int, list[tuple[float, int]]]) -> dict[int, float]:
    """One confidence per gland from the (confidence, area) of its pieces (a gland that crossed
    chunk borders was scored in each chunk): the area-weighted mean."""
    out = {}
    for gid, parts in pieces.items():
        area = sum(a for _, a in parts)
        out[gid] = round(sum(c * a for c, a in parts) / area, 4) if area else 0.0
    return out
