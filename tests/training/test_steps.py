"""Update safety, grade labels and the settings shared by the training loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_glandseg.train.common import optimizer_step
from napari_glandseg.train.data import CropDataset, Sample
from napari_glandseg.train.distill import TUMOUR_FROM_MASK, DistillConfig, GradedCrops
from napari_glandseg.train.pretrain import PretrainConfig
from napari_glandseg.train.supervised import FinetuneConfig


def test_a_non_finite_loss_skips_the_update():
    layer = torch.nn.Linear(3, 1)
    opt = torch.optim.AdamW(layer.parameters(), lr=0.1)
    before = [p.detach().clone() for p in layer.parameters()]
    loss = layer(torch.ones(1, 3)).sum() * float("nan")
    assert optimizer_step(layer, opt, loss, 1.0) is False
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters(), strict=True))
    assert optimizer_step(layer, opt, layer(torch.ones(1, 3)).sum(), 1.0) is True
    assert not all(torch.equal(a, b) for a, b in zip(before, layer.parameters(), strict=True))


def test_tumour_masks_grade_each_crop():
    image = np.full((64, 128, 3), 200, np.uint8)
    labels = np.zeros((64, 128), np.int32)
    labels[:, :64] = 1  # left half tumour
    sample = Sample("t", image, labels, np.ones_like(labels, bool), tumor=TUMOUR_FROM_MASK)
    crops = GradedCrops(CropDataset([sample], 32, length=200, seed=0, augment=False))
    grades = {int(crops[i][1]) for i in range(200)}
    assert grades == {-1, 0, 1}, "all-tumour crops are 1, tumour-free ones 0, mixed ones unknown"


@pytest.mark.parametrize("config, needs", [
    (FinetuneConfig, {"data": ["x"]}), (PretrainConfig, {"data": ["x"]}), (DistillConfig, {"data": ["x"], "teacher": "t"}),
])
def test_every_training_config_checks_the_loop_settings_alike(config, needs):
    """crop_px, batch_size and steps are the shared loop's, checked once for every script."""
    config(**needs, crop_px=64)
    for bad, says in (({"crop_px": 48}, "crop_px must be a multiple of 32"), ({"batch_size": 0}, "must be >= 1"),
                      ({"steps": 0}, "must be >= 1")):
        with pytest.raises(ValueError, match=says):
            config(**needs, **bad)


def test_a_list_setting_from_the_command_line_is_one_item_or_a_yaml_list(tmp_path):
    from napari_glandseg.train.common import parse_config
    from napari_glandseg.train.supervised import FinetuneConfig

    (tmp_path / "c.yaml").write_text("data: [a, b]\nsteps: 5\n")
    base = ["--config", str(tmp_path / "c.yaml")]
    assert parse_config(FinetuneConfig, base, "").data == ["a", "b"]
    assert parse_config(FinetuneConfig, [*base, "--data", "/runs/pkg"], "").data == ["/runs/pkg"]
    assert parse_config(FinetuneConfig, [*base, "--data", "[x, y]", "--steps", "7"], "").data == ["x", "y"]
    assert parse_config(FinetuneConfig, [*base, "--out", "/runs/o"], "").out == "/runs/o"  # not a list field
    assert parse_config(FinetuneConfig, [*base, "--deep-weights", "0.5"], "").deep_weights == [0.5]
    assert parse_config(FinetuneConfig, [*base, "--data", "{path: x, mpp: 1}"], "").data == [{"path": "x", "mpp": 1}]


def test_a_number_setting_written_without_a_dot_is_a_number_and_a_word_is_an_error(tmp_path, capsys):
    from napari_glandseg.train.common import parse_config
    from napari_glandseg.train.supervised import FinetuneConfig

    (tmp_path / "c.yaml").write_text("data: [a]\nlr: 2e-4\nmax_minutes: 60\n")  # YAML 1.1: "2e-4" is a string
    base = ["--config", str(tmp_path / "c.yaml")]
    cfg = parse_config(FinetuneConfig, base, "")
    assert cfg.lr == pytest.approx(2e-4) and isinstance(cfg.lr, float) and cfg.max_minutes == 60.0
    assert parse_config(FinetuneConfig, [*base, "--lr", "5e-5"], "").lr == pytest.approx(5e-5)
    for flag, value, says in (("--lr", "fast", "'lr': expected a number"),
                              ("--steps", "2.5", "'steps': expected a whole number")):
        with pytest.raises(SystemExit):
            parse_config(FinetuneConfig, [*base, flag, value], "")
        assert says in capsys.readouterr().err
