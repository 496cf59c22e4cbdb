"""Drop glands that lie wholly off the tissue: on glass, dust or a textured slide background.

The slide's tissue mask (``slide.tissue.tissue_mask``: coarse, dilated by a safety margin) is
computed once per slide and µm/px and kept on the slide object. Only glands with no pixel on
the mask are dropped, so a mask that misses pale tissue cannot cost a real gland next to it.
On a slide whose whole-slide mask is costly (no stored lower levels), a region looks at the
tissue around itself only (``slide.tissue.region_tissue_mask``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_CACHE_ATTR = "_glandseg_tissue_mask"


def cached_tissue_mask(slide: Any) -> tuple[np.ndarray, float]:
    """``(mask, level-0 px per mask px)`` of ``slide``, computed once per µm/px.

    Raises ``SlideError`` when it would decode an absurd number of pixels (see
    ``slide.tissue.check_whole_slide_cost``).
    """
    from napari_glandseg.slide.tissue import check_whole_slide_cost, tissue_mask

    cache = getattr(slide, _CACHE_ATTR, None)
    if cache is None or cache[0] != slide.mpp:
        check_whole_slide_cost(slide, warn=False)
        cache = (slide.mpp, tissue_mask(slide))
        try:
            setattr(slide, _CACHE_ATTR, cache)
        except AttributeError:  # a slide type without instance attributes: no cache
            pass
    return cache[1]


def drop_off_tissue(labels: np.ndarray, slide: Any, origin0: tuple[float, float], scale: float) -> np.ndarray:
    """``labels`` (pixel i covers level-0 ``origin0 + [i*scale, (i+1)*scale)``) without the glands
    that have no pixel centre on the slide's tissue mask."""
    if not labels.any():
        return labels
    h, w = labels.shape
    mask, ds, (my, mx) = _mask_near(slide, (origin0[0], origin0[1], h * scale, w * scale))
    if not mask.any():  # nothing detected as tissue (e.g. an all-pale image): keep everything
        return labels
    rows = np.clip(((origin0[0] - my + (np.arange(h) + 0.5) * scale) / ds).astype(np.intp), 0, mask.shape[0] - 1)
    cols = np.clip(((origin0[1] - mx + (np.arange(w) + 0.5) * scale) / ds).astype(np.intp), 0, mask.shape[1] - 1)
    on = mask[rows[:, None], cols[None, :]]
    ids = np.unique(labels[on])
    keep = np.zeros(int(labels.max()) + 1, bool)
    keep[ids] = True
    keep[0] = True
    return np.where(keep[labels], labels, 0).astype(labels.dtype, copy=False)


def _mask_near(slide: Any, bbox0: tuple[float, float, float, float]) -> tuple[np.ndarray, float, tuple[float, float]]:
    """The whole-slide mask when it is cheap or already made, else a mask around ``bbox0``."""
    from napari_glandseg.slide.tissue import COSTLY_PX, region_tissue_mask, whole_slide_cost_px

    cache = getattr(slide, _CACHE_ATTR, None)
    if (cache is not None and cache[0] == slide.mpp) or whole_slide_cost_px(slide) <= COSTLY_PX:
        return (*cached_tissue_mask(slide), (0.0, 0.0))
    return region_tissue_mask(slide, bbox0)
