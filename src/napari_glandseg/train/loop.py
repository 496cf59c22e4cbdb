"""The one training loop: fine-tuning, the guided model, SMIT pretraining and tumor-guided
distillation plug their objective (one step on one batch) into it. It owns the learning-rate
schedule, the step log, validation with best-checkpoint keeping, resume state (exact: batches
are pure functions of the step), the time budget, ``stop_at``, and hooks for progress and
cancel (the plugin's one-click fine-tune)."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from napari_glandseg.labels.folders import GLAS_MPP
from napari_glandseg.model import save_checkpoint
from napari_glandseg.train.common import (
    Logger,
    RunSettings,
    batch_stream,
    cosine_lr,
    freeze_unused,
    load_state,
    read_state_tensors,
    resumed_seconds,
    save_state,
    scheduled_step,
    unwrap,
)
from napari_glandseg.train.data import DataSource


@dataclass(frozen=True, kw_only=True)
class LoopSettings(RunSettings):
    """What the loop itself is set with (each script's config sets its own defaults)."""

    out: str = "runs/train"
    crop_px: int = 256
    batch_size: int = 8  # per process
    steps: int = 3000
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100

    def __post_init__(self):
        # the network takes multiples of 32 (its patch-4 path has strides 4 to 32)
        if self.crop_px % 32:
            raise ValueError(f"crop_px must be a multiple of 32, got {self.crop_px}")
        if self.batch_size < 1 or self.steps < 1:
            raise ValueError("batch_size and steps must be >= 1")


@dataclass(frozen=True)
class SupervisedSettings(LoopSettings):
    """What every supervised run (fine-tuning, the guided model) is set with."""

    data: list = field(default_factory=list)  # GlaS-style folders / training packages, or {path, mpp, weight}
    model: str = "glandseg_small"  # preset name (fresh) or checkpoint path
    init: str | None = None  # checkpoint whose matching weights start the run (e.g. pretrained encoders)
    data_mpp: float = GLAS_MPP  # µm/px of GlaS-style folders
    mpp: float | None = None  # train at this µm/px (default: the model card's)
    val_fraction: float = 0.15
    val_data: list = field(default_factory=list)  # explicit validation folders instead of a split
    dice_weight: float = 1.0
    deep_weights: list[float] = field(default_factory=lambda: [0.2, 0.1, 0.05])
    val_every: int = 250

    def __post_init__(self):
        if not self.data:
            raise ValueError("data: give at least one GlaS-style folder or training package")
        for entry in self.data:
            DataSource.parse(entry)
        super().__post_init__()


@dataclass
class LoopHooks:
    """``progress(step, total, record)`` after every step; ``cancelled()`` polled every step:
    when it says yes the loop saves its state and returns (a resumable stop)."""

    progress: Callable[[int, int, dict[str, Any]], None] | None = None
    cancelled: Callable[[], bool] | None = None


@dataclass
class LoopResult:
    step: int
    best: dict[str, Any]
    stopped: str  # "done", "time", "stop_at" or "cancelled"
    loss: float = float("nan")  # of the last step run (nan: none ran)


def run_loop(
    cfg, model, optimizer, stream: Iterator, step_fn: Callable[..., tuple[float, dict[str, float]]], *,
    step: int, best: dict[str, Any], out: Path, log: Logger, is_main: bool = True, world: int = 1,
    validate_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None, metric: str = "object_f1",
    provenance: dict[str, Any] | None = None, hooks: LoopHooks | None = None,
    net: torch.nn.Module | None = None, state_tensors: Callable[[], dict[str, torch.Tensor]] | None = None,
    keep: torch.nn.Module | None = None,
) -> LoopResult:
    """Train from ``step`` to ``cfg.steps`` (or the time budget / ``stop_at`` / cancel): each step
    calls ``step_fn(*next(stream))`` → (loss, parts). Keeps ``out/best`` on ``validate_fn``'s
    ``metric`` and ``out/last`` + resume state every ``cfg.save_every``.

    ``model`` is what trains (DDP-wrapped or not); ``net`` the network saved as the checkpoint
    (default: ``model`` unwrapped; pretraining trains a student around it); ``state_tensors()``
    gives further resume state saved with the step (an EMA teacher, heads, centers). ``keep``: the
    network ``out/best`` holds instead of ``net`` (the weights' running average, where the run keeps
    one; ``validate_fn`` then scores it), also written as ``out/average`` with every save.
    """
    hooks = hooks or LoopHooks()
    net = net if net is not None else unwrap(model)
    # the time budget and the schedule that follows it count the time the run trained before it was
    # stopped: a resumed run continues its schedule and stops when its budget is spent
    t_start = time.time() - (resumed_seconds(out) if step else 0.0)
    if step and isinstance(log, Logger):
        log.t0 = t_start  # the log's minutes are the run's too (compare_runs compares at equal minutes)
    if step and cfg.max_minutes is not None and (time.time() - t_start) / 60 > cfg.max_minutes:
        return LoopResult(step, best, "time")  # run again after its budget was spent: nothing to do
    tiles_done, t_window = 0, time.time()
    stopped, loss = "done", float("nan")
    run_record = {"command": " ".join(sys.argv), "config": dataclasses.asdict(cfg), **(provenance or {})}
    model.train()
    while step < cfg.steps:
        for group in optimizer.param_groups:
            lr = cosine_lr(scheduled_step(step, cfg, t_start), cfg.steps, cfg.lr, cfg.warmup_steps)
            group["lr"] = lr * group.get("lr_scale", 1.0)  # a group may learn at a multiple of the rate
        loss, parts = step_fn(*next(stream))
        step += 1
        tiles_done += cfg.batch_size * world
        record = {"step": step, "loss": round(loss, 4), **{k: round(v, 4) for k, v in parts.items()}}
        if step % cfg.log_every == 0:
            now = time.time()
            log(**record, lr=optimizer.param_groups[0]["lr"], tiles_per_s=round(tiles_done / (now - t_window), 2))
            tiles_done, t_window = 0, now
        if hooks.progress:
            hooks.progress(step, cfg.steps, record)
        if cfg.max_minutes is not None and (time.time() - t_start) / 60 > cfg.max_minutes:
            stopped = "time"
        elif cfg.stop_at is not None and step >= cfg.stop_at:
            stopped = "stop_at"
        elif hooks.cancelled and hooks.cancelled():
            stopped = "cancelled"
        last = step >= cfg.steps or stopped != "done"
        if is_main and validate_fn and (step % cfg.val_every == 0 or last):
            metrics = validate_fn(model)
            log(step=step, event="validation", **{k: round(v, 4) for k, v in metrics.items()})
            if metrics[metric] > best.get(metric, -1.0):
                best = {**metrics, "step": step}
                kept = keep if keep is not None else net
                save_checkpoint(kept, out / "best", card=kept.card.replace(provenance={**run_record, "validation": best}))
        if is_main and (step % cfg.save_every == 0 or last):
            save_state(out, net, optimizer, step, {"best": best, "loss": loss, "train_s": time.time() - t_start},
                       tensors=state_tensors() if state_tensors else None)
            if keep is not None:  # described as the run's, not as the model it started from
                save_checkpoint(keep, out / "average", card=keep.card.replace(provenance={**run_record, "step": step}))
        if stopped != "done":
            break
    return LoopResult(step, best, stopped, loss)


def resume_and_wrap(out: Path, net: torch.nn.Module, optimizer, world: int, *, trained: torch.nn.Module | None = None,
                    restore: Callable[[dict[str, torch.Tensor]], None] | None = None) -> tuple[torch.nn.Module, int, dict]:
    """(module to train, step, extra): ``net`` and the optimizer resumed from ``out`` (``restore``
    takes the further state tensors ``run_loop`` saved), parameters the forward never uses frozen
    (after the optimizer: its parameter list, the resume format, is unchanged), and ``trained``
    (default ``net``) wrapped for DDP when ``world`` > 1."""
    step, extra = load_state(out, net, optimizer)
    if step and restore is not None:
        restore(read_state_tensors(out))
    freeze_unused(net)
    trained = trained if trained is not None else net
    return (torch.nn.parallel.DistributedDataParallel(trained) if world > 1 else trained), step, extra


def batch_at(dataset, step: int, batch: int, rank: int = 0, world: int = 1) -> tuple:
    """The batch ``batch_stream`` gives ``rank`` at ``step`` (collated the same way): what a test
    or a DDP check compares with a run."""
    return tuple(next(batch_stream(dataset, step, batch, rank, world)))
