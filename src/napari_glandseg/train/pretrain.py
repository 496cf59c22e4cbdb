"""Self-supervised pretraining of both encoders (SMIT: masked image modeling + self-distillation).

Unlabeled tiles (image folders — GlaS images, masks ignored — and/or slide files, tiles over
tissue) are cut at the model's µm/px. L = L_MIP + λ_MPD·L_MPD + λ_ITD·L_ITD (see smit.py).
Writes ``OUT/pretrained.safetensors/.json`` (the EMA teacher's encoders in a full network:
start fine-tuning from it with ``finetune.py --init OUT/pretrained.safetensors``) and
``OUT/pretrained_heads.safetensors`` (projection heads and centers, for distill.py).

    python training/pretrain.py --config training/configs/pretrain_small.yaml
    torchrun --nproc_per_node=2 training/pretrain.py --config ... --out runs/x
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from napari_glandseg._atomic import atomic_path
from napari_glandseg.model import save_checkpoint
from napari_glandseg.train.common import (
    RunSettings,
    batch_stream,
    build_model,
    cleanup_distributed,
    cosine_lr,
    freeze_unused,
    load_state,
    optimizer_step,
    parse_config,
    read_state_tensors,
    save_resolved_config,
    save_state,
    scheduled_step,
    start_run,
    unwrap,
)
from napari_glandseg.train.smit import (
    SMITStudent,
    ema_momentum,
    ema_update,
    make_teacher,
    random_mask,
    smit_losses,
    update_center,
)
from napari_glandseg.train.unlabeled import TwoViewDataset, load_unlabeled


@dataclass(frozen=True)
class PretrainConfig(RunSettings):
    data: list[str] = field(default_factory=list)  # image folders (GlaS-style or plain) and/or slides
    out: str = "runs/pretrain"
    model: str = "glandseg_small"  # preset name (fresh) or checkpoint path
    init: str | None = None  # checkpoint whose matching weights start the run
    data_mpp: float = 0.62  # µm/px of the images in folders (GlaS: ~0.62)
    slide_mpp: float | None = None  # override for slides without µm/px
    mpp: float | None = None  # train at this µm/px (default: the model card's)
    crop_px: int = 256
    batch_size: int = 8  # per process; each sample is two views
    steps: int = 2000
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    mask_ratio: float = 0.6
    mask_px: int = 32  # masking block side in px (a multiple of 4; 32 = one deep token)
    out_dim: int = 1024  # prototypes of the projection heads
    head_hidden: int = 512
    head_bottleneck: int = 128
    teacher_temp: float = 0.04
    student_temp: float = 0.1
    center_momentum: float = 0.9
    ema_momentum: float = 0.996  # teacher EMA momentum at step 0 (cosine to 1)
    lambda_mpd: float = 0.1
    lambda_itd: float = 0.1
    max_tiles_per_slide: int = 2000

    def __post_init__(self):
        if not self.data:
            raise ValueError("data: give at least one image folder or slide")
        if self.crop_px % 32:
            raise ValueError(f"crop_px must be a multiple of 32, got {self.crop_px}")
        if self.mask_px % 4 or self.crop_px % self.mask_px:
            raise ValueError(f"mask_px must be a multiple of 4 dividing crop_px, got {self.mask_px}")
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.batch_size < 1 or self.steps < 1:
            raise ValueError("batch_size and steps must be >= 1")


def build(cfg: PretrainConfig):
    """(network, student, teacher, centers); the student shares the network's encoders."""
    net = build_model(cfg.model, crop_px=cfg.crop_px, mpp=cfg.mpp, init=cfg.init)
    student = SMITStudent(net, out_dim=cfg.out_dim, hidden=cfg.head_hidden, bottleneck=cfg.head_bottleneck)
    teacher = make_teacher(student)
    centers = {"patch": torch.zeros(cfg.out_dim), "image": torch.zeros(cfg.out_dim)}
    return net, student, teacher, centers


class MaskedViews(torch.utils.data.Dataset):
    """Two views of a region and a random block mask for each: pure functions of the index."""

    def __init__(self, views: TwoViewDataset, cfg: PretrainConfig):
        self.views, self.cfg = views, cfg

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, i: int):
        cfg = self.cfg
        v1, v2 = self.views[i]
        m = random_mask(2, cfg.crop_px, cfg.crop_px, cfg.mask_px, cfg.mask_ratio, np.random.default_rng([cfg.seed, 7919, i]))
        return v1, v2, m[0], m[1]


def batch_at(dataset: MaskedViews, step: int, cfg: PretrainConfig, rank: int, world: int):
    """Views and masks of ``step`` for ``rank``: pure functions of the global sample index."""
    start = (step * world + rank) * cfg.batch_size
    items = [dataset[i] for i in range(start, start + cfg.batch_size)]
    return tuple(torch.stack([it[k] for it in items]) for k in range(4))


def train_step(model, net, teacher, optimizer, batch, centers, cfg: PretrainConfig, step: int, device):
    """One optimisation step, then the teacher EMA and center updates.

    ``model``: the student (DDP-wrapped or not); ``net``: the network (for its normalisation).
    """
    v1, v2, m1, m2 = (t.to(device) for t in batch)
    norm = net.normalize
    terms, t_out = smit_losses(model, teacher, norm(v1), norm(v2), m1, m2, centers,
                               t_temp=cfg.teacher_temp, s_temp=cfg.student_temp, amp=cfg.amp)
    loss = (terms["mip"] + cfg.lambda_mpd * terms["mpd"] + cfg.lambda_itd * terms["itd"]).mean()
    optimizer_step(model, optimizer, loss, 3.0)
    ema_update(teacher, unwrap(model), ema_momentum(step, cfg.steps, cfg.ema_momentum))
    update_center(centers["patch"], t_out["patch"], cfg.center_momentum)
    update_center(centers["image"], t_out["image"], cfg.center_momentum)
    return float(loss.detach()), {k: float(v.detach().mean()) for k, v in terms.items()}


def aux_tensors(student, teacher, centers) -> dict[str, torch.Tensor]:
    """What resuming needs beyond the network and the optimizer."""
    state = {f"student.{k}": v for k, v in unwrap(student).state_dict().items()}
    state.update({f"teacher.{k}": v for k, v in teacher.state_dict().items()})
    state.update({f"center.{k}": v for k, v in centers.items()})
    return state


def restore_aux(tensors: dict[str, torch.Tensor], student, teacher, centers) -> None:
    for prefix, module in (("student.", unwrap(student)), ("teacher.", teacher)):
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    for k in centers:
        centers[k].copy_(tensors[f"center.{k}"])


def export(out: Path, stem: str, net, source, centers, provenance: dict) -> Path:
    """``source``'s encoders (pretraining: the EMA teacher, as DINO/iBOT do) in a copy of the
    full network, plus its projection heads and the centers."""
    export_net = copy.deepcopy(net).cpu()
    enc = source.encoder
    for name in ("swin_a", "swin_b", "fusion"):
        getattr(export_net, name).load_state_dict(getattr(enc, name).state_dict())
    path, _ = save_checkpoint(export_net, out / stem, card=net.card.replace(provenance=provenance))
    heads = {f"{h}.{k}": v.detach().cpu().contiguous() for h in ("patch_head", "image_head")
             for k, v in getattr(source, h).state_dict().items()}
    heads.update({f"center.{k}": v.cpu() for k, v in centers.items()})
    with atomic_path(out / f"{stem}_heads.safetensors") as tmp:
        save_file(heads, str(tmp))
    return path


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(PretrainConfig, argv, __doc__)
    device, dist_info, out, log = start_run(cfg)

    net, student, teacher, centers = build(cfg)
    net, student, teacher = net.to(device), student.to(device), teacher.to(device)
    centers = {k: v.to(device) for k, v in centers.items()}
    images, slides = load_unlabeled(cfg.data, crop_px=cfg.crop_px, model_mpp=net.card.mpp,
                                    data_mpp=cfg.data_mpp, slide_mpp=cfg.slide_mpp, seed=cfg.seed,
                                    max_tiles_per_slide=cfg.max_tiles_per_slide)
    dataset = MaskedViews(TwoViewDataset(images, slides, cfg.crop_px, seed=cfg.seed), cfg)
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, _ = load_state(out, net, optimizer)
    if step:
        restore_aux({k: v.to(device) for k, v in read_state_tensors(out).items()}, student, teacher, centers)
    freeze_unused(net)
    model = student
    if dist_info.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(student)
    if dist_info.is_main:
        save_resolved_config(cfg, out)
        log(event="start", step=step, images=len(images), slide_tiles=sum(len(s.boxes) for s in slides),
            mpp=net.card.mpp, world=dist_info.world,
            params_m=round(sum(p.numel() for p in student.parameters()) / 1e6, 2))
    t_start, tiles_done, t_window = time.time(), 0, time.time()
    stream = batch_stream(dataset, step, cfg.batch_size, dist_info.rank, dist_info.world, cfg.workers)
    model.train()
    loss = float("nan")
    while step < cfg.steps:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(scheduled_step(step, cfg, t_start), cfg.steps, cfg.lr, cfg.warmup_steps)
        batch = next(stream)
        loss, parts = train_step(model, net, teacher, optimizer, batch, centers, cfg, step, device)
        step += 1
        tiles_done += cfg.batch_size * dist_info.world
        if step % cfg.log_every == 0:
            now = time.time()
            log(step=step, loss=round(loss, 4), lr=optimizer.param_groups[0]["lr"],
                tiles_per_s=round(tiles_done / (now - t_window), 2), **{k: round(v, 4) for k, v in parts.items()})
            tiles_done, t_window = 0, now
        done = step >= cfg.steps
        out_of_time = cfg.max_minutes is not None and (time.time() - t_start) / 60 > cfg.max_minutes
        out_of_time = out_of_time or (cfg.stop_at is not None and step >= cfg.stop_at)
        if dist_info.is_main and (step % cfg.save_every == 0 or done or out_of_time):
            save_state(out, net, optimizer, step, {"loss": loss},
                       tensors=aux_tensors(student, teacher, centers))
        if out_of_time:
            break
    if dist_info.is_main:
        provenance = {"script": "training/pretrain.py (SMIT)", "data": cfg.data, "steps": step,
                      "final_loss": loss, "command": " ".join(sys.argv), "config": dataclasses.asdict(cfg)}
        path = export(out, "pretrained", net, teacher, centers, provenance)
        log(event="end", step=step, checkpoint=str(path))
    cleanup_distributed()
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
