"""Guidance maps for the guided gland model: what the user's clicks and squiggles look like to it.

Channel 0 marks the gland to outline (inclusion: a click, or a squiggle — consecutive points
joined by lines), channel 1 marks "not this" (exclusion clicks). Models with a third guidance
channel also see the previous result for this gland (all zero on a first click): a corrective
click then refines that mask instead of starting over. Each mark is a disk of ``radius_px`` at
the model's µm/px; training and inference draw them with this one function.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line

GUIDE_RADIUS_PX = 4

Point = tuple[float, float]


def _as_points(points: Sequence[Point] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(points, dtype=float).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: points must be finite (y, x) pairs, got {list(points)}")
    return arr


def draw_marks(shape: tuple[int, int], points: Sequence[Point], *, joined: bool, radius_px: float = GUIDE_RADIUS_PX) -> np.ndarray:
    """A bool map with a disk around each point (``joined``: and along the lines between them)."""
    h, w = shape
    seeds = np.zeros(shape, bool)
    pts = np.round(_as_points(points, "guidance")).astype(int)
    if len(pts) == 0:
        return seeds
    segments = zip(pts[:-1], pts[1:], strict=True) if joined and len(pts) > 1 else ((p, p) for p in pts)
    for (y0, x0), (y1, x1) in segments:
        rr, cc = line(y0, x0, y1, x1)
        keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        seeds[rr[keep], cc[keep]] = True
    if not seeds.any():
        return seeds
    # Only the box around the marks needs a distance transform.
    ys, xs = np.nonzero(seeds)
    r = int(np.ceil(radius_px)) + 1
    y0, y1, x0, x1 = max(0, ys.min() - r), min(h, ys.max() + r + 1), max(0, xs.min() - r), min(w, xs.max() + r + 1)
    out = np.zeros(shape, bool)
    out[y0:y1, x0:x1] = ndi.distance_transform_edt(~seeds[y0:y1, x0:x1]) <= radius_px
    return out


def guidance_maps(shape: tuple[int, int], include: Sequence[Point], exclude: Sequence[Point] = (),
                  radius_px: float = GUIDE_RADIUS_PX, *, clicks: Sequence[Point] = (),
                  previous: np.ndarray | None = None, channels: int = 2) -> np.ndarray:
    """``channels``×H×W float32: inclusion (squiggle through ``include``, and a disk at each of
    ``clicks``: corrective "this too" clicks, not joined), exclusion (disks at ``exclude``) and,
    with 3 channels, the previous mask of this gland (``previous``, H×W)."""
    if channels not in (2, 3):
        raise ValueError(f"a guided model takes 2 or 3 guidance channels, not {channels}")
    maps = np.zeros((channels, *shape), np.float32)
    maps[0] = draw_marks(shape, include, joined=True, radius_px=radius_px)
    if len(clicks):
        maps[0] = np.maximum(maps[0], draw_marks(shape, clicks, joined=False, radius_px=radius_px))
    maps[1] = draw_marks(shape, exclude, joined=False, radius_px=radius_px)
    if previous is not None and channels == 3:
        if previous.shape != tuple(shape):
            raise ValueError(f"previous mask: expected shape {tuple(shape)}, got {previous.shape}")
        maps[2] = previous > 0
    return maps
