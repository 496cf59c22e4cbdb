"""Tissue mask: finds the tissue on real H&E, nothing on blank glass."""

from __future__ import annotations

import numpy as np
from PIL import Image

from napari_glandseg.slide import open_slide
from napari_glandseg.slide.find_tissue import tissue_mask


def test_tissue_on_cmu(cmu_svs):
    s = open_slide(cmu_svs)
    mask, ds = tissue_mask(s)
    assert ds == 16.0 / 0.499
    assert mask.shape == (round(2967 / ds + 0.5), round(2220 / ds + 0.5))
    assert 0.5 < mask.mean() < 1.0  # this region is mostly tissue, with some glass


def test_tissue_mask_follows_tissue_on_tcga(tcga_svs):
    s = open_slide(tcga_svs)  # no mpp: 0.5 µm/px assumed
    mask, ds = tissue_mask(s, margin_um=0)
    assert ds == 32.0
    low = s.levels[1].compute()[::16, ::16]  # about the mask's scale
    glass = low.min(axis=2) > 225
    h, w = min(mask.shape[0], glass.shape[0]), min(mask.shape[1], glass.shape[1])
    # most glass is outside the mask, most non-glass inside
    assert mask[:h, :w][glass[:h, :w]].mean() < 0.3
    assert mask[:h, :w][~glass[:h, :w]].mean() > 0.9


def test_blank_and_noisy_glass_have_no_tissue(tmp_path):
    rng = np.random.default_rng(0)
    blank = np.full((2000, 2000, 3), 245, np.uint8)
    Image.fromarray(blank).save(tmp_path / "blank.png")
    mask, _ = tissue_mask(open_slide(tmp_path / "blank.png"), mask_mpp=4.0)
    assert not mask.any()
    noisy = np.clip(240 + rng.normal(0, 4, (2000, 2000, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    mask, _ = tissue_mask(open_slide(tmp_path / "noisy.png"), mask_mpp=4.0)
    assert mask.mean() < 0.01
