"""The distance head (issue 18.2: merges are the main error): its target, its loss, its growth
onto a trained model, and the post-processing that seeds touching glands apart with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_glandseg.inference.postprocess import probabilities_to_instances
from napari_glandseg.labels.metrics import evaluate_pair
from napari_glandseg.model import create_model, load_checkpoint, save_checkpoint
from napari_glandseg.model.outputs import to_logits, to_probabilities
from napari_glandseg.model.tta import with_tta
from napari_glandseg.train.common import add_distance_head
from napari_glandseg.train.data import IGNORE, CropDataset, Sample, make_targets
from napari_glandseg.train.distance_target import (
    LEVELS,
    gland_distance,
    pack_labels,
    pack_target,
    split_labels,
    split_target,
)
from napari_glandseg.train.losses import segmentation_loss


def _touching() -> np.ndarray:
    """Two 20×24 glands sharing a whole side, and a third cut by the image's left edge."""
    labels = np.zeros((48, 64), np.int32)
    labels[4:24, 8:32] = 1
    labels[4:24, 32:56] = 2
    labels[30:46, 0:12] = 3
    return labels


def test_gland_distance_is_one_at_each_core_and_zero_at_edges_between_glands():
    labels = _touching()
    d = gland_distance(labels)
    assert d.dtype == np.float32 and d.min() == 0.0 and d.max() == 1.0
    assert (d[labels == 0] == 0).all()
    for i in (1, 2, 3):
        assert d[labels == i].max() == pytest.approx(1.0)
    assert (d[4:24, 31:33] == 0).all(), "the side two glands share is an edge of both"
    # the image's edge is no gland's edge: gland 3 is deepest along it, not in its middle
    assert d[38, 0] > d[38, 6]
    # the cores are apart where the glands' union is one piece
    assert ndi.label(labels > 0)[1] == 2
    assert ndi.label(d >= 0.5)[1] == 3


def test_packed_labels_survive_cropping_and_turning():
    labels = _touching()
    packed = pack_labels(labels)
    ids, levels = split_labels(np.rot90(packed[2:40, 5:60], 1))
    np.testing.assert_array_equal(ids, np.rot90(labels[2:40, 5:60], 1))
    expected = 1 + np.rint(LEVELS * gland_distance(labels)).astype(np.int32)
    np.testing.assert_array_equal(levels, np.rot90(expected[2:40, 5:60], 1))
    # a slide's stitched ids (chunk · 2**16 + local) run beyond the low bits: renumbered, same glands
    stitched = np.where(labels > 0, (17 << 16) + labels, 0)
    ids, levels = split_labels(pack_labels(stitched))
    np.testing.assert_array_equal(ids, labels)
    np.testing.assert_array_equal(levels, expected)
    ids, _ = split_labels(pack_labels(labels[4:24, 10:50]))  # no background in view: every pixel a gland
    assert ids.min() >= 1 and len(np.unique(ids)) == 2


def test_the_distance_of_reviewed_glands_ignores_what_unreviewed_pixels_hold():
    labels = _touching()
    valid = np.ones(labels.shape, bool)
    valid[:, 18:22] = False  # an unreviewed stripe through gland 1, holding a stale other id
    stale = labels.copy()
    stale[:, 18:22] = 7
    _, levels = split_labels(pack_labels(stale, valid))
    _, clean = split_labels(pack_labels(labels))
    np.testing.assert_array_equal(levels[valid], clean[valid])
    _, careless = split_labels(pack_labels(stale))
    assert (careless[valid] != clean[valid]).any(), "without valid the stripe would cut gland 1 in two"


def test_packed_target_splits_into_the_class_target_and_the_distance():
    labels = _touching()
    valid = np.ones(labels.shape, bool)
    valid[:, :4] = False
    target = make_targets(labels, valid)
    levels = 1 + np.rint(LEVELS * gland_distance(labels)).astype(np.int32)
    levels[0] = 0  # nothing known there (padding, glass)
    classes, distance, known = split_target(torch.from_numpy(pack_target(target, levels)))
    np.testing.assert_array_equal(classes.numpy(), target)
    assert (classes.numpy()[:, :4] == IGNORE).all()
    np.testing.assert_allclose(distance.numpy()[1:], gland_distance(labels)[1:], atol=0.5 / LEVELS)
    assert not known[0].any() and known[1:].all()


def test_crops_with_distance_have_the_same_classes_as_crops_without():
    rng = np.random.default_rng(0)
    labels = np.pad(_touching(), 40)
    image = rng.integers(0, 255, (*labels.shape, 3), dtype=np.uint8)
    s = Sample("s", image, labels, np.ones(labels.shape, bool))
    plain = CropDataset([s], 64, length=6, seed=3, pad_background=True, cut_edges=0.5)
    deep = CropDataset([s], 64, length=6, seed=3, pad_background=True, cut_edges=0.5, distance=True)
    seen = 0
    for i in range(6):
        img_a, t_a, _ = plain[i]
        img_b, t_b, _ = deep[i]
        classes, distance, known = split_target(t_b)
        torch.testing.assert_close(img_a, img_b)
        torch.testing.assert_close(classes, t_a)
        assert 0 <= float(distance.min()) and float(distance.max()) <= 1
        assert not known[t_a == 1].logical_not().any(), "every gland pixel has its distance"
        seen += int((distance > 0.5).any())
    assert seen, "some crop holds a gland core"


def test_the_distance_loss_is_low_where_the_map_matches_and_absent_without_targets():
    labels = _touching()
    target = make_targets(labels, np.ones(labels.shape, bool))
    d = gland_distance(labels)
    levels = 1 + np.rint(LEVELS * d).astype(np.int32)
    packed = torch.from_numpy(pack_target(target, levels))[None]
    classes = torch.nn.functional.one_hot(torch.from_numpy(target.astype(np.int64)), 3).permute(2, 0, 1)[None] * 8.0
    right = torch.logit(torch.from_numpy(d).clamp(1e-3, 1 - 1e-3))[None, None]
    wrong = torch.logit(torch.from_numpy(1 - d).clamp(1e-3, 1 - 1e-3))[None, None]
    _, good = segmentation_loss({"logits": torch.cat([classes, right], 1)}, packed)
    _, bad = segmentation_loss({"logits": torch.cat([classes, wrong], 1)}, packed)
    assert good["distance"] < bad["distance"]
    loss, none = segmentation_loss({"logits": torch.cat([classes, wrong], 1)},
                                   torch.from_numpy(target.astype(np.int64))[None])
    assert none["distance"] == 0.0, "a target without distances (corrections) leaves the map alone"
    assert "distance" not in segmentation_loss({"logits": classes}, packed)[1]


def test_the_distance_map_seeds_apart_glands_that_touch_without_a_border():
    labels = _touching()[:, :60]
    union = (labels > 0).astype(np.float32)
    probs = np.stack([1 - union, union, np.zeros_like(union), gland_distance(labels)])  # no border at all
    mpp = 1.0
    merged = probabilities_to_instances(probs[:3], mpp=mpp, params={"min_area_um2": 20.0})
    assert merged.max() == 2, "without the map the two touching glands are one"
    split = probabilities_to_instances(probs, mpp=mpp, params={"min_area_um2": 20.0, "seed_distance": 0.5})
    assert split.max() == 3
    assert evaluate_pair(split, labels, gt_kind="instance", hausdorff=False)["object_f1"] == 1.0
    off = probabilities_to_instances(probs, mpp=mpp, params={"min_area_um2": 20.0, "seed_distance": 0.0})
    np.testing.assert_array_equal(off, merged)
    shallow = probs.copy()
    shallow[3] *= 0.4  # a map that does not reach the seed level anywhere leaves the glands as they were
    kept = probabilities_to_instances(shallow, mpp=mpp, params={"min_area_um2": 20.0, "seed_distance": 0.5})
    np.testing.assert_array_equal(kept, merged)
    shallow[3][labels == 3] = 0.0  # nor where it fails on one gland only
    mixed = probabilities_to_instances(shallow, mpp=mpp, params={"min_area_um2": 20.0, "seed_distance": 0.3})
    assert mixed.max() == 3 and len(np.unique(mixed[labels == 3])) == 1 and mixed[38, 5] > 0


def test_the_distance_map_never_merges_glands_a_border_keeps_apart():
    labels = _touching()[:, :60]
    target = make_targets(labels, np.ones(labels.shape, bool))
    probs = np.stack([(target == 0), (target == 1), (target == 2), gland_distance(labels)]).astype(np.float32)
    probs[3][labels == 2] *= 0.4  # the map reaches the seed level in gland 1 only
    params = {"min_area_um2": 20.0, "border_threshold": 0.5}
    without = probabilities_to_instances(probs[:3], mpp=1.0, params=params)
    with_map = probabilities_to_instances(probs, mpp=1.0, params={**params, "seed_distance": 0.5})
    assert without.max() == 3, "the border keeps the touching glands apart"
    np.testing.assert_array_equal(with_map, without)


def test_probabilities_and_logits_invert_each_other():
    logits = torch.randn(2, 4, 8, 8)
    probs = to_probabilities(logits, 3)
    torch.testing.assert_close(probs[:, :3].sum(1), torch.ones(2, 8, 8))
    torch.testing.assert_close(probs[:, 3], logits[:, 3].sigmoid())
    torch.testing.assert_close(to_probabilities(to_logits(probs, 3), 3), probs)
    torch.testing.assert_close(to_probabilities(logits[:, :3], 3), logits[:, :3].softmax(1))


@pytest.fixture(scope="module")
def grown():
    torch.manual_seed(0)
    net = create_model("glandseg_tiny", img_px=64).eval()
    return net, add_distance_head(net).eval()


def test_a_grown_head_keeps_the_classes_and_starts_at_half(grown):
    net, big = grown
    assert not net.distance_head and big.distance_head
    assert big.card.channels == ("background", "gland", "border", "distance")
    assert big.card.postprocess["seed_distance"] == 0.45 and big.card.postprocess["seed_valley"] == 0.2
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before, after = net(x), big(x)
    assert after.shape[1] == 4
    torch.testing.assert_close(after[:, :3], before)
    torch.testing.assert_close(after[:, 3].sigmoid(), torch.full((1, 64, 64), 0.5))
    # a map of 0.5 everywhere at the grown card's seed settings splits nothing
    labels = _touching()
    union = (labels > 0).astype(np.float32)
    probs = np.stack([1 - union, union, np.zeros_like(union), np.full_like(union, 0.5)])
    params = {**big.card.postprocess, "min_area_um2": 20.0}
    np.testing.assert_array_equal(probabilities_to_instances(probs, mpp=1.0, params=params),
                                  probabilities_to_instances(probs[:3], mpp=1.0, params=params))


def test_a_distance_model_saves_loads_and_keeps_its_map_through_tta(grown, tmp_path):
    import copy

    big = copy.deepcopy(grown[1])
    with torch.no_grad():
        big.distance.weight.normal_()
    save_checkpoint(big, tmp_path / "d")
    loaded = load_checkpoint(tmp_path / "d.safetensors").eval()
    assert loaded.distance_head and loaded.card.channels[-1] == "distance"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        probs = [to_probabilities(m(x), 3) for m in (big, loaded)]
        tta = to_probabilities(with_tta(loaded, transforms=((0, False), (2, False)))(x), 3)
        turned = to_probabilities(loaded(torch.rot90(x, 2, dims=(-2, -1))), 3)
    torch.testing.assert_close(probs[1], probs[0], atol=2e-3, rtol=0)  # fp16 weights on disk
    mean = (probs[1] + torch.rot90(turned, -2, dims=(-2, -1))) / 2
    torch.testing.assert_close(tta, mean, atol=1e-5, rtol=1e-4)


def test_a_card_refuses_a_bad_distance_setting():
    from napari_glandseg.model.card import ModelCard

    with pytest.raises(ValueError, match="seed_distance"):
        ModelCard(name="m", postprocess={"seed_distance": 1.5})
    card = create_model("glandseg_tiny").card
    with pytest.raises(ValueError, match="distance_head"):
        card.replace(arch_args={**card.arch_args, "distance_head": "yes"})
    with pytest.raises(ValueError, match="3 classes"):
        card.replace(arch_args={**card.arch_args, "distance_head": True, "num_classes": 2})


def test_a_run_grows_the_head_trains_the_map_and_resumes(mini_glas, tmp_path):
    import json

    from _train_helpers import TINY

    from napari_glandseg.train import supervised

    args = ["--data", json.dumps([str(mini_glas)]), "--out", str(tmp_path), "--val-fraction", "0", *TINY,
            "--distance-head", "true"]
    assert supervised.main([*args, "--steps", "3", "--stop-at", "2"]) == 0
    assert supervised.main([*args, "--steps", "3"]) == 0
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "distance" in r]
    assert [r["step"] for r in steps] == [1, 2, 3], "the resumed run goes on with the grown head"
    assert all(0 < r["distance"] < 1 for r in steps)
    model = load_checkpoint(tmp_path / "last.safetensors")
    assert model.distance_head and model.card.postprocess["seed_distance"] == 0.45
    groups = torch.load(tmp_path / "last_state.pt", weights_only=False)["optimizer"]["param_groups"]
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(10 * groups[0]["lr"]), "the head learns 10× faster"
    assert len(groups[1]["params"]) == 2  # the head's weight and bias
    with pytest.raises(ValueError, match="distance"):
        supervised.main([*args, "--steps", "1", "--crops-on-device", "true", "--out", str(tmp_path / "d")])


def test_the_predictor_returns_the_map_after_the_classes(grown):
    from napari_glandseg.inference.region import get_predictor, probabilities

    _, big = grown
    rgb = np.random.default_rng(1).integers(0, 255, (150, 170, 3), dtype=np.uint8)
    probs = probabilities(rgb, get_predictor(big, "cpu", None))
    assert probs.shape == (4, 150, 170)
    np.testing.assert_allclose(probs[:3].sum(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs[3], 0.5, atol=1e-6)  # the grown head's start


def test_tuning_searches_seed_distances_only_for_a_model_with_the_map(grown):
    from training import tune_postprocess

    net, big = grown
    assert "seed_distance" not in tune_postprocess.grid_for(net.card)
    grid = tune_postprocess.grid_for(big.card)
    assert grid["seed_distance"][0] == 0.0 and len(grid["seed_distance"]) > 1


def test_only_a_valley_deeper_than_seed_valley_splits_a_gland():
    labels = _touching()[:, :60]
    union = (labels > 0).astype(np.float32)
    d = gland_distance(labels)
    d[:, 18:21] = np.minimum(d[:, 18:21], 0.42)  # a shallow dip across gland 1's middle: noise
    probs = np.stack([1 - union, union, np.zeros_like(union), d])
    params = {"min_area_um2": 20.0, "seed_distance": 0.5}
    noisy = probabilities_to_instances(probs, mpp=1.0, params=params)
    assert len(np.unique(noisy[labels == 1])) == 2, "without a valley depth the dip splits gland 1"
    steady = probabilities_to_instances(probs, mpp=1.0, params={**params, "seed_valley": 0.15})
    assert steady.max() == 3
    assert evaluate_pair(steady, labels, gt_kind="instance", hausdorff=False)["object_f1"] == 1.0
