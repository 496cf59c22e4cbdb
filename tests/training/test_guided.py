"""Training data and engine of the guided (click-to-segment) model on real GlaS images."""

from __future__ import annotations

import json

import numpy as np

from napari_glandseg.train import guided
from napari_glandseg.train.data import IGNORE, load_glas_folder
from napari_glandseg.train.guided_data import GuidedCropDataset, simulate_guidance


def test_simulated_guidance_points_at_the_target_and_excludes_only_others(mini_glas):
    [s] = load_glas_folder(mini_glas, source_mpp=0.62, model_mpp=1.24, names=[sorted(
        p.stem for p in (mini_glas / "images").glob("*.png"))[0]])
    rng = np.random.default_rng(0)
    ids = [g for g in np.unique(s.labels) if g and (s.labels == g).sum() > 100]
    for i in range(40):
        target = s.labels == ids[i % len(ids)]
        include, exclude = simulate_guidance(target, s.labels, rng)
        assert include and all(target[y, x] for y, x in include), "every include point is on the gland"
        assert not any(target[y, x] for y, x in exclude), "no exclusion point is on the gland"


def test_crops_carry_one_gland_and_its_guidance(mini_glas):
    samples = load_glas_folder(mini_glas, source_mpp=0.62, model_mpp=1.24)
    ds = GuidedCropDataset(samples, 128, length=30, seed=1)
    for i in range(10):
        image, maps, target = ds[i]
        assert image.shape == (128, 128, 3) and maps.shape == (2, 128, 128) and target.shape == (128, 128)
        t = target.numpy()
        assert set(np.unique(t)) <= {0, 1, IGNORE} and (t == 1).sum() >= 30
        inc = maps[0].numpy() > 0
        assert (inc & (t == 1)).any(), "the inclusion marks touch the target gland"
    a, b = ds[3], ds[3]
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a, b, strict=True)), "deterministic by index"


def test_engine_trains_and_resumes(mini_glas, tmp_path):
    args = ["--data", f"[{mini_glas}]", "--out", str(tmp_path / "g"), "--crop-px", "64", "--batch-size", "2",
            "--steps", "2", "--val-fraction", "0", "--amp", "false", "--device", "cpu", "--log-every", "1",
            "--save-every", "1", "--warmup-steps", "1"]
    assert guided.main(args) == 0
    log = [json.loads(line) for line in (tmp_path / "g" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2]
    assert guided.main([*args[:-4], "--steps", "3", "--save-every", "1", "--warmup-steps", "1"]) == 0
    log = [json.loads(line) for line in (tmp_path / "g" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3], "the second run resumed at step 2"


def test_second_click_crops_carry_a_wrong_previous_result_and_a_click_on_its_error(mini_glas):
    samples = load_glas_folder(mini_glas, source_mpp=0.62, model_mpp=1.24)
    ds = GuidedCropDataset(samples, 128, length=30, seed=2, channels=3, second_click=1.0)
    for i in range(8):
        _, maps, target = ds[i]
        assert maps.shape == (3, 128, 128)
        t, previous = target.numpy() == 1, maps[2].numpy() > 0
        marks = (maps[0].numpy() > 0) | (maps[1].numpy() > 0)
        assert previous.any() and (previous != t).any(), "the previous result is there, and wrong"
        assert (marks & (previous != t)).any(), "a corrective click lands on its error"
