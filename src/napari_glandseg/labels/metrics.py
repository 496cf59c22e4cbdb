"""Segmentation metrics of the GlaS challenge (Sirinukunwattana et al. 2017).

Pixel Dice / IoU on the gland foreground, and the object-level F1 (50 % overlap rule), object
Dice and object Hausdorff, each object weighted by its area. Instances: 0 is background.
Overlaps come from one ``bincount`` over label pairs, so an image takes milliseconds.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

MASK_KINDS = ("auto", "binary", "instance")


def mask_reading(mask: np.ndarray) -> str:
    """How ``kind="auto"`` reads a mask: "binary" when it holds two values or fewer, else "instance"."""
    return "binary" if len(distinct(np.asarray(mask))[0]) <= 2 else "instance"


def distinct(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the sorted distinct values of ``a``, each element's index among them, in ``a``'s shape):
    ``np.unique(a, return_inverse=True)``, by counting instead of sorting where ``a`` holds
    small non-negative integers (a label image: about 7× faster, what a search over
    post-processing settings spends its time on)."""
    a = np.asarray(a)
    if a.size and a.dtype.kind in "iu":
        lo, hi = int(a.min()), int(a.max())
        if lo >= 0 and hi < max(4 * a.size, 1 << 16):
            present = np.bincount(a.ravel(), minlength=hi + 1) > 0
            index = np.cumsum(present) - 1
            return np.flatnonzero(present).astype(a.dtype), index[a]
    values, inverse = np.unique(a, return_inverse=True)
    return values, inverse.reshape(a.shape)


def to_instances(mask: np.ndarray, kind: str = "auto") -> np.ndarray:
    """Gland instances of a ground-truth mask (a colour-coded one: one id per colour).

    ``kind`` "binary": foreground (> 0) as connected components; "instance": the values are
    gland ids; "auto": binary for two values or fewer (see :func:`mask_reading`), else instance.
    """
    from napari_glandseg.labels.masks import colour_ids

    mask = colour_ids(np.asarray(mask))
    if kind not in MASK_KINDS:
        raise ValueError(f"mask kind must be one of {MASK_KINDS}, got {kind!r}")
    if kind == "auto":
        kind = mask_reading(mask)
    if kind == "binary":
        return ndi.label(mask > 0)[0].astype(np.int32)
    return mask.astype(np.int32)


def pixel_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    p, g = np.asarray(pred) > 0, np.asarray(gt) > 0
    denom = p.sum() + g.sum()
    return 1.0 if denom == 0 else float(2 * (p & g).sum() / denom)


def pixel_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    p, g = np.asarray(pred) > 0, np.asarray(gt) > 0
    union = (p | g).sum()
    return 1.0 if union == 0 else float((p & g).sum() / union)


class _Overlap:
    """Areas and the pairwise intersection matrix of two label images (compacted ids)."""

    def __init__(self, pred: np.ndarray, gt: np.ndarray):
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
        self.p_ids, p = distinct(pred)
        self.g_ids, g = distinct(gt)
        n_p, n_g = len(self.p_ids), len(self.g_ids)
        inter = np.bincount((p * n_g + g).ravel(), minlength=n_p * n_g).reshape(n_p, n_g)
        # Drop the background row/column (id 0 sorts first when present).
        p0 = int(self.p_ids[0] == 0) if n_p else 0
        g0 = int(self.g_ids[0] == 0) if n_g else 0
        self.inter = inter[p0:, g0:]
        self.p_ids, self.g_ids = self.p_ids[p0:], self.g_ids[g0:]
        self.p_area = inter[p0:].sum(1)
        self.g_area = inter[:, g0:].sum(0)
        self.pred, self.gt = pred, gt


def object_f1(pred: np.ndarray, gt: np.ndarray) -> float:
    """A predicted object is a true positive if it covers ≥ 50 % of the ground-truth object it
    overlaps most; each ground-truth object is matched at most once."""
    return _f1(_Overlap(pred, gt))


def _true_positives(o: _Overlap) -> int:
    """Ground-truth objects matched (≥ 50 % covered) by a prediction; duplicates count once."""
    n_p, n_g = len(o.p_ids), len(o.g_ids)
    if n_p == 0 or n_g == 0:
        return 0
    best = o.inter.argmax(1)
    hit = o.inter[np.arange(n_p), best] / o.g_area[best] >= 0.5
    return len(np.unique(best[hit]))


def _f1(o: _Overlap) -> float:
    # 2TP + FP + FN = n_pred + n_true (unmatched and duplicate predictions are false positives)
    n_p, n_g = len(o.p_ids), len(o.g_ids)
    if n_p == 0 and n_g == 0:
        return 1.0
    return float(2 * _true_positives(o) / (n_p + n_g))


def object_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Area-weighted Dice of each object with its best-overlapping partner, both directions."""
    return _object_dice(_Overlap(pred, gt))


def _object_dice(o: _Overlap) -> float:
    n_p, n_g = len(o.p_ids), len(o.g_ids)
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    dice = 2 * o.inter / (o.p_area[:, None] + o.g_area[None, :])
    g_best = o.inter.argmax(0)
    g_term = (o.g_area / o.g_area.sum() * dice[g_best, np.arange(n_g)] * (o.inter.max(0) > 0)).sum()
    p_best = o.inter.argmax(1)
    p_term = (o.p_area / o.p_area.sum() * dice[np.arange(n_p), p_best] * (o.inter.max(1) > 0)).sum()
    return float(0.5 * (g_term + p_term))


def object_hausdorff(pred: np.ndarray, gt: np.ndarray) -> float:
    """Area-weighted Hausdorff distance (px) between each object and its partner: the object it
    overlaps most, or, when it overlaps none, the nearest one. NaN when one side is empty."""
    return _object_hausdorff(_Overlap(pred, gt))


def _object_hausdorff(o: _Overlap) -> float:
    n_p, n_g = len(o.p_ids), len(o.g_ids)
    if n_p == 0 and n_g == 0:
        return 0.0
    if n_p == 0 or n_g == 0:
        return float("nan")
    p_pts, g_pts = _boundaries(o.pred, o.p_ids), _boundaries(o.gt, o.g_ids)
    p_cent, g_cent = _centroids(o.pred, o.p_ids), _centroids(o.gt, o.g_ids)

    def side(inter, areas, own_pts, other_pts, other_cent, own_cent):
        total = 0.0
        for i in range(len(areas)):
            if inter[i].max() > 0:
                candidates = [int(inter[i].argmax())]
            else:  # no overlap: the nearest objects by centroid, then the smallest Hausdorff
                d = np.linalg.norm(other_cent - own_cent[i], axis=1)
                candidates = list(np.argsort(d)[:3])
            h = min(_hausdorff(own_pts[i], other_pts[j]) for j in candidates)
            total += areas[i] / areas.sum() * h
        return total

    g_side = side(o.inter.T, o.g_area, g_pts, p_pts, p_cent, g_cent)
    p_side = side(o.inter, o.p_area, p_pts, g_pts, g_cent, p_cent)
    return float(0.5 * (g_side + p_side))


def _boundaries(labels: np.ndarray, ids: np.ndarray) -> list[np.ndarray]:
    """Boundary pixel coordinates of each object (the object itself when it is tiny)."""
    objs = ndi.find_objects(labels)
    out = []
    for i in ids:
        sl = objs[int(i) - 1]
        m = labels[sl] == i
        edge = m & ~ndi.binary_erosion(m)
        pts = np.argwhere(edge if edge.any() else m)
        out.append(pts + [sl[0].start, sl[1].start])
    return out


def _centroids(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.array(ndi.center_of_mass(np.ones_like(labels), labels, ids)).reshape(-1, 2)


def _hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    da, _ = cKDTree(b).query(a)
    db, _ = cKDTree(a).query(b)
    return float(max(da.max(), db.max()))


def evaluate_pair(pred: np.ndarray, gt: np.ndarray, *, gt_kind: str = "auto",
                  hausdorff: bool = True) -> dict[str, float]:
    """All metrics for one image; ``gt`` is read as ``gt_kind`` (see :func:`to_instances`: give
    "instance" for instance labels, or a mask holding a single gland id is split into its pieces).
    ``hausdorff=False`` leaves the object Hausdorff distance out (NaN): three quarters of the time,
    for a search over settings that does not choose by it."""
    pred, gt = to_instances(pred), to_instances(gt, gt_kind)
    o = _Overlap(pred, gt)
    return {
        "pixel_dice": pixel_dice(pred, gt),
        "pixel_iou": pixel_iou(pred, gt),
        "object_f1": _f1(o),
        "object_dice": _object_dice(o),
        "object_hausdorff": _object_hausdorff(o) if hausdorff else float("nan"),
        "n_pred": len(o.p_ids),
        "n_true": len(o.g_ids),
        "n_tp": _true_positives(o),
    }
