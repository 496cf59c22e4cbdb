"""Glass as background in training: a real slide's glass, beyond a margin around its tissue,
labelled background, its tissue ignored (nobody annotated its glands).

The gland models took blank glass for lumen (white without structure was never background in
training); crops of a slide's tissue edge teach them otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_glandseg.train.data import Sample

#: glass this far (µm) from the tissue counts; nearer is ignored (the mask's own placement error)
GLASS_MARGIN_UM = 16.0
#: a slide read whole at the model's µm/px may hold at most this many pixels
MAX_PX = 4096 * 4096


def glass_sample(path: Path, *, model_mpp: float, mpp: float | None = None, weight: float = 1.0) -> Sample:
    """The whole slide at ``model_mpp`` as a sample: background on glass, ignored on tissue."""
    from PIL import Image

    from napari_glandseg.slide import open_slide
    from napari_glandseg.slide.find_tissue import dilate_mask, tissue_core

    slide = open_slide(path, mpp=mpp) if mpp else open_slide(path)
    if slide.mpp is None:
        raise ValueError(f"{path}: the slide does not say its µm/px; give mpp in the data entry")
    h0, w0 = slide.shape
    scale = slide.mpp / model_mpp
    if h0 * w0 * scale * scale > MAX_PX:
        raise ValueError(f"{path}: {h0}×{w0} px at {slide.mpp} µm/px is too large to read whole at {model_mpp} µm/px")
    image = slide.read_at_mpp((0, 0, h0, w0), model_mpp)
    core, ds = tissue_core(slide, mask_mpp=max(model_mpp, 4.0))
    tissue = dilate_mask(core, ds * slide.mpp, GLASS_MARGIN_UM)
    tissue = np.asarray(Image.fromarray(tissue.astype(np.uint8)).resize(image.shape[1::-1], Image.NEAREST)) > 0
    return Sample(Path(path).stem, image, np.zeros(image.shape[:2], np.int32), ~tissue, -1, weight)
