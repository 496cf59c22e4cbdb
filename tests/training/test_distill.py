"""distill.py (tumor-guided self-distillation): a step runs, the loss falls on a fixed batch,
resume is exact, and the result is a checkpoint fine-tuning can start from."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from _train_helpers import max_abs_diff, weights

from napari_glandseg.train import distill, pretrain
from napari_glandseg.train.data import CropDataset
from napari_glandseg.train.loop import LoopHooks, batch_at

TINY_DISTILL = ["--crop-px", "64", "--batch-size", "2", "--amp", "false", "--device", "cpu", "--threads", "1",
                "--log-every", "1", "--save-every", "1", "--val-fraction", "0.25"]


@pytest.fixture(scope="module")
def teacher_ckpt(mini_glas, tmp_path_factory) -> Path:
    """A 1-step SMIT pretraining of the tiny preset (checkpoint + heads)."""
    out = tmp_path_factory.mktemp("pretrained")
    pretrain.main(["--data", json.dumps([str(mini_glas)]), "--out", str(out), "--model", "glandseg_tiny",
                   "--crop-px", "64", "--batch-size", "2", "--amp", "false", "--device", "cpu", "--steps", "1",
                   "--out-dim", "64", "--head-hidden", "32", "--head-bottleneck", "16", "--mask-px", "16"])
    return out / "pretrained.safetensors"


def _args(data: Path, teacher: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", json.dumps([str(data)]), "--teacher", str(teacher), "--out", str(out), *TINY_DISTILL, *extra]


def test_one_step_runs_and_loss_is_finite(mini_glas, teacher_ckpt, tmp_path):
    assert distill.main(_args(mini_glas, teacher_ckpt, tmp_path, "--steps", "1")) == 0
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    step = next(r for r in rows if "loss" in r)
    assert all(math.isfinite(step[k]) for k in ("loss", "tumor_ce", "distill"))
    card = json.loads((tmp_path / "distilled.json").read_text())
    assert card["provenance"]["teacher"] == str(teacher_ckpt)
    assert 0.0 <= card["provenance"]["val_tumor_accuracy"] <= 1.0


def test_heads_come_from_pretraining(teacher_ckpt):
    cfg = distill.DistillConfig(data=["x"], teacher=str(teacher_ckpt), crop_px=64)
    _, student, _, centers = distill.build(cfg)
    heads = weights(teacher_ckpt.with_name("pretrained_heads.safetensors"))
    assert torch.equal(student.patch_head.prototypes, heads["patch_head.prototypes"])
    assert torch.equal(centers["image"], heads["center.image"])


def test_loss_decreases_on_a_fixed_batch(mini_glas, teacher_ckpt):
    # A fixed center makes the objective stationary on a fixed batch (a moving center moves the
    # teacher's target distributions, and with them the loss's floor).
    cfg = distill.DistillConfig(data=[str(mini_glas)], teacher=str(teacher_ckpt), crop_px=64, amp=False,
                                val_fraction=0.0, lr=5e-4, center_momentum=1.0)
    torch.manual_seed(0)
    net, student, teacher, centers = distill.build(cfg)
    train, _ = distill.load_graded(cfg, net.card.mpp)
    assert {s.tumor for s in train} == {0, 1}
    images, tumor = batch_at(distill.GradedCrops(CropDataset(train, 64, length=100, seed=0)), 0, 4, 0, 1)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr)
    losses = [distill.train_step(student, net, teacher, opt, images, tumor, centers, cfg, torch.device("cpu"))[0]
              for _ in range(10)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses


def test_resume_gives_the_same_next_step(mini_glas, teacher_ckpt, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    extra = ("--steps", "3", "--teacher-momentum", "0.9")  # an EMA teacher: its state must come back too
    distill.main(_args(mini_glas, teacher_ckpt, straight, *extra))
    distill.main(_args(mini_glas, teacher_ckpt, resumed, *extra, "--stop-at", "2"))
    distill.main(_args(mini_glas, teacher_ckpt, resumed, *extra))
    for name in ("last.safetensors", "distilled.safetensors", "distilled_heads.safetensors"):
        assert max_abs_diff(weights(straight / name), weights(resumed / name)) < 1e-6, name


def test_a_cancel_hook_stops_a_resumable_run(mini_glas, teacher_ckpt, tmp_path):
    """Progress and cancel reach distillation through the shared loop; the run resumes exactly."""
    straight, cancelled = tmp_path / "straight", tmp_path / "cancelled"
    extra = ("--steps", "3", "--teacher-momentum", "0.9")
    distill.main(_args(mini_glas, teacher_ckpt, straight, *extra))
    seen = []
    hooks = LoopHooks(progress=lambda step, total, record: seen.append(step), cancelled=lambda: seen == [1])
    assert distill.main(_args(mini_glas, teacher_ckpt, cancelled, *extra), hooks=hooks) == 0
    assert seen == [1]
    end = [json.loads(line) for line in (cancelled / "log.jsonl").read_text().splitlines()][-1]
    assert end["stopped"] == "cancelled" and end["step"] == 1
    distill.main(_args(mini_glas, teacher_ckpt, cancelled, *extra))
    for name in ("last.safetensors", "distilled.safetensors", "distilled_heads.safetensors"):
        assert max_abs_diff(weights(straight / name), weights(cancelled / name)) < 1e-6, name
