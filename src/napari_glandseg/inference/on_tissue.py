"""Drop glands that lie wholly off the tissue: on glass, dust or a textured slide background.

The slide's tissue mask (``slide.tissue.tissue_mask``: coarse, dilated by a safety margin) is
computed once per slide and µm/px and kept on the slide object. Only glands with no pixel on
the mask are dropped, so a mask that misses pale tissue cannot cost a real gland next to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_CACHE_ATTR = "_glandseg_tissue_mask"


def cached_tissue_mask(slide: Any) -> tuple[np.ndarray, float]:
    """``(mask, level-0 px per mask px)`` of ``slide``, computed once per µm/px."""
    from napari_glandseg.slide.tissue import tissue_mask

    cache = getattr(slide, _CACHE_ATTR, None)
    if cache is None or cache[0] != slide.mpp:
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
    mask, ds = cached_tissue_mask(slide)
    if not mask.any():  # nothing detected as tissue (e.g. an all-pale image): keep everything
        return labels
    h, w = labels.shape
    rows = np.clip(((origin0[0] + (np.arange(h) + 0.5) * scale) / ds).astype(np.intp), 0, mask.shape[0] - 1)
    cols = np.clip(((origin0[1] + (np.arange(w) + 0.5) * scale) / ds).astype(np.intp), 0, mask.shape[1] - 1)
    on = mask[rows[:, None], cols[None, :]]
    ids = np.unique(labels[on])
    keep = np.zeros(int(labels.max()) + 1, bool)
    keep[ids] = True
    keep[0] = True
    return np.where(keep[labels], labels, 0).astype(labels.dtype, copy=False)
