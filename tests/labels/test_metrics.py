"""GlaS metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from napari_glandseg.labels.metrics import (
    distinct,
    evaluate_pair,
    object_dice,
    object_f1,
    object_hausdorff,
    pixel_dice,
    pixel_iou,
    to_instances,
)


def _squares(*boxes, shape=(100, 100)) -> np.ndarray:
    out = np.zeros(shape, np.int32)
    for i, (y, x, h, w) in enumerate(boxes, start=1):
        out[y : y + h, x : x + w] = i
    return out


def test_perfect_and_empty():
    gt = _squares((10, 10, 20, 20), (50, 50, 30, 10))
    m = evaluate_pair(gt, gt)
    assert m["pixel_dice"] == m["pixel_iou"] == m["object_f1"] == m["object_dice"] == 1.0
    assert m["object_hausdorff"] == 0.0 and m["n_tp"] == m["n_pred"] == m["n_true"] == 2
    empty = np.zeros_like(gt)
    assert object_f1(empty, empty) == 1.0 and object_f1(empty, gt) == 0.0 and pixel_dice(empty, gt) == 0.0
    assert math.isnan(object_hausdorff(empty, gt))


def test_pixel_scores():
    gt, pred = _squares((0, 0, 10, 10)), _squares((0, 5, 10, 10))  # overlap 50 px, areas 100 each
    assert pixel_dice(pred, gt) == pytest.approx(0.5)
    assert pixel_iou(pred, gt) == pytest.approx(50 / 150)


def test_object_f1_fifty_percent_rule_and_duplicates():
    gt = _squares((0, 0, 20, 20), (40, 40, 20, 20), (70, 0, 20, 20))
    # gland 1 found (60 % covered), gland 2 only 40 % covered, gland 3 split in two halves (one TP,
    # one duplicate), and one prediction on background
    pred = _squares((0, 0, 20, 12), (40, 40, 20, 8), (70, 0, 20, 10), (70, 10, 20, 10), (0, 70, 10, 10))
    m = evaluate_pair(pred, gt)
    # TP: gland 1, gland 3 (each half covers exactly 50 %: counted once) → 2; n_pred 5, n_true 3
    assert m["n_tp"] == 2
    assert m["object_f1"] == pytest.approx(2 * 2 / (5 + 3))
    quick = evaluate_pair(pred, gt, hausdorff=False)  # the same, without the Hausdorff distance
    assert np.isnan(quick.pop("object_hausdorff")) and m["object_hausdorff"] > 0
    assert quick == {k: v for k, v in m.items() if k != "object_hausdorff"}


def test_object_dice_is_area_weighted():
    gt = _squares((0, 0, 10, 10), (50, 50, 20, 20))  # areas 100 and 400
    pred = _squares((0, 0, 10, 10))  # finds only the small one
    # gt side: 100/500 * 1 + 400/500 * 0; pred side: 1.0
    assert object_dice(pred, gt) == pytest.approx(0.5 * (0.2 + 1.0))


def test_object_hausdorff_of_a_shifted_square():
    gt, pred = _squares((20, 20, 30, 30)), _squares((20, 27, 30, 30))
    assert object_hausdorff(pred, gt) == pytest.approx(7.0)


def test_binary_masks_become_objects(shared_data):
    path = sorted((shared_data / "glas" / "testA" / "masks").glob("*.png"))[0]
    mask = np.asarray(Image.open(path))
    inst = to_instances(mask)
    assert inst.max() >= 1 and ((inst > 0) == (mask > 0)).all()
    m = evaluate_pair((inst > 0).astype(np.uint8) * 255, inst)
    assert m["pixel_dice"] == 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        evaluate_pair(np.zeros((4, 4), np.int32), np.zeros((4, 5), np.int32))


def test_instance_ground_truth_with_one_gland_in_two_pieces_stays_one_gland():
    gt = np.zeros((40, 40), np.int32)
    gt[5:15, 5:15] = 1
    gt[25:35, 25:35] = 1  # one gland id, two pieces (a gland cut by the section)
    pred = gt.copy()
    assert evaluate_pair(pred, gt, gt_kind="instance")["n_true"] == 1
    assert evaluate_pair(pred, gt)["n_true"] == 2  # "auto" reads two values as a binary mask


def test_colour_coded_masks_keep_every_gland_for_evaluate_and_training(shared_data, tmp_path):
    """Glands coloured so that their red channels are equal stay apart (not read by red alone)."""
    from napari_glandseg.labels.masks import read_mask
    from napari_glandseg.train.data import to_instances as training_instances

    inst = np.asarray(Image.open(shared_data / "glas" / "testA" / "instances" / "testA_1.png")).astype(np.int32)
    n = int(inst.max())
    colours = np.zeros((n + 1, 3), np.uint8)
    colours[1:, 0] = 200  # the same red for every gland
    colours[1:, 1] = np.arange(1, n + 1) * 5
    colours[1:, 2] = 255 - np.arange(1, n + 1) * 3
    path = tmp_path / "colour.png"
    Image.fromarray(colours[inst]).save(path)
    read = read_mask(path)
    for labels in (to_instances(read), training_instances(read), to_instances(colours[inst])):
        assert len(np.unique(labels)) - 1 == n
        assert evaluate_pair(labels, inst, gt_kind="instance")["object_f1"] == 1.0
    Image.fromarray(colours[inst]).save(tmp_path / "colour.jpg", quality=90)
    with pytest.raises(ValueError, match="colour.jpg.*PNG"):
        read_mask(tmp_path / "colour.jpg")


@pytest.mark.parametrize("a", [
    np.random.default_rng(0).integers(0, 40, (52, 77)).astype(np.int32),  # a label image: counted
    np.array([[7, 7]], np.uint16),
    np.array([[3, -1], [5, 3]]),  # negative ids: sorted
    np.array([[0, 3_000_009], [3_000_009, 2]], np.int64),  # ids far beyond the image's size: sorted
    np.array([[True, False]]),
    np.random.default_rng(1).random((4, 4)),
])
def test_distinct_is_numpys_unique_with_its_inverse(a):
    values, index = distinct(a)
    want_values, want_index = np.unique(a, return_inverse=True)
    assert values.dtype == want_values.dtype
    np.testing.assert_array_equal(values, want_values)
    np.testing.assert_array_equal(index, want_index.reshape(a.shape))
