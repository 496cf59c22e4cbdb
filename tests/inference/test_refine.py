"""Segment view's outlines at the screen's resolution: probabilities upsampled, not labels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_glandseg.inference.refine import refine_to_grid, refined_scale
from napari_glandseg.slide.resample import resize_labels


def _disk(n: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] + 0.5
    return np.hypot(yy - cy, xx - cx)


def test_outline_follows_the_probability_not_the_staircase():
    # a disk of radius 10.3 model px; the model grid says "gland" where the pixel centre is inside
    d = _disk(32, 16, 16, 10.3)
    labels = (d < 10.3).astype(np.int32)
    foreground = np.clip(10.3 + 0.5 - d, 0, 1).astype(np.float32)  # a soft edge crossing 0.5 at r = 10.3
    fine = refine_to_grid(labels, foreground, (128, 128), threshold=0.5)
    truth = _disk(128, 64, 64, 10.3 * 4) < 10.3 * 4
    staircase = resize_labels(labels, 128, 128) > 0
    err_fine, err_stairs = (fine > 0) ^ truth, staircase ^ truth
    assert err_fine.sum() < 0.6 * err_stairs.sum(), (err_fine.sum(), err_stairs.sum())


def test_instances_and_filled_lumens_stay_as_the_model_grid_found_them():
    labels = np.zeros((40, 40), np.int32)
    labels[5:20, 5:20] = 1
    labels[22:35, 5:35] = 2  # two glands, one model pixel of border between them
    foreground = (labels > 0).astype(np.float32)
    foreground[21, 5:35] = 0.9  # the border class: gland tissue, but it separates the two
    foreground[10:14, 10:14] = 0.05  # a lumen the post-processing filled
    fine = refine_to_grid(labels, foreground, (160, 160), threshold=0.5)
    assert set(np.unique(fine)) == {0, 1, 2}
    assert (fine[40:56, 40:56] == 1).all(), "deep pixels (a filled lumen) keep their label"
    assert (fine[84:88, 20:140] == 0).any(axis=0).all(), "a gap still separates the two glands"


@pytest.mark.parametrize(("model_scale", "display", "expected"), [
    (2.48, 1.0, 1.0), (2.48, 0.25, 0.62), (2.48, 4.0, None), (2.48, None, None), (2.48, 2.48, None)])
def test_refined_scale_is_bounded(model_scale, display, expected):
    s = refined_scale(model_scale, display, (1000.0, 1000.0))
    assert s == (pytest.approx(expected) if expected else None)
    # the output is capped at 16 Mpx: a big box gets a coarser refined grid, or none
    assert refined_scale(2.48, 0.25, (8_000.0, 8_000.0)) == pytest.approx(2.0)
    assert refined_scale(2.48, 0.25, (40_000.0, 40_000.0)) is None


def test_segment_view_on_a_real_slide_comes_at_the_display_grid(cmu_svs):
    from napari_glandseg.inference import segment_region
    from napari_glandseg.model import load_model
    from napari_glandseg.slide import open_slide

    slide, model = open_slide(cmu_svs), load_model(device="cpu")
    box = (400, 600, 900, 900)  # level-0 px at 0.499 µm/px: ≈ 362² model px
    coarse = segment_region(slide, box, model=model)
    fine = segment_region(slide, box, model=model, display_downsample=1.0)
    assert coarse.scale == pytest.approx(model.card.mpp / slide.mpp)
    assert fine.scale == pytest.approx(1.0), "the screen's level 0, within 4× the model's grid"
    assert coarse.labels.max() > 0, "the region has glands"
    assert fine.mpp == pytest.approx(slide.mpp * fine.scale)
    assert fine.labels.shape == (round(900 / fine.scale), round(900 / fine.scale))
    up = resize_labels(coarse.labels, *fine.labels.shape)
    assert set(np.unique(fine.labels)) == set(np.unique(coarse.labels)), "the same glands"
    inter, union = ((up > 0) & (fine.labels > 0)).sum(), ((up > 0) | (fine.labels > 0)).sum()
    assert inter / union > 0.9, "outlines move by less than a model pixel"
