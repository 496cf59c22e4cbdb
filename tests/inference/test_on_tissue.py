"""Glands wholly off the tissue mask are dropped from a region's labels; glands on tissue stay."""

from __future__ import annotations

import numpy as np
from PIL import Image

from napari_glandseg.inference.on_tissue import cached_tissue_mask, drop_off_tissue
from napari_glandseg.slide import open_slide


def _slide(tmp_path, shared_data):
    """White glass with one real GlaS tissue patch in the top-left corner (1 µm/px)."""
    glas = sorted((shared_data / "glas" / "train" / "images").glob("*.png"))[0]
    tissue = np.asarray(Image.open(glas).convert("RGB"))[:400, :400]
    img = np.full((2000, 2000, 3), 242, np.uint8)
    img[100:500, 100:500] = tissue
    path = tmp_path / "patch.png"
    Image.fromarray(img).save(path)
    return open_slide(path, mpp=1.0)


def test_glands_on_glass_go_and_glands_on_tissue_stay(tmp_path, shared_data):
    slide = _slide(tmp_path, shared_data)
    # labels on a 2-px grid starting at level-0 (0, 0)
    labels = np.zeros((1000, 1000), np.int32)
    labels[100:150, 100:150] = 4  # level-0 200..300: on the tissue patch
    labels[700:760, 700:760] = 9  # level-0 1400..1520: glass, far from tissue
    labels[240:260, 240:300] = 5  # straddles the patch's edge (level-0 480..520): kept
    out = drop_off_tissue(labels, slide, (0.0, 0.0), 2.0)
    assert set(np.unique(out)) == {0, 4, 5}
    assert (out[labels == 4] == 4).all() and (out[labels == 5] == 5).all()
    assert labels.max() == 9  # the input is not modified


def test_the_mask_is_computed_once_per_slide(tmp_path, shared_data):
    slide = _slide(tmp_path, shared_data)
    first = cached_tissue_mask(slide)
    assert cached_tissue_mask(slide) is first
    mask, ds = first
    assert mask[int(300 / ds), int(300 / ds)] and not mask[int(1800 / ds), int(1800 / ds)]
