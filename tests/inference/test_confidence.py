"""Per-gland confidence from the model's probabilities: sure where it is crisp, unsure where not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk

from napari_glandseg.inference.confidence import gland_confidence, gland_features, merge_pieces


def probs_for(fg: np.ndarray) -> np.ndarray:
    return np.stack([1 - fg, fg, np.zeros_like(fg)]).astype(np.float32)


def test_a_crisp_gland_is_surer_than_a_hesitant_one():
    labels = np.zeros((100, 200), np.int32)
    labels[disk((50, 50), 25)] = 1
    labels[disk((50, 150), 25)] = 2
    fg = (labels > 0).astype(np.float32)
    crisp = fg.copy()
    hesitant = fg.copy()
    hesitant[:, 100:] = np.clip(ndi.gaussian_filter(fg[:, 100:], 6) * 0.7 + 0.15, 0, 1)  # blurred, undecided
    conf = gland_confidence(labels, probs_for(np.where(np.arange(200)[None] < 100, crisp, hesitant)))
    assert set(conf) == {1, 2}
    assert conf[1] > 0.9 and conf[2] < 0.5 * conf[1]
    only = gland_confidence(labels, probs_for(np.where(np.arange(200)[None] < 100, crisp, hesitant)), np.array([2]))
    assert only == {2: conf[2]}  # the glands asked for, with the same values
    feats = gland_features(labels, probs_for(crisp))
    assert feats[1]["edge"] == pytest.approx(1.0) and feats[1]["margin"] == pytest.approx(1.0)


def test_probabilities_on_another_grid_are_refused():
    with pytest.raises(ValueError, match="not on one grid"):
        gland_features(np.zeros((10, 10), np.int32), np.zeros((3, 10, 12), np.float32))


def test_pieces_of_a_gland_weigh_by_area():
    assert merge_pieces({7: [(0.9, 300), (0.3, 100)]}) == {7: pytest.approx(0.75)}
