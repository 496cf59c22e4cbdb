"""pretrain.py (SMIT): masking hides pixels, a step runs, the loss falls on a fixed batch, resume
is exact, and fine-tuning can start from the result."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _train_helpers import TINY, max_abs_diff, weights

from napari_glandseg.model import create_model
from napari_glandseg.train import pretrain
from napari_glandseg.train.common import build_model
from napari_glandseg.train.loop import LoopHooks, batch_at
from napari_glandseg.train.smit import SMITStudent, TokenEncoder, random_mask

SMALL_HEADS = ["--out-dim", "64", "--head-hidden", "32", "--head-bottleneck", "16", "--mask-px", "16"]


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", json.dumps([str(data)]), "--out", str(out), *TINY, *SMALL_HEADS, *extra]


def test_masked_pixels_do_not_reach_the_encoder():
    """Changing only masked pixels leaves the student's tokens unchanged (patch-4 blocks, so
    path B's patch-8 tokens are partly masked: those are masked whole)."""
    torch.manual_seed(0)
    enc = TokenEncoder(create_model("glandseg_tiny")).eval()
    mask = random_mask(2, 64, 64, 4, 0.5, np.random.default_rng(0))
    x = torch.randn(2, 3, 64, 64)
    y = torch.where(mask[:, None], torch.randn_like(x), x)
    with torch.no_grad():
        assert torch.equal(enc(x, mask), enc(y, mask))
        assert not torch.equal(enc(x), enc(y))
    assert abs(mask.float().mean().item() - 0.5) < 1e-6  # exactly the ratio, per sample


def test_one_step_runs_and_loss_is_finite(mini_glas, tmp_path):
    assert pretrain.main(_args(mini_glas, tmp_path, "--steps", "1")) == 0
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    step = next(r for r in rows if "loss" in r)
    assert all(math.isfinite(step[k]) for k in ("loss", "mip", "mpd", "itd"))
    assert (tmp_path / "pretrained.safetensors").exists() and (tmp_path / "pretrained_heads.safetensors").exists()
    card = json.loads((tmp_path / "pretrained.json").read_text())
    assert card["provenance"]["script"].startswith("training/pretrain.py")


def test_loss_decreases_on_a_fixed_batch(mini_glas):
    cfg = pretrain.PretrainConfig(data=[str(mini_glas)], model="glandseg_tiny", crop_px=64, batch_size=4,
                                  mask_px=16, out_dim=64, head_hidden=32, head_bottleneck=16, amp=False,
                                  lr=2e-3, steps=100, center_momentum=1.0)  # stationary objective
    torch.manual_seed(0)
    net, student, teacher, centers = pretrain.build(cfg)
    from napari_glandseg.train.unlabeled import TwoViewDataset, load_image_folder

    dataset = TwoViewDataset(load_image_folder(mini_glas, source_mpp=0.62, model_mpp=1.24), [], 64)
    batch = batch_at(pretrain.MaskedViews(dataset, cfg), 0, cfg.batch_size)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr)
    losses = [pretrain.train_step(student, net, teacher, opt, batch, centers, cfg, s, torch.device("cpu"))[0]
              for s in range(10)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses


def test_resume_gives_the_same_next_step(mini_glas, tmp_path):
    """Weights, optimizer, EMA teacher, heads and centers all come back."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    pretrain.main(_args(mini_glas, straight, "--steps", "3"))
    pretrain.main(_args(mini_glas, resumed, "--steps", "3", "--stop-at", "2"))
    pretrain.main(_args(mini_glas, resumed, "--steps", "3"))
    for name in ("last.safetensors", "pretrained.safetensors", "pretrained_heads.safetensors"):
        assert max_abs_diff(weights(straight / name), weights(resumed / name)) < 1e-6, name


def test_a_cancel_hook_stops_a_resumable_run(mini_glas, tmp_path):
    """The shared loop's hooks reach pretraining: progress every step, a cancel saves the state,
    and the resumed run ends where an uncancelled one does."""
    straight, cancelled = tmp_path / "straight", tmp_path / "cancelled"
    pretrain.main(_args(mini_glas, straight, "--steps", "3"))
    seen = []
    hooks = LoopHooks(progress=lambda step, total, record: seen.append((step, total, record["loss"])),
                      cancelled=lambda: len(seen) >= 2)
    assert pretrain.main(_args(mini_glas, cancelled, "--steps", "3"), hooks=hooks) == 0
    assert [(s, t) for s, t, _ in seen] == [(1, 3), (2, 3)] and all(math.isfinite(v) for *_, v in seen)
    end = [json.loads(line) for line in (cancelled / "log.jsonl").read_text().splitlines()][-1]
    assert end["event"] == "end" and end["stopped"] == "cancelled" and end["step"] == 2
    pretrain.main(_args(mini_glas, cancelled, "--steps", "3"))
    for name in ("last.safetensors", "pretrained.safetensors", "pretrained_heads.safetensors"):
        assert max_abs_diff(weights(straight / name), weights(cancelled / name)) < 1e-6, name


def test_finetune_init_takes_the_pretrained_encoders(mini_glas, tmp_path):
    pretrain.main(_args(mini_glas, tmp_path, "--steps", "1"))
    pre = weights(tmp_path / "pretrained.safetensors")
    net = build_model("glandseg_tiny", crop_px=64, init=str(tmp_path / "pretrained.safetensors"))
    own = net.state_dict()
    enc_keys = [k for k in pre if k.startswith(("swin_a.", "swin_b.", "fusion."))]
    assert enc_keys and all(torch.equal(own[k], pre[k]) for k in enc_keys)


def test_student_module_uses_every_trainable_parameter():
    """DDP without find_unused_parameters needs a gradient for every trainable parameter."""
    from napari_glandseg.train.common import freeze_unused

    net = create_model("glandseg_tiny")
    student = SMITStudent(net, out_dim=16, hidden=16, bottleneck=8)
    freeze_unused(net)
    x = torch.randn(2, 3, 64, 64)
    out = student(x, random_mask(2, 64, 64, 16, 0.5, np.random.default_rng(0)))
    (out["patch"].sum() + out["image"].sum() + out["recon"].sum()).backward()
    assert [n for n, p in student.named_parameters() if p.requires_grad and p.grad is None] == []


def test_unlabeled_sources_take_their_own_mpp_weight_and_holdout(mini_glas, shared_data):
    from napari_glandseg.labels.folders import validation_names
    from napari_glandseg.train.unlabeled import load_unlabeled

    rings = shared_data / "rings" / "glands"
    images, slides, weights = load_unlabeled(
        [str(mini_glas), {"path": str(rings), "mpp": 2.72, "weight": 50.0}], crop_px=64, model_mpp=1.24,
        data_mpp=0.62, slide_mpp=None, seed=0, max_tiles_per_slide=10, holdout=0.25)
    n_rings = len(list((rings / "images").iterdir())) - len(validation_names(rings, 0.25, 0))
    assert len(images) == 3 + n_rings and weights == [1.0] * 3 + [50.0] * n_rings and slides == []
    from napari_glandseg.labels.masks import read_image

    def heights(folder, mpp):
        held = validation_names(folder, 0.25, 0)
        return sorted(read_image(p).shape[0] * mpp / 1.24 for p in (folder / "images").iterdir() if p.stem not in held)

    # GlaS at 0.62 -> 1.24 µm/px, RINGS at its own 2.72 µm/px
    for got, want in zip(sorted(i.shape[0] for i in images[:3]) + sorted(i.shape[0] for i in images[3:]),
                         heights(mini_glas, 0.62) + heights(rings, 2.72), strict=True):
        assert abs(got - want) <= 1


def test_two_view_regions_follow_the_image_weights():
    from napari_glandseg.train.unlabeled import TwoViewDataset

    images = [np.full((100, 100, 3), v, np.uint8) for v in (10, 200)]  # told apart by their value
    ds = TwoViewDataset(images, [], 64, seed=0, image_weights=[1.0, 50.0], augment=False)
    rng = np.random.default_rng(0)
    drawn = [int(ds._region(rng)[0, 0, 0]) for _ in range(400)]
    assert 0.9 < drawn.count(200) / len(drawn) < 1.0  # 50 : 1, and the light one is still drawn
    equal = TwoViewDataset(images, [], 64, seed=0, augment=False)
    drawn = [int(equal._region(rng)[0, 0, 0]) for _ in range(400)]
    assert 0.4 < drawn.count(200) / len(drawn) < 0.6
    with pytest.raises(ValueError, match="2 image weights for 1 images"):
        TwoViewDataset(images[:1], [], 64, image_weights=[1.0, 2.0])
