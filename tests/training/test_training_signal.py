"""The training signal of the default model (issue 18.2): official instances, image edges and glass
as background."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_glandseg.train.data import (
    IGNORE,
    CropDataset,
    Sample,
    crop_at,
    cut_by_glass,
    load_glas_folder,
    make_targets,
)


def test_glas_folder_reads_the_official_instances(shared_data):
    folder = shared_data / "glas" / "train"
    (sample,) = load_glas_folder(folder, source_mpp=0.62, model_mpp=0.62, names=["train_1"])
    official = np.asarray(Image.open(folder / "instances" / "train_1.png"))
    assert sample.labels.max() == official.max() == len(np.unique(official)) - 1
    np.testing.assert_array_equal(sample.labels, official)


def _sample() -> Sample:
    labels = np.zeros((64, 64), np.int32)
    labels[20:40, 20:40] = 1
    image = np.full((64, 64, 3), 200, np.uint8)
    return Sample("s", image, labels, np.ones((64, 64), bool))


def test_padding_beyond_the_image_is_white_and_ignored_or_background():
    s = _sample()
    image, labels, valid = crop_at(s, -16, -16, 64)
    assert (image[:16] == 255).all() and not valid[:16].any()
    image, labels, valid = crop_at(s, -16, -16, 64, pad_valid=True)
    assert (image[:16] == 255).all() and valid[:16].all() and (labels[:16] == 0).all()
    assert (make_targets(labels, valid)[:16] == 0).all()


def test_pad_background_crops_hang_over_the_edge_and_teach_background():
    ds = CropDataset([_sample()], 64, length=200, seed=1, augment=False, pad_background=True)
    white_background = 0
    for i in range(200):
        image, target, _ = ds[i]
        white = (image.numpy() == 255).all(axis=2)
        assert not (target.numpy()[white] == IGNORE).any()
        white_background += int(white.any())
    assert white_background > 10  # about a quarter of the crops reach over an edge


def test_a_cut_is_glass_and_background_beyond_a_straight_line_and_leaves_the_tissue_alone():
    s = _sample()
    valid = s.valid.copy()
    valid[:, :8] = False  # unreviewed pixels stay unreviewed on the tissue side
    rng = np.random.default_rng(3)
    for _ in range(20):
        image, labels, out_valid = cut_by_glass(s.image, s.labels, valid, rng)
        glass = (image != 200).any(axis=2)
        assert 0.05 < glass.mean() < 0.95
        tone = image[glass]
        assert (tone >= 225).all() and (tone == tone[0]).all()  # one off-white tone
        assert (labels[glass] == 0).all() and out_valid[glass].all()
        assert (labels[~glass] == s.labels[~glass]).all() and (out_valid[~glass] == valid[~glass]).all()
        ys, xs = np.nonzero(glass)  # a half-plane: the mean of two glass pixels is glass
        i, j = rng.integers(len(ys), size=(2, 50))
        assert glass[(ys[i] + ys[j]) // 2, (xs[i] + xs[j]) // 2].mean() > 0.95


def test_cut_edges_cuts_that_share_of_crops_and_nothing_else_changes():
    plain = CropDataset([_sample()], 64, length=40, seed=2, augment=False)
    cut = CropDataset([_sample()], 64, length=40, seed=2, augment=False, cut_edges=1.0)
    for i in range(40):
        (a, _, _), (b, tb, _) = plain[i], cut[i]
        glass = (b.numpy() != a.numpy()).any(axis=2)
        assert glass.any() and (tb.numpy()[glass] == 0).all()
        assert (b.numpy()[~glass] == a.numpy()[~glass]).all()
    half = CropDataset([_sample()], 64, length=200, seed=2, augment=False, cut_edges=0.5)
    share = np.mean([(half[i][0].numpy() > 200).any() for i in range(200)])
    assert 0.35 < share < 0.65
    with pytest.raises(ValueError, match="cut_edges"):
        CropDataset([_sample()], 64, length=1, cut_edges=1.5)


def test_glass_sample_is_background_on_glass_and_ignored_on_tissue(cmu_svs):
    from napari_glandseg.train.glass import glass_sample

    s = glass_sample(cmu_svs, model_mpp=4.0)
    assert s.labels.max() == 0 and 0.2 < s.valid.mean() < 0.9
    grey = s.image.mean(axis=2)
    assert np.median(grey[s.valid]) > 200  # glass is bright
    assert np.median(grey[~s.valid]) < np.median(grey[s.valid]) - 20  # tissue is not


def _two_glands(gap: int) -> np.ndarray:
    labels = np.zeros((40, 60), np.int32)
    labels[10:30, 5:25] = 1
    labels[10:30, 25 + gap : 45 + gap] = 2
    return labels


def test_separation_marks_the_gap_between_two_glands_only():
    from napari_glandseg.train.data import SEPARATION

    labels = _two_glands(gap=2)  # gland 1 ends at column 24, gland 2 starts at 27
    valid = np.ones_like(labels, bool)
    plain = make_targets(labels, valid)
    marked = make_targets(labels, valid, separation_px=4)
    near_two = marked >= SEPARATION
    np.testing.assert_array_equal(np.where(near_two, marked - SEPARATION, marked), plain)  # the classes stay
    assert (plain[20, 25:27] == 0).all() and near_two[20, 25:27].all()  # the gap (background)
    assert near_two[20, 23:25].all() and near_two[20, 27:29].all()  # each gland's edge facing the other
    assert not near_two[20, :23].any() and not near_two[20, 29:].any()  # farther than 4 px from the other gland
    assert not near_two[:6].any() and not near_two[34:].any()  # above and below: one gland at most
    lone = labels.copy()
    lone[lone == 2] = 0
    assert not (make_targets(lone, valid, separation_px=4) >= SEPARATION).any()


def test_separation_weight_counts_in_the_cross_entropy_only_where_marked():
    import torch

    from napari_glandseg.train.losses import per_sample_ce, split_separation

    labels = _two_glands(gap=4)
    marked = torch.from_numpy(make_targets(labels, np.ones_like(labels, bool), separation_px=4).astype(np.int64))[None]
    target, weights = split_separation(marked, 5.0)
    assert set(torch.unique(weights).tolist()) == {1.0, 5.0} and int(target.max()) == 2
    plain_target, ones = split_separation(target, 5.0)
    assert torch.equal(plain_target, target) and bool((ones == 1.0).all())  # nothing marked
    same, none = split_separation(marked, 1.0)
    assert none is None and torch.equal(same, target)  # weight 1: marks read as their classes
    logits = torch.zeros(1, 3, *labels.shape)
    logits[:, 1] = 2.0  # "gland" everywhere: wrong on the background of the gap
    gap_only = torch.zeros_like(weights)
    gap_only[..., 20, 25:29] = 1.0
    heavy, light = per_sample_ce(logits, target, pixel_weights=weights), per_sample_ce(logits, target)
    assert heavy > light  # the gap's wrong pixels weigh more
    assert torch.isclose(per_sample_ce(logits, target, pixel_weights=gap_only),
                         torch.nn.functional.cross_entropy(logits[..., 20, 25:29], target[..., 20, 25:29]))


def test_separation_marks_reach_the_loss_at_every_scale_and_ignored_pixels_stay_ignored():
    import torch

    from napari_glandseg.train.losses import segmentation_loss

    labels = np.zeros((64, 64), np.int32)
    labels[8:40, 4:30] = 1
    labels[8:40, 33:60] = 2  # a 3-px gap
    valid = np.ones_like(labels, bool)
    valid[50:] = False
    sample = Sample("pair", np.full((64, 64, 3), 180, np.uint8), labels, valid)
    ds = CropDataset([sample], 64, length=4, seed=0, augment=False, separation_px=4)
    target = ds[0][1]
    assert int((target == IGNORE).sum()) == int((~valid).sum())  # the 14 unreviewed rows, nothing else
    marked = (target >= 4) & (target != IGNORE)
    assert marked.any() and not marked[50:].any()
    assert not (CropDataset([sample], 64, length=4, seed=0, augment=False)[0][1] >= 4)[target != IGNORE].any()
    # wrong everywhere in the same way: only the weights differ, at full resolution and in the deep terms
    torch.manual_seed(0)
    out = {"logits": torch.randn(1, 3, 64, 64), "deep": [torch.randn(1, 3, 32, 32)]}
    t = target[None]
    light, _ = segmentation_loss(out, t, separation_weight=1.0, deep_weights=(0.0,))
    heavy, _ = segmentation_loss(out, t, separation_weight=10.0, deep_weights=(0.0,))
    deep_light, _ = segmentation_loss({**out, "logits": out["logits"] * 0}, t, separation_weight=1.0, deep_weights=(1.0,))
    deep_heavy, _ = segmentation_loss({**out, "logits": out["logits"] * 0}, t, separation_weight=10.0, deep_weights=(1.0,))
    assert not torch.isclose(light, heavy) and not torch.isclose(deep_light, deep_heavy)


def test_device_crops_cut_by_glass_as_the_cpu_loader_does():
    import torch

    from napari_glandseg.train.data import GlassCut
    from napari_glandseg.train.device_crops import DeviceCrops
    from napari_glandseg.train.supervised import FinetuneConfig, crop_stream

    s = _sample()
    crops = DeviceCrops([s], 64, "cpu", augment=False, cut_edges=1.0)
    rng = np.random.default_rng(4)
    image, labels, valid = (torch.from_numpy(a) for a in (s.image, s.labels, s.valid.copy()))
    valid[:, :8] = False
    for _ in range(10):  # the same cut as the CPU loader's for the same random numbers
        state = rng.bit_generator.state
        got = crops._cut(image, labels, valid, GlassCut.draw((64, 64), rng))
        rng.bit_generator.state = state
        expected = cut_by_glass(s.image, s.labels, valid.numpy(), rng)
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a.numpy(), b)
    images, targets, _ = DeviceCrops([s], 64, "cpu", augment=False, cut_edges=1.0, pad_background=True).batch(0, 8)
    for n in range(len(images)):  # every crop cut: glass beyond the line (or white beyond the image), background
        glass = (images[n] >= 225).all(dim=-1)
        assert 0.03 < float(glass.float().mean()) < 0.97
        assert (targets[n][glass] == 0).all() and (targets[n][~glass] > 0).any()
    cfg = FinetuneConfig(data=["unused"], crops_on_device=True, cut_edges=1.0)
    assert next(crop_stream(cfg, [s], "cpu", 0, 0, 1))[0].shape == (cfg.batch_size, cfg.crop_px, cfg.crop_px, 3)
    with pytest.raises(ValueError, match="cut_edges"):
        DeviceCrops([s], 64, "cpu", cut_edges=-0.1)


def test_validation_scores_each_organ_at_its_profile_and_weighs_organs_equally(shared_data):
    import torch

    from napari_glandseg.model import create_model
    from napari_glandseg.train.common import validate
    from napari_glandseg.train.data import load_split

    torch.manual_seed(0)
    net = create_model("glandseg_tiny", img_px=64)
    # an untrained net's gland probability is about a half: threshold 0 makes the whole image one gland
    net.card = net.card.replace(postprocess={**net.card.postprocess, "gland_threshold": 0.0, "min_area_um2": 1.0},
                                profiles={"colon": {"min_area_um2": 1e12}})
    data = [{"path": str(shared_data / "glas" / "train"), "organ": "colon"},
            {"path": str(shared_data / "rings" / "glands"), "mpp": 2.72, "organ": "prostate"}]
    _, val = load_split(data, [], data_mpp=0.62, model_mpp=net.card.mpp * 4, val_fraction=0.05, seed=0)
    assert {s.organ for s in val} == {"colon", "prostate"}
    colon = [s for s in val if s.organ == "colon"][:2]
    prostate = [s for s in val if s.organ == "prostate"][:1]
    got = validate(net, colon + prostate, torch.device("cpu"), amp=False)
    assert got["object_f1_colon"] == 0.0, "colon's profile drops every object"
    alone = validate(net, prostate, torch.device("cpu"), amp=False)
    assert got["object_f1_prostate"] == alone["object_f1"]
    assert got["n_pred"] == pytest.approx(alone["n_pred"] / 2), "two organs weigh a half each, not by image count"
    assert alone["n_pred"] >= 1
