"""Tumor-guided self-distillation (Zhang et al. 2024): after SMIT pretraining, teach the
encoders the benign/malignant distinction of each tile while a teacher (the pretrained model,
frozen or following by EMA) keeps their token distributions from drifting.

    L = CE(tumor head, tile grade) + λ·(H(teacher, student) on patch tokens + on the image token)

Tiles are random augmented crops of GlaS-style folders whose grade is known (Grade.csv beside
or above the folder). Writes ``OUT/distilled.safetensors/.json`` (start fine-tuning from it
with ``finetune.py --init``) and ``OUT/distilled_heads.safetensors``.

    python training/distill.py --config training/configs/distill_small.yaml
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from napari_glandseg.labels.folders import GLAS_MPP, split_names
from napari_glandseg.train.common import (
    autocast,
    batch_stream,
    build_model,
    cleanup_distributed,
    optimizer_step,
    parse_config,
    save_resolved_config,
    start_run,
    unwrap,
)
from napari_glandseg.train.data import IGNORE, CropDataset, DataSource, Sample, load_glas_folder
from napari_glandseg.train.loop import LoopHooks, LoopSettings, resume_and_wrap, run_loop
from napari_glandseg.train.pretrain import aux_tensors, export, restore_aux
from napari_glandseg.train.smit import SMITStudent, distribution_ce, ema_update, make_teacher, update_center


@dataclass(frozen=True)
class DistillConfig(LoopSettings):
    data: list[str] = field(default_factory=list)  # GlaS-style folders with grades
    tumour_masks: list = field(default_factory=list)  # folders whose masks mark tumour regions ({path, mpp, weight})
    teacher: str = ""  # pretrained checkpoint: the teacher, and the student's starting point
    heads: str | None = None  # projection heads (default: TEACHER_heads.safetensors if present)
    out: str = "runs/distill"
    data_mpp: float = GLAS_MPP
    mpp: float | None = None
    val_fraction: float = 0.15  # held-out images for tumor accuracy
    steps: int = 1000
    lr: float = 2e-4
    warmup_steps: int = 50
    lambda_distill: float = 1.0
    teacher_momentum: float = 1.0  # 1: frozen teacher; < 1: EMA of the student
    teacher_temp: float = 0.04
    student_temp: float = 0.1
    center_momentum: float = 0.9
    out_dim: int = 1024  # used only when no heads file exists (fresh heads)
    head_hidden: int = 512
    head_bottleneck: int = 128

    def __post_init__(self):
        if not self.data or not self.teacher:
            raise ValueError("data (GlaS-style folders) and teacher (a pretrained checkpoint) are required")
        super().__post_init__()
        if not 0 < self.teacher_momentum <= 1:
            raise ValueError("teacher_momentum must be in (0, 1]")


def heads_path(cfg: DistillConfig) -> Path | None:
    if cfg.heads:
        return Path(cfg.heads)
    stem = Path(cfg.teacher)
    stem = stem.with_suffix("") if stem.suffix in (".safetensors", ".json") else stem
    guess = stem.with_name(stem.name + "_heads.safetensors")
    return guess if guess.exists() else None


def build(cfg: DistillConfig):
    """(network, student, teacher, centers): both start from the pretrained checkpoint."""
    net = build_model(cfg.teacher, crop_px=cfg.crop_px, mpp=cfg.mpp)
    heads_file = heads_path(cfg)
    heads = load_file(str(heads_file)) if heads_file else {}
    out_dim, hidden, bottleneck = cfg.out_dim, cfg.head_hidden, cfg.head_bottleneck
    if heads:  # the heads' sizes come from the file
        out_dim, bottleneck = heads["patch_head.prototypes"].shape
        hidden = heads["patch_head.mlp.0.weight"].shape[0]
    else:
        warnings.warn(f"no projection heads found for {cfg.teacher}: distilling through fresh random "
                      "heads (pretrain.py writes NAME_heads.safetensors)", stacklevel=2)
    student = SMITStudent(net, out_dim=out_dim, hidden=hidden, bottleneck=bottleneck,
                          with_reconstruction=False, with_tumor=True)
    for h in ("patch_head", "image_head"):
        sub = {k[len(h) + 1:]: v for k, v in heads.items() if k.startswith(h + ".")}
        if sub:
            getattr(student, h).load_state_dict(sub)
    teacher = make_teacher(student)
    centers = {k: heads.get(f"center.{k}", torch.zeros(out_dim)).clone() for k in ("patch", "image")}
    return net, student, teacher, centers


def load_graded(cfg: DistillConfig, model_mpp: float) -> tuple[list[Sample], list[Sample]]:
    train, val = [], []
    for src in map(Path, cfg.data):
        samples = [s for s in load_glas_folder(src, source_mpp=cfg.data_mpp, model_mpp=model_mpp) if s.tumor >= 0]
        tr, va = split_names([s.name for s in samples], cfg.val_fraction, cfg.seed)
        train += [s for s in samples if s.name in tr]
        val += [s for s in samples if s.name in va]
    for src in map(DataSource.parse, cfg.tumour_masks):
        for sample in load_glas_folder(src.path, source_mpp=src.mpp or cfg.data_mpp, model_mpp=model_mpp, weight=src.weight):
            sample.tumor = TUMOUR_FROM_MASK
            train.append(sample)
    if not train:
        raise ValueError(f"{cfg.data}: no images with a known grade (Grade.csv beside or above the folder)")
    return train, val


TUMOUR_FROM_MASK = -2  # a sample whose labels are tumour regions: each crop's grade comes from them


class GradedCrops(torch.utils.data.Dataset):
    """(crop, grade) pairs: the image's grade, or for tumour-mask samples the crop's: tumour
    when at least half of it is tumour, benign when none is, unknown (-1, no loss) between."""

    def __init__(self, crops: CropDataset):
        self.crops = crops

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int):
        image, target, grade = self.crops[index]
        if grade == TUMOUR_FROM_MASK:
            known = target != IGNORE
            share = float(((target > 0) & known).sum()) / max(1, int(known.sum()))
            grade = 1 if share >= 0.5 else 0 if share == 0 else -1
        return image, grade


def train_step(model, net, teacher, optimizer, images, tumor, centers, cfg: DistillConfig, device):
    x = net.normalize(images.to(device))
    with autocast(device, cfg.amp):
        with torch.no_grad():
            t_out = teacher(x)
        s_out = model(x)
    # -1: grade unknown (a crop with a little tumour): no loss, but still a per-sample mean.
    tumor_ce = F.cross_entropy(s_out["tumor"].float(), tumor.to(device), reduction="none", ignore_index=-1)
    patch = distribution_ce(t_out["patch"], s_out["patch"], centers["patch"], cfg.teacher_temp,
                            cfg.student_temp).mean(1)
    image = distribution_ce(t_out["image"], s_out["image"], centers["image"], cfg.teacher_temp, cfg.student_temp)
    distill = (patch + image) / 2
    loss = (tumor_ce + cfg.lambda_distill * distill).mean()  # per-sample means: DDP-exact
    skipped = float(not optimizer_step(model, optimizer, loss, 3.0))
    if cfg.teacher_momentum < 1:
        ema_update(teacher, unwrap(model), cfg.teacher_momentum)
    update_center(centers["patch"], t_out["patch"], cfg.center_momentum)
    update_center(centers["image"], t_out["image"], cfg.center_momentum)
    return float(loss.detach()), {"tumor_ce": float(tumor_ce.detach().mean()), "distill": float(distill.detach().mean()),
                                  "skipped": skipped}


@torch.no_grad()
def tumor_accuracy(net, samples: list[Sample], device: torch.device) -> float:
    """Whole held-out images (padded to a multiple of 32): fraction graded right."""
    net.eval()
    right = []
    for s in samples:
        h, w = s.image.shape[:2]
        img = np.pad(s.image, ((0, (-h) % 32), (0, (-w) % 32), (0, 0)), mode="reflect")
        logits = net(net.normalize(torch.from_numpy(img)[None].to(device)), return_all=True)["tumor"]
        right.append(int(logits.argmax(1).item() == s.tumor))
    net.train()
    return float(np.mean(right)) if right else float("nan")


def main(argv: list[str] | None = None, hooks: LoopHooks | None = None) -> int:
    cfg = parse_config(DistillConfig, argv, __doc__)
    device, dist_info, out, log = start_run(cfg)

    net, student, teacher, centers = build(cfg)
    net, student, teacher = net.to(device), student.to(device), teacher.to(device)
    centers = {k: v.to(device) for k, v in centers.items()}
    train, val = load_graded(cfg, net.card.mpp)
    dataset = GradedCrops(CropDataset(train, cfg.crop_px, length=10**9, seed=cfg.seed))
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, step, _ = resume_and_wrap(
        out, net, optimizer, dist_info.world, trained=student,
        restore=lambda tensors: restore_aux({k: v.to(device) for k, v in tensors.items()}, student, teacher, centers))
    if dist_info.is_main:
        save_resolved_config(cfg, out)
        log(event="start", step=step, train_images=len(train), val_images=len(val), world=dist_info.world)
    stream = batch_stream(dataset, step, cfg.batch_size, dist_info.rank, dist_info.world, cfg.workers)
    result = run_loop(
        cfg, model, optimizer, stream,
        lambda images, tumor: train_step(model, net, teacher, optimizer, images, tumor, centers, cfg, device),
        step=step, best={}, out=out, log=log, is_main=dist_info.is_main, world=dist_info.world, hooks=hooks,
        net=net, state_tensors=lambda: aux_tensors(student, teacher, centers),
    )
    if dist_info.is_main:
        acc = tumor_accuracy(net, val, device)
        provenance = {"script": "training/distill.py (tumor-guided self-distillation)", "teacher": cfg.teacher,
                      "data": cfg.data, "steps": result.step, "final_loss": result.loss, "val_tumor_accuracy": acc,
                      "command": " ".join(sys.argv), "config": dataclasses.asdict(cfg)}
        # The student is exported: its encoders and tumor head learned the grades.
        path = export(out, "distilled", net, student, centers, provenance)
        log(event="end", step=result.step, stopped=result.stopped, val_tumor_accuracy=acc, checkpoint=str(path))
    cleanup_distributed()
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
