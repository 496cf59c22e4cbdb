"""Gland outlines at a finer grid than the model's: the probabilities are upsampled, not the labels.

Instances are found at the model's µm/px (1.24); shown on a slide level of 0.25–0.5 µm/px their
outlines would be staircases of 2.5–5 screen pixels. ``refine_to_grid`` resamples the foreground
probability bilinearly to the finer grid and moves each outline by at most half a model pixel to
where it crosses the threshold; the instances (which gland is which, splits, filled lumens) stay
those of the model grid.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from napari_glandseg.slide.resample import resize_labels

MAX_UPSAMPLE = 4.0  # finer than a quarter model pixel shows nothing more
MAX_OUTPUT_PX = 16_000_000  # int32 labels of a refined view stay under 64 MB


def resize_probability(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an H×W float map by pixel centres."""
    img = Image.fromarray(np.ascontiguousarray(prob, dtype=np.float32))
    return np.asarray(img.resize((width, height), Image.BILINEAR))


def refine_to_grid(labels: np.ndarray, foreground: np.ndarray, shape: tuple[int, int], *, threshold: float) -> np.ndarray:
    """``labels`` (model grid) on the finer grid ``shape``, their outlines following ``foreground``
    (P(gland) + P(border) on the model grid) upsampled, within half a model pixel of where they were."""
    h, w = shape
    factor = min(h / labels.shape[0], w / labels.shape[1])
    fine = resize_labels(labels, h, w).astype(np.int32)
    fg = resize_probability(foreground, h, w) > threshold
    reach = max(1.0, factor / 2)  # half a model pixel, in fine pixels
    inside = fine > 0
    if not inside.any():
        return fine
    # Outlines move out: background pixels near a gland that the finer probability calls gland.
    dist_out, (iy, ix) = ndi.distance_transform_edt(~inside, return_indices=True)
    grow = fg & ~inside & (dist_out <= reach)
    # ... and in: gland pixels near its edge that it does not (deep pixels keep filled lumens).
    dist_in = ndi.distance_transform_edt(inside)
    shrink = inside & ~fg & (dist_in <= reach)
    fine[grow] = fine[iy[grow], ix[grow]]
    fine[shrink] = 0
    return fine


def refined_scale(model_scale: float, display_downsample: float | None, box_hw: tuple[float, float]) -> float | None:
    """The level-0 px per label px of the refined grid, or None when it would not be finer."""
    if display_downsample is None or display_downsample >= model_scale * 0.99:
        return None
    s = max(display_downsample, model_scale / MAX_UPSAMPLE, float(np.sqrt(box_hw[0] * box_hw[1] / MAX_OUTPUT_PX)))
    return s if s < model_scale * 0.99 else None
