"""Tissue detection on a low-resolution level: which parts of the slide are worth segmenting."""

from __future__ import annotations

import math

import numpy as np

from napari_glandseg.slide._base import Slide

#: µm/px assumed when the slide does not say (a typical 20× scan).
ASSUMED_MPP = 0.5
#: Saturation / darkness floors: an empty glass slide must give an empty mask, whatever Otsu says.
_MIN_SATURATION = 0.08
_MAX_GREY = 215.0


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
    from PIL import Image
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu
    from skimage.morphology import disk, remove_small_objects

    mpp = slide.mpp or ASSUMED_MPP
    ds = max(mask_mpp / mpp, 1.0)
    h0, w0 = slide.shape
    out_h, out_w = max(1, math.ceil(h0 / ds)), max(1, math.ceil(w0 / ds))
    level = slide.best_level_for_downsample(ds)
    rgb = np.asarray(slide.levels[level].compute(scheduler="threads"))
    if rgb.shape[:2] != (out_h, out_w):
        rgb = np.asarray(Image.fromarray(rgb).resize((out_w, out_h), Image.Resampling.BILINEAR))
    f = rgb.astype(np.float32)
    cmax, cmin = f.max(axis=2), f.min(axis=2)
    saturation = (cmax - cmin) / np.maximum(cmax, 1.0)
    grey = f @ np.array([0.299, 0.587, 0.114], np.float32)
    sat_t = max(_otsu(saturation, threshold_otsu), _MIN_SATURATION)
    grey_t = min(_otsu(grey, threshold_otsu, default=0.0), _MAX_GREY)
    mask = (saturation > sat_t) | (grey < grey_t)
    mask_px_um2 = (ds * mpp) ** 2
    min_px = max(1, int(min_area_um2 / mask_px_um2))
    mask = remove_small_objects(mask, max_size=min_px) if _has_max_size() else remove_small_objects(
        mask, min_size=min_px
    )
    mask = ndi.binary_fill_holes(mask)
    radius = int(math.ceil(margin_um / (ds * mpp)))
    if radius > 0 and mask.any():
        mask = ndi.binary_dilation(mask, structure=disk(radius))
    return mask.astype(bool), float(ds)


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
