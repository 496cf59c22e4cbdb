"""Glass is background: glands that lie wholly off the tissue are dropped, and probabilities
beyond the tissue's edge are set to background before post-processing.

The model takes white glass for gland lumen (it was trained on tissue only): a blank tile comes
out mostly "gland", so tiles at the tissue's edge grew false glands into the glass. The slide's
tissue (``slide.find_tissue.tissue_core`` at 8 µm/px) is found once per slide and µm/px and kept on
the slide object, with one dilation per use (``dilate_mask``): ``RUN`` decides which tiles run
(and, in Segment view, which glands have a pixel on tissue); beyond ``GLASS`` every pixel is
background. When no tissue is detected at all (an all-pale image) nothing
changes. A whole-slide run writes its glass mask into the run folder and its workers read it
(``save_mask`` / ``seed_mask``), so every chunk, local or on a cluster, uses the same mask. On
a slide whose whole-slide mask is costly (no stored lower levels), a Segment view or a click
looks at the tissue around itself only (``slide.find_tissue.region_tissue_mask``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

_CACHE_ATTR = "_glandseg_tissue_mask"
#: Beyond the tissue by more than this, probabilities are background: a fine mask (8 µm/px)
#: dilated by one of its pixels. Two pixels (16 µm) kept a rim of glass "gland" along every cut
#: edge (the demo sample: 99 glands, edge glands merged into frames, against 112) and saved
#: hardly any tissue (pale strands at a cut lumen: 128 of 34,218 tissue pixels lost, against 158).
GLASS_MARGIN_UM = 8.0
GLASS_MASK_MPP = 8.0
#: How far pale pixels joined to that glass count as glass too (``glass_beside_tissue``): the
#: margin and one mask pixel either side of it. Less than a chunk's margin (``overlap_px``).
GLASS_REACH_UM = GLASS_MARGIN_UM + 2 * GLASS_MASK_MPP
#: Tiles whose core meets the same mask dilated by this run. A skipped tile's reach (half its
#: overlap, 40 µm at 1.24 µm/px) then lies wholly beyond the glass margin, where everything is
#: background anyway: skipping changes no label.
RUN_MARGIN_UM = 64.0
RUN_MASK_MPP = GLASS_MASK_MPP
#: (mask µm/px, margin µm) of each use
RUN, GLASS = (RUN_MASK_MPP, RUN_MARGIN_UM), (GLASS_MASK_MPP, GLASS_MARGIN_UM)


def cached_tissue_mask(slide: Any, kind: tuple[float, float] = RUN) -> tuple[np.ndarray, float]:
    """``(mask, level-0 px per mask px)`` of ``slide`` at ``kind = (mask µm/px, margin µm)``
    (``RUN`` or ``GLASS``), computed once per slide µm/px and kind.

    Raises ``SlideError`` when it would decode an absurd number of pixels (see
    ``slide.find_tissue.check_whole_slide_cost``).
    """
    from napari_glandseg.slide.find_tissue import ASSUMED_MPP, check_whole_slide_cost, dilate_mask, tissue_core

    masks = _masks(slide)
    if kind not in masks:
        mask_mpp, margin_um = kind
        core_key = (mask_mpp, None)  # the undilated mask, shared by the margins at this µm/px
        if core_key not in masks:
            check_whole_slide_cost(slide, mask_mpp, warn=False)
            masks[core_key] = tissue_core(slide, mask_mpp=mask_mpp)
        core, ds = masks[core_key]
        masks[kind] = (dilate_mask(core, ds * (slide.mpp or ASSUMED_MPP), margin_um), ds)
    return masks[kind]


def _masks(slide: Any) -> dict:
    """The slide's mask cache (created empty; a new one when its µm/px changed)."""
    cache = getattr(slide, _CACHE_ATTR, None)
    if cache is None or cache[0] != slide.mpp:
        cache = (slide.mpp, {})
        try:
            setattr(slide, _CACHE_ATTR, cache)
        except AttributeError:  # a slide type without instance attributes: no cache
            pass
    return cache[1]


def save_mask(path: str | os.PathLike, slide: Any, kind: tuple[float, float]) -> None:
    """Write the slide's ``kind`` mask (made if needed) to ``path`` (.npz, bits packed), atomically."""
    from napari_glandseg._atomic import atomic_path

    mask, ds = cached_tissue_mask(slide, kind)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, bits=np.packbits(mask), shape=np.array(mask.shape), ds=np.array(ds),
                 mpp=np.array(slide.mpp, dtype=float), kind=np.array(kind, dtype=float))


def seed_mask(slide: Any, path: str | os.PathLike, kind: tuple[float, float]) -> None:
    """Put the ``kind`` mask ``save_mask`` wrote into ``slide``'s cache, unless the cache holds it
    already (then the file is not read: a worker reads it once, not once per chunk)."""
    masks = _masks(slide)
    if kind in masks:
        return
    with np.load(path) as f:
        if tuple(float(v) for v in f["kind"]) != tuple(kind) or float(f["mpp"]) != slide.mpp:
            return
        shape = tuple(int(v) for v in f["shape"])
        masks[kind] = (np.unpackbits(f["bits"], count=shape[0] * shape[1]).reshape(shape).astype(bool), float(f["ds"]))


def on_tissue(shape: tuple[int, int], slide: Any, origin0: tuple[float, float], scale: float,
              kind: tuple[float, float]) -> np.ndarray | None:
    """Which pixels of an H×W grid (pixel i covers level-0 ``origin0 + [i*scale, (i+1)*scale)``)
    have their centre on the tissue mask ``kind`` (``RUN`` or ``GLASS``); None when the mask
    holds no tissue at all (e.g. an all-pale image: then nothing is taken for glass)."""
    h, w = shape
    mask, ds, (my, mx) = _mask_near(slide, (origin0[0], origin0[1], h * scale, w * scale), kind)
    if not mask.any():
        return None
    rows = np.clip(((origin0[0] - my + (np.arange(h) + 0.5) * scale) / ds).astype(np.intp), 0, mask.shape[0] - 1)
    cols = np.clip(((origin0[1] - mx + (np.arange(w) + 0.5) * scale) / ds).astype(np.intp), 0, mask.shape[1] - 1)
    return mask[rows[:, None], cols[None, :]]


def set_background(probs: np.ndarray, where: np.ndarray) -> None:
    """Certain background at the pixels ``where`` of C×H×W ``probs``, in place."""
    if where.any():  # copyto with where: no gather of the C×N selected values
        for c in range(probs.shape[0]):
            np.copyto(probs[c], 1.0 if c == 0 else 0.0, where=where)


def glass_is_background(probs: np.ndarray, slide: Any, origin0: tuple[float, float], scale: float,
                        rgb: Callable[[], np.ndarray] | np.ndarray | None = None) -> None:
    """Set the pixels of ``probs`` (C×H×W, placed as in ``on_tissue``) farther than
    ``GLASS_MARGIN_UM`` from the tissue to certain background, in place; with ``rgb`` (the
    image on the same grid, or what reads it: read only where the box has glass) the glass
    within that margin too (``glass_beside_tissue``)."""
    on = on_tissue(probs.shape[1:], slide, origin0, scale, GLASS)
    if on is None:
        return
    glass = ~on
    if rgb is not None and glass.any() and on.any():
        from napari_glandseg.slide.find_tissue import ASSUMED_MPP

        image = rgb() if callable(rgb) else rgb
        reach = math.ceil(GLASS_REACH_UM / (scale * (slide.mpp or ASSUMED_MPP)))
        glass |= glass_beside_tissue(image, glass, reach)
    set_background(probs, glass)


def glass_beside_tissue(rgb: np.ndarray, glass: np.ndarray, reach: int) -> np.ndarray:
    """The pale pixels of ``rgb`` (``find_tissue.pale_pixels``) joined through pale pixels to
    ``glass`` (the glass beyond the coarse mask's margin) within ``reach`` pixels: the glass that
    margin keeps beside a cut edge, at the image's own resolution. The model calls it gland
    (white beside epithelium looks like a lumen), and the glands along a cut edge were joined
    through it. A lumen that tissue encloses is never reached; one cut open at the edge loses
    what lies within ``reach`` of the glass. Bounded, the answer at a pixel depends on the image
    within ``reach`` of it only: chunks with that much margin agree with one-piece runs."""
    from scipy import ndimage as ndi

    from napari_glandseg.slide.find_tissue import pale_pixels

    if rgb.shape[:2] != glass.shape:
        raise ValueError(f"image {rgb.shape[:2]} and glass mask {glass.shape} differ in size")
    return ndi.binary_dilation(glass, iterations=reach, mask=pale_pixels(rgb)) & ~glass


def drop_off_tissue(labels: np.ndarray, slide: Any, origin0: tuple[float, float], scale: float) -> np.ndarray:
    """``labels`` (placed as in ``on_tissue``) without the glands that have no pixel centre on
    the slide's ``RUN`` mask (Segment view: after ``glass_is_background`` a safety net only)."""
    if not labels.any():
        return labels
    on = on_tissue(labels.shape, slide, origin0, scale, RUN)
    if on is None:  # nothing detected as tissue: keep everything
        return labels
    ids = np.unique(labels[on])
    keep = np.zeros(int(labels.max()) + 1, bool)
    keep[ids] = True
    keep[0] = True
    return np.where(keep[labels], labels, 0).astype(labels.dtype, copy=False)


def _mask_near(slide: Any, bbox0: tuple[float, float, float, float],
               kind: tuple[float, float]) -> tuple[np.ndarray, float, tuple[float, float]]:
    """The whole-slide mask when it is cheap or already made (or seeded by a run), else a mask
    around ``bbox0``."""
    from napari_glandseg.slide.find_tissue import COSTLY_PX, region_tissue_mask, whole_slide_cost_px

    masks = _masks(slide)
    if kind in masks or (kind[0], None) in masks or whole_slide_cost_px(slide, kind[0]) <= COSTLY_PX:
        return (*cached_tissue_mask(slide, kind), (0.0, 0.0))
    return region_tissue_mask(slide, bbox0, mask_mpp=kind[0], margin_um=kind[1])
