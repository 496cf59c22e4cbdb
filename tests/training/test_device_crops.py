"""Crops made on the training device (train.device_crops) against the CPU loader's own functions,
the samples file a GPU machine trains from, and a run that uses both."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from _train_helpers import TINY
from scipy import ndimage as ndi

from napari_glandseg.train import supervised
from napari_glandseg.train.common import optimizer_step
from napari_glandseg.train.data import (
    IGNORE,
    SEPARATION,
    CropDataset,
    hed_jitter,
    load_glas_folder,
    make_targets,
    reviewed_labels,
)
from napari_glandseg.train.device_crops import (
    DeviceCrops,
    device_targets,
    gaussian_blur,
    hed_jitter_batch,
)
from napari_glandseg.train.sample_cache import read_samples, write_samples


@pytest.fixture(scope="module")
def samples(mini_glas):
    return load_glas_folder(mini_glas, source_mpp=0.62, model_mpp=1.24)


@pytest.mark.parametrize(("border_px", "separation_px"), [(2, 0), (2, 5), (3, 2)])
def test_targets_equal_make_targets(samples, border_px, separation_px):
    s = samples[0]
    valid = np.ones(s.labels.shape, bool)
    valid[:40, :] = False  # a stripe nobody reviewed: IGNORE there, the rest as make_targets says
    expected = make_targets(s.labels, valid, border_px, separation_px)
    labels = reviewed_labels(s.labels, valid)  # what DeviceCrops does to each image once
    got = device_targets(torch.from_numpy(labels)[None], torch.from_numpy(valid)[None], border_px, separation_px)
    assert got.shape == (1, *labels.shape) and got.dtype == torch.uint8
    np.testing.assert_array_equal(got[0].numpy(), expected)
    if separation_px:
        assert (expected >= SEPARATION).any() and (expected == IGNORE).any()


def test_stain_jitter_equals_the_cpu_loaders(samples):
    image = samples[1].image[:96, :128].copy()
    rng = np.random.default_rng(3)
    expected = hed_jitter(image, rng)
    rng = np.random.default_rng(3)
    alpha, beta = rng.uniform(0.95, 1.05, 3), rng.uniform(-0.02, 0.02, 3)
    got = hed_jitter_batch(torch.from_numpy(image)[None], torch.tensor(alpha, dtype=torch.float32)[None],
                           torch.tensor(beta, dtype=torch.float32)[None])[0].numpy()
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert np.abs(got.astype(int) - image).max() > 0  # the jitter did something


@pytest.mark.parametrize("sigma", [0.3, 0.8, 1.2])
def test_blur_equals_scipys(samples, sigma):
    image = samples[2].image[:64, :80].copy()
    expected = ndi.gaussian_filter(image.astype(np.float32), (sigma, sigma, 0)).clip(0, 255).astype(np.uint8)
    got = gaussian_blur(torch.from_numpy(image), sigma).numpy()
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_batches_are_a_function_of_the_step(samples):
    crops = DeviceCrops(samples, 64, "cpu", seed=5, separation_px=3)
    images, targets, tumor = crops.batch(7, 4)
    assert images.shape == (4, 64, 64, 3) and images.dtype == torch.uint8
    assert targets.shape == (4, 64, 64) and targets.dtype == torch.int64
    assert set(torch.unique(targets).tolist()) <= {0, 1, 2, SEPARATION, SEPARATION + 1, SEPARATION + 2, IGNORE}
    assert set(tumor.tolist()) <= {0, 1}
    again = DeviceCrops(samples, 64, "cpu", seed=5, separation_px=3).batch(7, 4)
    assert all(torch.equal(a, b) for a, b in zip((images, targets, tumor), again, strict=True))
    other = crops.batch(8, 4)
    assert not torch.equal(images, other[0])
    rank1 = crops.batch(7, 4, rank=1, world=2)
    assert not torch.equal(images, rank1[0])


def test_a_crop_over_the_edge_equals_the_cpu_loaders(samples):
    # GlaS images are ≈ 390 × 260 px at 1.24 µm/px: a 512-px crop without augmentation sits at
    # (0, 0) and hangs over two edges, in both loaders alike
    for s in samples[:2]:
        expected = CropDataset([s], 512, length=1, augment=False, separation_px=3)[0]
        got = DeviceCrops([s], 512, "cpu", augment=False, separation_px=3).batch(0, 1)
        np.testing.assert_array_equal(got[0][0].numpy(), expected[0].numpy())
        np.testing.assert_array_equal(got[1][0].numpy(), expected[1].numpy())  # no border where a gland meets the edge
        assert (expected[1] == IGNORE).float().mean() > 0.3 and got[2][0] == expected[2]


def test_crops_beyond_an_edge_are_white_background_with_pad_background(samples):
    crops = DeviceCrops(samples[:1], 512, "cpu", seed=0, augment=False, pad_background=True)
    h, w = samples[0].labels.shape
    for step in range(4):
        images, targets, _ = crops.batch(step, 1)
        outside = (images[0] == 255).all(-1) & (targets[0] == 0)
        assert outside.sum() >= 512 * 512 - h * w  # everything beyond the image: white, background
        assert not (targets[0] == IGNORE).any()


def test_samples_file_round_trip_and_bad_files(samples, tmp_path):
    path = tmp_path / "samples.npz"
    samples = [dataclasses.replace(s, organ="colon" if i % 2 else None) for i, s in enumerate(samples)]
    write_samples(path, samples[:3], samples[3:], mpp=1.24)
    train, val, header = read_samples(path)
    assert header["mpp"] == 1.24 and [s.name for s in train + val] == [s.name for s in samples]
    for a, b in zip(train + val, samples, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.valid, b.valid)
        assert (a.tumor, a.weight, a.organ) == (b.tumor, b.weight, b.organ)
    assert not list(tmp_path.glob("*.partial"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz: cannot read"):
        read_samples(bad)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz: cannot read the samples file: not a samples file"):
        read_samples(tmp_path / "other.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.npz: cannot read the samples file"):
        read_samples(truncated)


def test_a_run_trains_from_a_samples_file_with_crops_on_the_device(mini_glas, samples, tmp_path):
    path = tmp_path / "samples.npz"
    samples = [dataclasses.replace(s, organ="colon" if i % 2 else None) for i, s in enumerate(samples)]
    write_samples(path, samples[:3], samples[3:], mpp=1.24)
    out = tmp_path / "run"
    args = ["--data", json.dumps([str(tmp_path / "not_here")]), "--samples", str(path), "--crops-on-device", "true",
            "--out", str(out), "--steps", "2", "--val-every", "2", "--separation-px", "3", *TINY]
    assert supervised.main(args) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[0]["train_images"] == 3 and log[0]["val_images"] == 1
    assert all(math.isfinite(r["loss"]) and r["skipped"] == 0.0 for r in log if "loss" in r)
    assert any(r.get("event") == "validation" for r in log) and (out / "best.safetensors").exists()
    write_samples(path, samples[:3], samples[3:], mpp=0.62)
    with pytest.raises(ValueError, match="samples.npz: samples at 0.62 µm/px"):  # not the model's µm/px
        supervised.main(args)


def test_a_non_finite_gradient_skips_the_update():
    layer = torch.nn.Linear(2, 1)
    before = [p.detach().clone() for p in layer.parameters()]
    opt = torch.optim.AdamW(layer.parameters(), lr=0.1)
    out = layer(torch.ones(1, 2)).sum()
    loss = torch.sqrt(out - out.detach())  # 0, with an infinite gradient
    assert math.isfinite(float(loss.detach()))
    assert optimizer_step(layer, opt, loss, 1.0) is False
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters(), strict=True))
    loss = (layer(torch.ones(1, 2)) ** 2).sum()
    assert optimizer_step(layer, opt, loss, 1.0) is True
    assert not all(torch.equal(a, b) for a, b in zip(before, layer.parameters(), strict=True))
