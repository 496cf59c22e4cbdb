"""SPM on real GlaS images: proposals that overlap the glands more than chance, deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_glandseg.errors import GlandsegError
from napari_glandseg.labels.masks import read_image, read_mask
from napari_glandseg.unsupervised import ClusterConfig, ProposalConfig, instances_from_mask, propose_glands

FAST = ProposalConfig(cluster=ClusterConfig(iterations=30))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("name", ["train_1", "train_20"])
def test_proposals_overlap_glands_more_than_chance(shared_data, name):
    glas = shared_data / "glas" / "train"
    rgb = read_image(glas / "images" / f"{name}.png")
    truth = read_mask(glas / "masks" / f"{name}.png") > 0
    props = propose_glands(rgb, 0.62, FAST)
    assert props.labels.shape == truth.shape and props.labels.dtype == np.int32
    assert props.labels.max() >= 3  # several glands, not one blob
    found = props.labels > 0
    iou = _iou(found, truth)
    # chance: the same proposals (same amount, same shapes) placed elsewhere on the image
    h, w = found.shape
    shuffled = [np.roll(found, (h // 2, w // 2), (0, 1)), found[::-1, ::-1], np.roll(found, w // 3, 1)]
    chance = max(_iou(s, truth) for s in shuffled)
    assert iou > chance + 0.1, (iou, chance)
    assert iou > 0.4


def test_same_seed_same_glands_other_seed_runs(shared_data):
    rgb = read_image(shared_data / "glas" / "train" / "images" / "train_20.png")[:200, :300]
    cfg = ProposalConfig(cluster=ClusterConfig(iterations=8))
    a, b = propose_glands(rgb, 0.62, cfg), propose_glands(rgb, 0.62, cfg)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert torch.get_num_threads() == 1  # the call leaves the caller's threads as they were


def test_touching_glands_are_split():
    yy, xx = np.mgrid[:80, :160]
    mask = ((yy - 40) ** 2 + (xx - 40) ** 2 < 30**2) | ((yy - 40) ** 2 + (xx - 110) ** 2 < 30**2)
    mask |= (abs(yy - 40) <= 3) & (xx > 40) & (xx < 110)  # a neck 7 px (9 µm) wide joins them
    labels = instances_from_mask(mask, 1.24, split_um=6.0, min_area_um2=100.0)
    assert labels.max() == 2
    assert labels[40, 40] != labels[40, 110] and labels[40, 40] > 0 and labels[40, 110] > 0
    assert ((labels > 0) == mask).all()


def test_bad_images_and_mpp_are_clear_errors():
    rgb = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(GlandsegError, match="µm/px"):
        propose_glands(rgb, 0.0)
    with pytest.raises(GlandsegError, match="µm/px"):
        propose_glands(rgb, float("nan"))
    with pytest.raises(GlandsegError, match="H×W×3"):
        propose_glands(np.zeros((64, 64, 5), np.uint8), 0.62)
    with pytest.raises(GlandsegError, match="too small"):
        propose_glands(rgb, 0.1)
    with pytest.raises(GlandsegError, match="iterations"):
        ClusterConfig(iterations=0)
