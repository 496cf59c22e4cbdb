"""Supervised gland segmentation training from a YAML config (fine-tuning or from scratch).

The ML engineer's trainer behind ``training/finetune.py`` and ``training/gpu_recipe.py``; not what
``glandseg finetune`` and the viewer's "Fine-tune on my corrections" run (that is
``train.corrections``, on a pathologist's reviewed regions).

Data: GlaS-style folders (images/*.png + masks/*.png) and/or training packages exported by the
plugin (manifest.json; only reviewed pixels count). Loss: Dice + cross-entropy over background /
gland / border with deep supervision (+ the tumor head where grades are known). The best
checkpoint on validation object F1 is kept; runs resume from their last checkpoint.

    python training/finetune.py --config training/configs/default_small.yaml
    torchrun --nproc_per_node=2 training/finetune.py --config ... --out runs/x
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_glandseg.train import common as _common
from napari_glandseg.train.common import (
    autocast,
    batch_stream,
    cleanup_distributed,
    optimizer_step,
    parse_config,
    save_resolved_config,
    start_run,
    unwrap,
    validate,
)
from napari_glandseg.train.data import CropDataset, Sample, load_split
from napari_glandseg.train.loop import LoopHooks, SupervisedSettings, resume_and_wrap, run_loop
from napari_glandseg.train.losses import segmentation_loss, tumor_loss
from napari_glandseg.train.weight_average import WeightAverage


@dataclass(frozen=True)
class FinetuneConfig(SupervisedSettings):
    out: str = "runs/finetune"
    tumor_weight: float = 0.1
    border_px: int = 2
    pad_background: bool = False  # crops may hang over an image's edge: white background there
    # the share of crops cut by a straight tissue edge with glass beyond it (train.data.cut_by_glass)
    cut_edges: float = 0.0
    # pixels with two glands within separation_px weigh separation_weight in the cross-entropy
    # (0: off); where neighbouring glands are merged, that is where a model is wrong
    separation_px: int = 0
    separation_weight: float = 10.0  # U-Net's w0
    # a samples file (training/pack_samples.py) read instead of ``data``: the same split on a
    # machine without ../shared or the slide readers
    samples: str | None = None
    # crops cut, augmented and labelled on the training device (train.device_crops): what keeps a
    # GPU busy. Not on a CPU: there it takes 29 ms a 256-px crop against the loader's 7 (one thread)
    crops_on_device: bool = False
    # > 0: keep a running average of the weights (train.weight_average; e.g. 0.998, a half-life of
    # about 350 steps); validation scores it and ``best`` holds it. 0: the step's own weights
    ema_decay: float = 0.0
    # add a distance head to the model the run starts from (if it has none): each gland's depth,
    # from whose cores touching glands are seeded apart (train.distance_target); its loss weighs
    distance_head: bool = False
    distance_weight: float = 1.0
    distance_lr_scale: float = 10.0  # the distance head's own weights learn at this multiple of lr


def load_samples(cfg: FinetuneConfig, model_mpp: float) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples at the model's µm/px."""
    if cfg.samples:
        from napari_glandseg.train.sample_cache import read_samples

        train, val, header = read_samples(Path(cfg.samples))
        if abs(header["mpp"] - model_mpp) > 1e-6:
            raise ValueError(f"{cfg.samples}: samples at {header['mpp']} µm/px, the model takes {model_mpp}")
        print(f"{cfg.samples}: {len(train)} training and {len(val)} validation samples, packed from "
              f"{header.get('data')} (val_fraction {header.get('val_fraction')}, seed {header.get('seed')}); "
              "the config's data and split are not read", file=sys.stderr)
        return train, val
    return load_split(cfg.data, cfg.val_data, data_mpp=cfg.data_mpp, model_mpp=model_mpp,
                      val_fraction=cfg.val_fraction, seed=cfg.seed)


def build_model(cfg: FinetuneConfig):
    net = _common.build_model(cfg.model, crop_px=cfg.crop_px, mpp=cfg.mpp, init=cfg.init)
    return _common.add_distance_head(net).to(memory_format=torch.channels_last) if cfg.distance_head else net


def step_loss(model, images, targets, tumor, cfg: FinetuneConfig, device: torch.device):
    """The training loss of one batch (a tensor) and its parts (floats)."""
    net = unwrap(model)
    x = net.normalize(images.to(device))
    with autocast(device, cfg.amp):
        out = model(x, return_all=True)
    loss, parts = segmentation_loss(out, targets.to(device), dice_weight=cfg.dice_weight,
                                    deep_weights=tuple(cfg.deep_weights), separation_weight=cfg.separation_weight,
                                    distance_weight=cfg.distance_weight)
    # Always in the graph (weight 0 included) so DDP sees every parameter used.
    t_loss = tumor_loss(out, tumor.to(device))
    parts["tumor"] = float(t_loss.detach())
    return loss + cfg.tumor_weight * t_loss, parts


def train_step(model, optimizer, images, targets, tumor, cfg: FinetuneConfig, device: torch.device,
               average: WeightAverage | None = None):
    loss, parts = step_loss(model, images, targets, tumor, cfg, device)
    # a step skipped for a non-finite loss or gradient shows in the log (1.0), not only in the weights
    parts["skipped"] = float(not optimizer_step(model, optimizer, loss, 1.0))
    if average is not None and not parts["skipped"]:  # a skipped step changed no weight: nothing to average
        average.update(unwrap(model))
    return float(loss.detach()), parts


def crop_stream(cfg: FinetuneConfig, train: list[Sample], device: torch.device, step: int, rank: int, world: int,
                distance: bool = False):
    """The run's batches from ``step`` on: made on the device, or by the loader's workers;
    ``distance``: with the distance head's targets."""
    crops = {"seed": cfg.seed, "border_px": cfg.border_px, "pad_background": cfg.pad_background,
             "separation_px": cfg.separation_px, "cut_edges": cfg.cut_edges}
    if distance and cfg.crops_on_device:
        raise ValueError("crops_on_device makes no distance targets yet: a model with a distance head "
                         "trains on the loader's crops (crops_on_device: false)")
    if cfg.crops_on_device:
        from napari_glandseg.train.device_crops import DeviceCrops

        return DeviceCrops(train, cfg.crop_px, device, **crops).stream(step, cfg.batch_size, rank, world)
    dataset = CropDataset(train, cfg.crop_px, length=10**9, distance=distance, **crops)
    return batch_stream(dataset, step, cfg.batch_size, rank, world, cfg.workers)


def main(argv: list[str] | None = None, hooks: LoopHooks | None = None) -> int:
    cfg = parse_config(FinetuneConfig, argv, __doc__)
    device, dist_info, out, log = start_run(cfg)

    model = build_model(cfg).to(device)
    card = model.card
    train, val = load_samples(cfg, card.mpp)
    optimizer = torch.optim.AdamW(_common.parameter_groups(model, cfg.distance_lr_scale), lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    net = model
    model, step, extra = resume_and_wrap(
        out, model, optimizer, dist_info.world,
        restore=(lambda tensors: average.restore(tensors, net)) if average else None)
    best = extra.get("best", {"object_f1": -1.0})
    if dist_info.is_main:
        save_resolved_config(cfg, out)
        log(event="start", step=step, train_images=len(train), val_images=len(val), mpp=card.mpp,
            world=dist_info.world, params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 2))
    stream = crop_stream(cfg, train, device, step, dist_info.rank, dist_info.world, distance=net.distance_head)
    result = run_loop(
        cfg, model, optimizer, stream,
        lambda images, targets, tumor: train_step(model, optimizer, images, targets, tumor, cfg, device, average),
        step=step, best=best, out=out, log=log, is_main=dist_info.is_main, world=dist_info.world,
        validate_fn=(lambda m: validate(average.net if average else m, val, device, cfg.amp)) if val else None,
        provenance={"data": cfg.data}, hooks=hooks,
        state_tensors=average.state_tensors if average else None, keep=average.net if average else None,
    )
    if dist_info.is_main:
        log(event="end", step=result.step, stopped=result.stopped, best=json.dumps(result.best))
    cleanup_distributed()
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
