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
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from napari_glandseg._atomic import atomic_path
from napari_glandseg.labels.folders import GLAS_MPP
from napari_glandseg.model import save_checkpoint
from napari_glandseg.train.common import (
    batch_stream,
    build_model,
    cleanup_distributed,
    optimizer_step,
    parse_config,
    save_resolved_config,
    start_run,
    unwrap,
)
from napari_glandseg.train.loop import LoopHooks, LoopSettings, resume_and_wrap, run_loop
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
class PretrainConfig(LoopSettings):
    data: list = field(default_factory=list)  # image folders (GlaS-style or plain) and/or slides; {path, mpp, weight}
    out: str = "runs/pretrain"
    model: str = "glandseg_small"  # preset name (fresh) or checkpoint path
    init: str | None = None  # checkpoint whose matching weights start the run
    data_mpp: float = GLAS_MPP  # µm/px of the images in folders
    slide_mpp: float | None = None  # override for slides without µm/px
    mpp: float | None = None  # train at this µm/px (default: the model card's)
    batch_size: int = 8  # per process; each sample is two views
    steps: int = 2000
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
    holdout: float = 0.0  # leave out the validation images of a supervised run with this val_fraction

    def __post_init__(self):
        if not self.data:
            raise ValueError("data: give at least one image folder or slide")
        super().__post_init__()
        if self.mask_px % 4 or self.crop_px % self.mask_px:
            raise ValueError(f"mask_px must be a multiple of 4 dividing crop_px, got {self.mask_px}")
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")


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


def train_step(model, net, teacher, optimizer, batch, centers, cfg: PretrainConfig, step: int, device):
    """One optimisation step, then the teacher EMA and center updates.

    ``model``: the student (DDP-wrapped or not); ``net``: the network (for its normalisation).
    """
    v1, v2, m1, m2 = (t.to(device) for t in batch)
    norm = net.normalize
    terms, t_out = smit_losses(model, teacher, norm(v1), norm(v2), m1, m2, centers,
                               t_temp=cfg.teacher_temp, s_temp=cfg.student_temp, amp=cfg.amp)
    loss = (terms["mip"] + cfg.lambda_mpd * terms["mpd"] + cfg.lambda_itd * terms["itd"]).mean()
    skipped = float(not optimizer_step(model, optimizer, loss, 3.0))
    ema_update(teacher, unwrap(model), ema_momentum(step, cfg.steps, cfg.ema_momentum))
    update_center(centers["patch"], t_out["patch"], cfg.center_momentum)
    update_center(centers["image"], t_out["image"], cfg.center_momentum)
    return float(loss.detach()), {**{k: float(v.detach().mean()) for k, v in terms.items()}, "skipped": skipped}


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


def main(argv: list[str] | None = None, hooks: LoopHooks | None = None) -> int:
    cfg = parse_config(PretrainConfig, argv, __doc__)
    device, dist_info, out, log = start_run(cfg)

    net, student, teacher, centers = build(cfg)
    net, student, teacher = net.to(device), student.to(device), teacher.to(device)
    centers = {k: v.to(device) for k, v in centers.items()}
    images, slides, weights = load_unlabeled(cfg.data, crop_px=cfg.crop_px, model_mpp=net.card.mpp,
                                    data_mpp=cfg.data_mpp, slide_mpp=cfg.slide_mpp, seed=cfg.seed,
                                    max_tiles_per_slide=cfg.max_tiles_per_slide, holdout=cfg.holdout)
    dataset = MaskedViews(TwoViewDataset(images, slides, cfg.crop_px, seed=cfg.seed, image_weights=weights), cfg)
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, step, _ = resume_and_wrap(
        out, net, optimizer, dist_info.world, trained=student,
        restore=lambda tensors: restore_aux({k: v.to(device) for k, v in tensors.items()}, student, teacher, centers))
    if dist_info.is_main:
        save_resolved_config(cfg, out)
        log(event="start", step=step, images=len(images), slide_tiles=sum(len(s.boxes) for s in slides),
            mpp=net.card.mpp, world=dist_info.world,
            params_m=round(sum(p.numel() for p in student.parameters()) / 1e6, 2))
    # each batch comes with its step: the teacher's EMA momentum follows the step
    stream = zip(itertools.count(step), batch_stream(dataset, step, cfg.batch_size, dist_info.rank, dist_info.world,
                                                     cfg.workers))
    result = run_loop(
        cfg, model, optimizer, stream,
        lambda i, batch: train_step(model, net, teacher, optimizer, batch, centers, cfg, i, device),
        step=step, best={}, out=out, log=log, is_main=dist_info.is_main, world=dist_info.world, hooks=hooks,
        net=net, state_tensors=lambda: aux_tensors(student, teacher, centers),
    )
    if dist_info.is_main:
        provenance = {"script": "training/pretrain.py (SMIT)", "data": cfg.data, "steps": result.step,
                      "final_loss": result.loss, "command": " ".join(sys.argv), "config": dataclasses.asdict(cfg)}
        path = export(out, "pretrained", net, teacher, centers, provenance)
        log(event="end", step=result.step, stopped=result.stopped, checkpoint=str(path))
    cleanup_distributed()
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
