"""Gland layers for the correction/export tests, built without running a model.

``gland_layer`` makes what "Segment view" makes (same metadata, placement on the slide) from a
known labels array, so these tests check the correction and export paths on their own.
"""

from __future__ import annotations

import numpy as np

from napari_glandseg._widgets._slides import gland_meta, slide_ref
from napari_glandseg.labels import layer_meta as lm
from napari_glandseg.slide.placement import GridPlacement
from napari_glandseg.slide.view_geometry import place_on_image

#: Where the dark blobs of the generated slide are, level-0 (y, x, h, w).
BLOBS = [(400, 600, 160, 240), (900, 1500, 200, 200), (1500, 300, 120, 300)]
SYNTH_SHAPE = (2048, 2560)
SYNTH_MPP = 0.5


def blob_labels(shape: tuple[int, int], blobs: list[tuple[int, int, int, int]], step: float) -> np.ndarray:
    """Labels 1..n on a grid of ``step`` level-0 px per pixel: one rectangle per level-0 blob."""
    out = np.zeros(shape, np.int32)
    for i, (y, x, h, w) in enumerate(blobs, start=1):
        out[max(0, int(y / step)) : max(0, int((y + h) / step)), max(0, int(x / step)) : max(0, int((x + w) / step))] = i
    return out


def gland_layer(viewer, image, labels: np.ndarray, *, step: float, origin0=(0, 0), model_mpp=None, store=None):
    """Add ``labels`` (pixel i covers level-0 px [origin0 + i*step, ...)) as a "view" gland layer."""
    ref = slide_ref(image)
    t0 = (origin0[0] + (step - 1) / 2, origin0[1] + (step - 1) / 2)  # pixel centres (napari)
    scale, translate = place_on_image(image.scale, image.translate, step, t0)
    meta = gland_meta(
        ref, "view", GridPlacement(step, t0), model="dark-test", model_mpp=model_mpp or (ref.mpp or 1.0) * step,
        bbox0=(int(origin0[0]), int(origin0[1]), int(labels.shape[0] * step), int(labels.shape[1] * step)),
        store=str(store or lm.default_store_path(ref.path, ref.name)),
    )
    layer = viewer.add_labels(labels, name=f"{ref.name} glands", scale=scale, translate=translate,
                              metadata=meta.layer_metadata())
    viewer.layers.selection.active = layer
    return layer


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
