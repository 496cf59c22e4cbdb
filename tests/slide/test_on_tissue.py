"""Glass is background: glands wholly off the tissue mask are dropped from a region's labels,
probabilities beyond the tissue's edge are background; glands on tissue stay."""

from __future__ import annotations

import numpy as np
from PIL import Image

from napari_glandseg.slide import open_slide
from napari_glandseg.slide.find_tissue import pale_pixels
from napari_glandseg.slide.on_tissue import (
    GLASS,
    RUN,
    cached_tissue_mask,
    drop_off_tissue,
    glass_is_background,
)


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


def test_glass_beyond_the_margin_becomes_background_and_tissue_is_untouched(tmp_path, shared_data):
    slide = _slide(tmp_path, shared_data)  # tissue at level-0 100..500 (1 µm/px)
    # a model that calls everything gland, as the shipped one does on blank glass; a 2-px grid
    probs = np.zeros((3, 1000, 1000), np.float32)
    probs[0], probs[1], probs[2] = 0.1, 0.8, 0.1
    before = probs.copy()
    glass_is_background(probs, slide, (0.0, 0.0), 2.0)
    kept = probs[1] > 0
    # the patch's clearly tissue (not white) pixels are untouched but for a few strands in a white
    # lumen that opens onto the glass at its cut edge (measured: 158 of 34,218)
    rgb = np.asarray(slide.read_region(0, 0, 0, 2000, 2000))[1::2, 1::2]  # the grid's pixel centres
    tissue = rgb.astype(np.float32).mean(-1) < 200
    tissue[:50], tissue[250:], tissue[:, :50], tissue[:, 250:] = False, False, False, False
    assert tissue.sum() > 0.5 * 200 * 200 and kept[tissue].mean() > 0.99
    untouched = (probs == before).all(0)
    assert (untouched == kept)[tissue].all()
    assert kept[50:250, 50:250].mean() > 0.95  # the patch, white lumens and pale corners included
    assert not kept[265:].any() and not kept[:, 265:].any()  # 30 µm and more out on the glass
    assert (probs[0][~kept] == 1).all() and (probs[1:][:, ~kept] == 0).all()
    # a slide with no tissue detected at all keeps everything
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((800, 800, 3), 242, np.uint8)).save(blank)
    probs = before[:, :400, :400].copy()
    glass_is_background(probs, open_slide(blank, mpp=1.0), (0.0, 0.0), 2.0)
    np.testing.assert_array_equal(probs, before[:, :400, :400])


def test_the_glass_beside_a_cut_edge_goes_too_and_enclosed_lumens_stay(tmp_path, shared_data):
    slide = _slide(tmp_path, shared_data)  # tissue at level-0 100..500 (1 µm/px), glass 242 around
    probs = np.zeros((3, 1000, 1000), np.float32)
    probs[0], probs[1], probs[2] = 0.1, 0.8, 0.1
    coarse = probs.copy()
    glass_is_background(coarse, slide, (0.0, 0.0), 2.0)
    rgb = np.asarray(slide.read_region(0, 0, 0, 2000, 2000))[1::2, 1::2]
    calls = []
    fine = probs.copy()
    glass_is_background(fine, slide, (0.0, 0.0), 2.0, lambda: calls.append(1) or rgb)
    assert calls == [1]
    kept_coarse, kept_fine = coarse[1] > 0, fine[1] > 0
    assert not (kept_fine & ~kept_coarse).any()  # only ever more background
    # the margin the coarse mask keeps outside the patch (grid 50..250) is glass: gone now
    outside = kept_coarse.copy()
    outside[50:250, 50:250] = False
    assert outside.sum() > 1000 and not kept_fine[outside].any()
    # inside the patch: what is lost is pale and joined to the glass; dark tissue all stays
    inside = np.zeros_like(kept_fine)
    inside[50:250, 50:250] = True
    lost = inside & kept_coarse & ~kept_fine
    assert lost.any() and pale_pixels(rgb)[lost].all()
    assert kept_fine[inside & kept_coarse & (rgb.astype(np.float32).mean(-1) < 200)].all()
    # a white lumen enclosed by tissue is not glass
    enclosed = rgb.copy()
    enclosed[140:160, 140:160] = 250
    probs_enclosed = probs.copy()
    glass_is_background(probs_enclosed, slide, (0.0, 0.0), 2.0, enclosed)
    assert (probs_enclosed[1, 140:160, 140:160] > 0).all()
    # a sub-box with the reach's margin gives its core the same answer (chunks agree with regions)
    sub = probs[:, 30:150, 30:150].copy()
    glass_is_background(sub, slide, (60.0, 60.0), 2.0, rgb[30:150, 30:150])
    np.testing.assert_array_equal(sub[:, 20:100, 20:100], fine[:, 50:130, 50:130])
    # a box with no glass in it reads nothing
    calls.clear()
    y, x = next((y, x) for y in range(50, 230, 10) for x in range(50, 230, 10) if kept_coarse[y:y + 20, x:x + 20].all())
    inner = probs[:, y:y + 20, x:x + 20].copy()
    glass_is_background(inner, slide, (2.0 * y, 2.0 * x), 2.0, lambda: calls.append(1) or rgb[y:y + 20, x:x + 20])
    assert calls == [] and (inner[1] > 0).all()


def test_each_use_has_its_own_mask(tmp_path, shared_data):
    slide = _slide(tmp_path, shared_data)
    (wide, ds_wide), (narrow, ds_narrow) = cached_tissue_mask(slide, RUN), cached_tissue_mask(slide, GLASS)
    assert cached_tissue_mask(slide, GLASS)[0] is narrow and cached_tissue_mask(slide, RUN)[0] is wide
    # the same grid: the glass mask lies inside the run mask, which reaches further out
    assert ds_narrow == ds_wide and not (narrow & ~wide).any() and narrow.sum() < wide.sum()


def test_a_saved_glass_mask_serves_a_freshly_opened_slide(tmp_path, shared_data, monkeypatch):
    """What a whole-slide run's workers do: the run's mask, not one of their own."""
    from napari_glandseg.slide import find_tissue as tissue
    from napari_glandseg.slide.on_tissue import save_mask, seed_mask

    slide = _slide(tmp_path, shared_data)
    save_mask(tmp_path / "glass.npz", slide, GLASS)
    expected, ds = cached_tissue_mask(slide, GLASS)
    fresh = open_slide(tmp_path / "patch.png", mpp=1.0)
    monkeypatch.setattr(tissue, "tissue_core", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    seed_mask(fresh, tmp_path / "glass.npz", GLASS)
    mask, ds2 = cached_tissue_mask(fresh, GLASS)
    np.testing.assert_array_equal(mask, expected)
    assert ds2 == ds
    probs = np.full((3, 100, 100), 1 / 3, np.float32)
    monkeypatch.setattr(tissue, "COSTLY_PX", 0)  # as on a huge slide: no region masks either
    monkeypatch.setattr(tissue, "region_tissue_mask", lambda *a, **k: (_ for _ in ()).throw(AssertionError("region")))
    glass_is_background(probs, fresh, (0.0, 0.0), 20.0)  # no recomputation
    assert (probs[0][60:, 60:] == 1).all()
    # another µm/px: not seeded (the mask is for the slide as the run saw it)
    other = open_slide(tmp_path / "patch.png", mpp=2.0)
    seed_mask(other, tmp_path / "glass.npz", GLASS)
    assert not getattr(other, "_glandseg_tissue_mask", (None, {}))[1]
