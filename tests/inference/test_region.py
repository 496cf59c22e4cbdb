"""segment_image and segment_region: resampling, placement on the slide, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from _inference_models import disc_image, write_disc_slide
from scipy import ndimage as ndi

from napari_glandseg.errors import GlandsegError
from napari_glandseg.inference import segment_image, segment_region
from napari_glandseg.slide import open_slide

DISCS = [(100, 120, 40), (300, 420, 60), (500, 150, 30)]


@pytest.fixture(scope="module")
def disc_slide(tmp_path_factory):
    img = disc_image(640, 640, DISCS)
    return write_disc_slide(tmp_path_factory.mktemp("region") / "discs.tif", img, mpp=0.5), img


def test_segment_image_at_the_model_mpp(threshold_model):
    img = disc_image(300, 260, [(150, 130, 50)])
    labels = segment_image(img, threshold_model)
    assert labels.shape == (300, 260) and labels.dtype == np.int32
    assert labels.max() == 1
    dark = img.mean(-1) < 128
    assert (labels > 0).sum() == pytest.approx(dark.sum(), rel=0.02)


def test_segment_image_resamples_and_returns_the_input_size(threshold_model):
    img = disc_image(211, 333, [(100, 100, 50), (100, 250, 40)])  # smaller than a tile at model mpp
    labels = segment_image(img, threshold_model, mpp=0.5)  # model at 1.0: works at half size
    assert labels.shape == (211, 333)
    assert labels.max() == 2
    dark = img.mean(-1) < 128
    iou = ((labels > 0) & dark).sum() / ((labels > 0) | dark).sum()
    assert iou > 0.95


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 2), np.uint8), np.zeros((10, 10, 3), np.float32),
                                 np.zeros((0, 5, 3), np.uint8)])
def test_segment_image_bad_input(threshold_model, bad):
    with pytest.raises(GlandsegError):
        segment_image(bad, threshold_model)


def test_region_labels_land_on_the_slide(disc_slide, threshold_model):
    path, img = disc_slide
    slide = open_slide(path)
    bbox = (40, 60, 520, 500)  # cuts the third disc at its bottom edge? no: fully inside
    res = segment_region(slide, bbox, model=threshold_model, return_probs=True)
    f = threshold_model.card.mpp / 0.5
    assert res.scale == pytest.approx(f)
    assert res.labels.shape == (round(520 / f), round(500 / f))
    assert res.probs.shape == (3, *res.labels.shape)
    assert res.mpp == 1.0 and res.bbox0 == bbox
    assert res.translate == pytest.approx((40 + 0.5 * f - 0.5, 60 + 0.5 * f - 0.5))
    assert res.labels.max() == 3
    # each label's centroid, placed with scale/translate, is the disc centre (level-0 px)
    cents = ndi.center_of_mass(res.labels > 0, res.labels, range(1, 4))
    placed = sorted((res.translate[0] + cy * f, res.translate[1] + cx * f) for cy, cx in cents)
    for (py, px), (cy, cx, _) in zip(placed, sorted(DISCS), strict=True):
        assert abs(py - cy) < 1.0 and abs(px - cx) < 1.0


def test_region_edge_glands_are_cut_by_the_box_not_by_a_tile(disc_slide, threshold_model):
    path, _ = disc_slide
    res = segment_region(open_slide(path), (0, 0, 300, 640), model=threshold_model)
    # the big disc (300, 420, r 60) is cut by the box's bottom edge: its upper half is there
    assert res.labels[-1].any()
    assert res.labels.max() == 2


def test_region_needs_mpp(tmp_path, threshold_model):
    from _pyramids import write_pyramid_tiff

    img = disc_image(256, 256, [(128, 128, 40)])
    path = tmp_path / "nompp.tif"
    write_pyramid_tiff(path, img, n_levels=1, compression="zlib")
    slide = open_slide(path)
    assert slide.mpp is None
    with pytest.raises(GlandsegError, match="µm/px"):
        segment_region(slide, (0, 0, 256, 256), model=threshold_model)
    res = segment_region(slide, (0, 0, 256, 256), model=threshold_model, mpp=1.0)
    assert res.labels.shape == (256, 256) and res.labels.max() == 1
    assert slide.mpp is None  # the override did not change the caller's slide
    with pytest.raises(GlandsegError, match="empty region"):
        segment_region(slide, (0, 0, 0, 10), model=threshold_model, mpp=1.0)
