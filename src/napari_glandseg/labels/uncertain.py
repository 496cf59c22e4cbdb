"""Least certain first: which gland to review next, from each gland's confidence.

A gland layer's confidences come from its ``features`` table (Segment view: the ``confidence``
column, ``index`` = label) or, for a whole-slide store, from the file kept beside its labels
(``LabelStore.read_confidence``: confidence and box per gland, so the next gland is found
without reading the slide's labels). Reviewed glands are skipped; the rest come lowest
confidence first. GUI-free: the Correct widget moves the camera and keeps the reviewed set.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

COLUMN = "confidence"


@dataclass(frozen=True)
class Candidate:
    """A gland to review: its label, confidence and box (y0, x0, y1, x1) in the layer's pixels."""

    label: int
    confidence: float
    box: tuple[int, int, int, int]

    @property
    def centre(self) -> tuple[float, float]:
        y0, x0, y1, x1 = self.box
        return ((y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2)


def confidence_by_label(features: Any) -> dict[int, float]:
    """{label: confidence} from a napari features table (a DataFrame or dict of columns)."""
    if features is None or COLUMN not in features or "index" not in features:
        return {}
    pairs = zip(np.asarray(features["index"]).tolist(), np.asarray(features[COLUMN], float).tolist(), strict=True)
    return {int(i): float(c) for i, c in pairs if math.isfinite(c)}


def with_confidence(rows: Iterable[dict], confidence: Mapping[int, float]) -> list[dict]:
    """Measurement rows with a ``confidence`` column where the gland has one."""
    return [{**r, COLUMN: confidence[int(r["label"])]} if int(r["label"]) in confidence else dict(r) for r in rows]


def layer_candidates(labels: np.ndarray, confidence: Mapping[int, float]) -> list[Candidate]:
    """The glands of an in-memory label image that have a confidence."""
    out = []
    for i, sl in enumerate(ndi.find_objects(np.asarray(labels)), start=1):
        if sl is not None and i in confidence:
            out.append(Candidate(i, float(confidence[i]), (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)))
    return out


def store_candidates(kept: Mapping[int, list[float]], region: tuple[int, int, int, int] | None = None) -> list[Candidate]:
    """The glands a store keeps a confidence for (``region`` (y, x, h, w): only those meeting it,
    their boxes shifted to the region's pixels)."""
    y, x, h, w = region if region is not None else (0, 0, 0, 0)
    out = []
    for label, (conf, y0, x0, y1, x1) in kept.items():
        if region is not None and (y1 <= y or x1 <= x or y0 >= y + h or x0 >= x + w):
            continue
        out.append(Candidate(int(label), float(conf), (int(y0) - y, int(x0) - x, int(y1) - y, int(x1) - x)))
    return out


def next_uncertain(candidates: Iterable[Candidate], reviewed: Iterable[int]) -> Candidate | None:
    """The least confident gland not reviewed yet (ties: the lower label), or None."""
    done = set(reviewed)
    left = [c for c in candidates if c.label not in done]
    return min(left, key=lambda c: (c.confidence, c.label)) if left else None
