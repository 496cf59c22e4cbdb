"""supervised.py: a step runs, the loss falls on a fixed batch, resume is exact, DDP equals one
process on the same global batch."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _train_helpers import TINY, max_abs_diff, weights

from napari_glandseg.train import supervised
from napari_glandseg.train.common import freeze_unused
from napari_glandseg.train.data import CropDataset
from napari_glandseg.train.loop import batch_at


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", json.dumps([str(data)]), "--out", str(out), "--val-fraction", "0", *TINY, *extra]


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("extra", [(), ("--separation-px", "4", "--separation-weight", "5")])
def test_one_step_runs_and_loss_is_finite(mini_glas, tmp_path, extra):
    assert supervised.main(_args(mini_glas, tmp_path, "--steps", "1", *extra)) == 0
    steps = [r for r in _log(tmp_path) if "loss" in r]
    assert len(steps) == 1 and math.isfinite(steps[0]["loss"])
    assert (tmp_path / "last.safetensors").exists() and (tmp_path / "last_state.pt").exists()


def test_loss_decreases_on_a_fixed_batch(mini_glas):
    cfg = supervised.FinetuneConfig(data=[str(mini_glas)], model="glandseg_tiny", crop_px=64, amp=False,
                                  val_fraction=0.0, device="cpu")
    torch.manual_seed(0)
    model = supervised.build_model(cfg)
    train, _ = supervised.load_samples(cfg, model.card.mpp)
    dataset = CropDataset(train, 64, length=100, seed=0)
    images, targets, tumor = batch_at(dataset, 0, 4, 0, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = [supervised.train_step(model, opt, images, targets, tumor, cfg, torch.device("cpu"))[0]
              for _ in range(8)]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses


def test_resume_gives_the_same_next_step(mini_glas, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    supervised.main(_args(mini_glas, straight, "--steps", "3"))
    supervised.main(_args(mini_glas, resumed, "--steps", "3", "--stop-at", "2"))
    assert json.loads((resumed / "last.json").read_text())  # a checkpoint was left at step 2
    supervised.main(_args(mini_glas, resumed, "--steps", "3"))
    assert max_abs_diff(weights(straight / "last.safetensors"), weights(resumed / "last.safetensors")) < 1e-6
    assert [r["step"] for r in _log(resumed) if "loss" in r] == [1, 2, 3]


class _Float64(torch.nn.Module):
    """The network in float64, for ``supervised.step_loss`` (which normalises, then calls forward)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net.double()

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.normalize(images).double()

    def forward(self, x: torch.Tensor, return_all: bool = False):
        return self.net(x, return_all=return_all)


def _gradients(cfg, batch, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """One process's gradients of ``supervised.step_loss`` on ``batch`` (the seeded initial model)."""
    torch.manual_seed(cfg.seed)  # as start_run does before the model is built
    net = supervised.build_model(cfg).train()
    freeze_unused(net)
    model = _Float64(net) if dtype == torch.float64 else net
    supervised.step_loss(model, *batch, cfg, torch.device("cpu"))[0].backward()
    return {n: p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None}


def _run_group(cmd: list[str], timeout_s: float) -> tuple[int, str]:
    """Run ``cmd`` in its own process group; on timeout the whole group (torchrun's workers too) is killed."""
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        pytest.fail(f"timed out after {timeout_s} s: {' '.join(cmd[:6])}…\n{stderr[-3000:]}")
    return proc.returncode, stderr


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process_on_the_global_batch(mini_glas, tmp_path):
    """2 ranks × batch 2 (gloo, CPU) == 1 process × batch 4, checked on the gradients.

    What DDP promises: after backward every rank holds the mean of the ranks' own gradients.
    That mean is one float32 addition per element, so it is exact to eps·(|g0| + |g1|) / 2.
    What finetune adds: the global batch's loss is the mean of the ranks' losses (same crops,
    per-sample loss means, GroupNorm, no dropout/drop-path, every parameter reduced), checked in
    float64 where summation order moves gradients by ~1e-15 of their scale, not by float32's
    ~1e-6. No optimizer is involved: AdamW's first step, lr·g/(|g|+eps), turns float32 noise on
    gradients that are mathematically zero into updates of a few % of lr on some CPUs.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).with_name("_ddp_grads.py")), *_args(mini_glas, tmp_path, "--steps", "1")]
    returncode, stderr = _run_group(cmd, timeout_s=400)
    assert returncode == 0, stderr[-3000:]
    ranks = [torch.load(tmp_path / f"grads_rank{r}.pt") for r in range(2)]
    # supervised.main itself ran one DDP step on the same launch
    assert any(r.get("world") == 2 for r in _log(tmp_path / "run") if r.get("event") == "start")
    assert (tmp_path / "run" / "last.safetensors").exists()

    cfg = supervised.FinetuneConfig(data=[str(mini_glas)], model="glandseg_tiny", crop_px=64, amp=False,
                                  val_fraction=0.0, device="cpu")
    train, _ = supervised.load_samples(cfg, supervised.build_model(cfg).card.mpp)
    dataset = CropDataset(train, cfg.crop_px, length=10**9, seed=cfg.seed, border_px=cfg.border_px)
    whole = batch_at(dataset, 0, 4, 0, 1)
    halves = [tuple(t[2 * r : 2 * r + 2] for t in whole) for r in range(2)]
    for r, rank in enumerate(ranks):  # each rank trained on its half of the global batch
        assert torch.equal(rank["images"], halves[r][0])

    eps32 = torch.finfo(torch.float32).eps
    local0, local1 = ranks[0]["local"], ranks[1]["local"]
    assert ranks[0]["reduced"].keys() == local0.keys() == local1.keys()
    for name, reduced in ranks[0]["reduced"].items():
        assert torch.equal(reduced, ranks[1]["reduced"][name]), f"{name}: the ranks hold different gradients"
        mean, size = (local0[name] + local1[name]) / 2, (local0[name].abs() + local1[name].abs()) / 2
        bound = eps32 * size + torch.finfo(torch.float32).tiny
        assert ((reduced - mean).abs() <= bound).all(), f"{name}: not the mean of the ranks' gradients"

    exact = _gradients(cfg, whole, torch.float64)
    parts = [_gradients(cfg, half, torch.float64) for half in halves]
    scale = max(float(g.abs().max()) for g in exact.values())
    assert scale > 0
    for name, g in exact.items():
        diff = float(((parts[0][name] + parts[1][name]) / 2 - g).abs().max())
        assert diff <= 2**20 * torch.finfo(torch.float64).eps * scale, f"{name}: {diff:.3g} (scale {scale:.3g})"
    # and so DDP's gradients are the single process's, to float32 precision
    for name, reduced in ranks[0]["reduced"].items():
        size = (local0[name].abs() + local1[name].abs()) / 2
        err = (reduced.double() - exact[name]).abs() - eps32 * size.double()
        assert float(err.max()) <= 2**12 * eps32 * scale, name


def test_unreviewed_pixels_do_not_change_loss_or_gradients(mini_glas):
    """Half-reviewed image (left half true labels, right half garbage): loss and gradients are the
    same whatever the garbage — including the border class next to the reviewed edge."""
    from _package import glas_image, half_reviewed, loss_and_grads

    from napari_glandseg.train.data import rescale_sample

    image, labels = glas_image(mini_glas)
    results = []
    for seed in (0, 1, 2):
        mixed, valid = half_reviewed(image, labels, seed)
        results.append(loss_and_grads([rescale_sample("half", image, mixed, valid, 0.5)]))
    assert 0.2 < results[0]["ignored_fraction"] < 0.8
    for other in results[1:]:
        assert other["loss"] == results[0]["loss"]
        assert max_abs_diff(results[0]["grads"], other["grads"]) == 0.0


def test_training_package_unreviewed_pixels_are_ignored(mini_glas, tmp_path):
    from _package import export_half_reviewed_package, loss_and_grads

    import napari_glandseg.labels.export  # noqa: F401 - an import error fails, never skips

    results = []
    for seed in (0, 1):
        pkg = export_half_reviewed_package(mini_glas, tmp_path / f"pkg{seed}", seed)
        cfg = supervised.FinetuneConfig(data=[str(pkg)], model="glandseg_tiny", crop_px=128)
        train, _ = supervised.load_samples(cfg, 1.24)
        assert train and not all(s.valid.all() for s in train)
        results.append(loss_and_grads(train))
    assert 0.1 < results[0]["ignored_fraction"] < 0.9
    assert results[1]["loss"] == results[0]["loss"]
    assert max_abs_diff(results[0]["grads"], results[1]["grads"]) == 0.0


def test_resumed_run_counts_the_time_it_trained_before(mini_glas, tmp_path):
    supervised.main(_args(mini_glas, tmp_path, "--steps", "4", "--stop-at", "1"))
    state_path = tmp_path / "last_state.pt"
    state = torch.load(state_path, weights_only=True)
    assert json.loads(state["extra"])["train_s"] > 0
    state["extra"] = json.dumps({**json.loads(state["extra"]), "train_s": 3600.0})  # it had trained an hour
    torch.save(state, state_path)
    supervised.main(_args(mini_glas, tmp_path, "--steps", "4", "--max-minutes", "30"))
    steps = [r["step"] for r in _log(tmp_path) if "loss" in r]
    assert steps == [1]  # its budget was spent: no step more (not 30 fresh minutes)
