"""Finding the tissue on a low-resolution level: which parts of the slide are worth segmenting.

This module says where the tissue is (masks); ``slide.on_tissue`` keeps those masks per slide
and applies them to what a run makes (glass is background).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from napari_glandseg.slide._base import Slide

log = logging.getLogger(__name__)

#: µm/px assumed when the slide does not say (a typical 20× scan).
ASSUMED_MPP = 0.5
#: Saturation / darkness floors: an empty glass slide must give an empty mask, whatever Otsu says.
_MIN_SATURATION = 0.08
_MAX_GREY = 215.0


#: Whole-slide masks that need more stored pixels decoded than this are announced (logged),
#: and a region run on such a slide finds tissue around its region only.
COSTLY_PX = 2**28
#: Whole-slide masks that need more than this are refused (a 10⁶ × 10⁶ TIFF without lower levels).
REFUSED_PX = 2**35
#: A region's own mask looks this far (µm) around the region.
REGION_CONTEXT_UM = 1000.0


def tissue_mask(
    slide: Slide,
    *,
    mask_mpp: float = 16.0,
    margin_um: float = 128.0,
    min_area_um2: float = 5_000.0,  # ≈ a 70 µm speck: dust goes, a lone gland-sized fragment stays
) -> tuple[np.ndarray, float]:
    """Boolean tissue mask at about ``mask_mpp`` µm/px, and its downsample (level-0 px per mask px).

    H&E tissue is pink/purple, glass is white: a pixel is tissue when its saturation or its
    darkness is above an Otsu threshold (with floors so blank glass stays empty). Pen marks
    are saturated too; they are kept, which only costs some extra tiles. Small specks are
    removed and the mask is dilated by ``margin_um`` so tiles at the tissue edge are kept.
    """
    core, ds = tissue_core(slide, mask_mpp=mask_mpp, min_area_um2=min_area_um2)
    return dilate_mask(core, ds * (slide.mpp or ASSUMED_MPP), margin_um), ds


def tissue_core(slide: Slide, *, mask_mpp: float = 16.0, min_area_um2: float = 5_000.0) -> tuple[np.ndarray, float]:
    """``tissue_mask`` before its dilation: the tissue itself, holes filled (one mask serves
    several margins: ``dilate_mask``)."""
    from PIL import Image

    mpp = slide.mpp or ASSUMED_MPP
    ds = max(mask_mpp / mpp, 1.0)
    h0, w0 = slide.shape
    out_h, out_w = max(1, math.ceil(h0 / ds)), max(1, math.ceil(w0 / ds))
    level = slide.best_level_for_downsample(ds)
    rgb = np.asarray(slide.levels[level].compute(scheduler="threads"))
    if rgb.shape[:2] != (out_h, out_w):
        rgb = np.asarray(Image.fromarray(rgb).resize((out_w, out_h), Image.Resampling.BILINEAR))
    return _classify(rgb, ds * mpp, min_area_um2, otsu=True), float(ds)


def dilate_mask(mask: np.ndarray, px_um: float, margin_um: float) -> np.ndarray:
    """``mask`` (``px_um`` µm per pixel) grown by a disk of ``margin_um``."""
    from scipy import ndimage as ndi
    from skimage.morphology import disk

    radius = int(math.ceil(margin_um / px_um))
    if radius > 0 and mask.any():
        return ndi.binary_dilation(mask, structure=disk(radius))
    return mask


def region_tissue_mask(
    slide: Slide,
    bbox0: tuple[float, float, float, float],
    *,
    mask_mpp: float = 16.0,
    margin_um: float = 128.0,
    min_area_um2: float = 5_000.0,
    context_um: float = REGION_CONTEXT_UM,
) -> tuple[np.ndarray, float, tuple[float, float]]:
    """``(mask, downsample, origin0)``: tissue around a level-0 box only, for slides whose
    whole-slide mask is costly. Mask pixel (i, j) covers level-0 ``origin0 + (i, j) * ds``.

    Fixed thresholds (the floors of :func:`tissue_mask`) replace Otsu, which would split a
    crop that is all tissue: the local mask keeps at least what the whole-slide one would.
    """
    from PIL import Image

    mpp = slide.mpp or ASSUMED_MPP
    ds = max(mask_mpp / mpp, 1.0)
    h0, w0 = slide.shape
    grow = context_um / mpp
    y, x, h, w = (float(v) for v in bbox0)
    gy0, gx0 = max(0, math.floor((y - grow) / ds)), max(0, math.floor((x - grow) / ds))
    gy1, gx1 = min(math.ceil(h0 / ds), math.ceil((y + h + grow) / ds)), min(math.ceil(w0 / ds), math.ceil((x + w + grow) / ds))
    out_h, out_w = max(1, gy1 - gy0), max(1, gx1 - gx0)
    level = slide.best_level_for_downsample(ds)
    lds = slide.downsamples[level]
    ly0, lx0 = math.floor(gy0 * ds / lds), math.floor(gx0 * ds / lds)
    ly1, lx1 = max(ly0 + 1, math.ceil(gy1 * ds / lds)), max(lx0 + 1, math.ceil(gx1 * ds / lds))
    rgb = slide.read_region(level, ly0, lx0, ly1 - ly0, lx1 - lx0)
    if rgb.shape[:2] != (out_h, out_w):
        rgb = np.asarray(Image.fromarray(rgb).resize((out_w, out_h), Image.Resampling.BILINEAR))
    mask = dilate_mask(_classify(rgb, ds * mpp, min_area_um2, otsu=False), ds * mpp, margin_um)
    return mask, float(ds), (gy0 * ds, gx0 * ds)


def whole_slide_cost_px(slide: Slide, mask_mpp: float = 16.0) -> int:
    """Stored pixels decoded to make the whole-slide mask: the mask's level if the file stores
    it, else all of the lowest stored level that computed levels are made from."""
    ds = max(mask_mpp / (slide.mpp or ASSUMED_MPP), 1.0)
    level = slide.best_level_for_downsample(ds)
    source = level if level < slide.native_levels else slide.native_levels - 1
    h, w = slide.level_shapes[source]
    return int(h) * int(w)


def check_whole_slide_cost(slide: Slide, mask_mpp: float = 16.0, *, warn: bool = True) -> int:
    """Refuse (``SlideError``) a whole-slide tissue mask above ``REFUSED_PX`` decoded pixels;
    above ``COSTLY_PX`` log what it will cost. Returns the cost in pixels."""
    from napari_glandseg.errors import SlideError

    cost = whole_slide_cost_px(slide, mask_mpp)
    what = (f"finding tissue on the whole slide decodes {cost:.3g} px ({3 * cost / 1e9:.3g} GB of RGB): "
            f"the file stores {'no lower levels' if slide.native_levels == 1 else f'no level near {mask_mpp:g} µm/px'}")
    if cost > REFUSED_PX:
        raise SlideError(slide.path, f"{what}. Refused: segment a region of it, or convert it to a pyramidal "
                                     "TIFF (e.g. vips tiffsave --tile --pyramid) first")
    if warn and cost > COSTLY_PX:
        log.warning("%s: %s; this takes a while", slide.path, what)
    return cost


def saturation_and_grey(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel of an H×W×3 image: saturation (0–1) and grey level (0–255), what tissue is told by."""
    f = rgb.astype(np.float32)
    cmax, cmin = f.max(axis=2), f.min(axis=2)
    return (cmax - cmin) / np.maximum(cmax, 1.0), f @ np.array([0.299, 0.587, 0.114], np.float32)


def pale_pixels(rgb: np.ndarray) -> np.ndarray:
    """Pixels with neither the saturation nor the darkness of tissue (the fixed floors of the
    tissue test): glass, and the lumens and clefts inside tissue that look like it."""
    saturation, grey = saturation_and_grey(rgb)
    return (saturation <= _MIN_SATURATION) & (grey >= _MAX_GREY)


def _classify(rgb: np.ndarray, px_um: float, min_area_um2: float, *, otsu: bool) -> np.ndarray:
    """Tissue pixels of a low-resolution RGB image (``px_um`` µm per pixel), cleaned, holes filled."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_objects

    saturation, grey = saturation_and_grey(rgb)
    sat_t = max(_otsu(saturation, threshold_otsu), _MIN_SATURATION) if otsu else _MIN_SATURATION
    grey_t = min(_otsu(grey, threshold_otsu, default=0.0), _MAX_GREY) if otsu else _MAX_GREY
    mask = (saturation > sat_t) | (grey < grey_t)
    del saturation, grey
    min_px = max(1, int(min_area_um2 / (px_um * px_um)))
    mask = remove_small_objects(mask, max_size=min_px) if _has_max_size() else remove_small_objects(
        mask, min_size=min_px
    )
    return ndi.binary_fill_holes(mask).astype(bool)


def _otsu(values: np.ndarray, fn, default: float = 1.0) -> float:
    """Otsu threshold, or ``default`` when the image is flat (Otsu is undefined)."""
    if float(values.max()) - float(values.min()) < 1e-6:
        return default
    return float(fn(values))


def _has_max_size() -> bool:
    """scikit-image ≥ 0.26 renamed min_size (objects < size removed) to max_size (≤ size)."""
    import inspect

    from skimage.morphology import remove_small_objects

    return "max_size" in inspect.signature(remove_small_objects).parameters
