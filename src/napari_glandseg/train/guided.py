"""Train the guided (click-to-segment) gland model: RGB + inclusion + exclusion maps → the mask
of the one gland pointed at. Simulated guidance (train/guided_data.py) on GlaS-style folders;
validation clicks once per held-out gland (at its distance-transform maximum) and keeps the
checkpoint with the best mean per-gland Dice.

    python training/guided.py --config training/configs/guided_cpu.yaml --out /work/runs/guided_cpu
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_glandseg.interactive.segment import guide_channels, image_reader, paste, segment_window
from napari_glandseg.labels.metrics import pixel_dice
from napari_glandseg.train.common import (
    autocast,
    batch_stream,
    build_model,
    cleanup_distributed,
    freeze_unused,
    load_state,
    optimizer_step,
    parse_config,
    save_resolved_config,
    start_run,
    unwrap,
)
from napari_glandseg.train.data import Sample, load_split
from napari_glandseg.train.guided_data import MIN_GLAND_PX, GuidedCropDataset, corrective_click
from napari_glandseg.train.loop import LoopHooks, SupervisedSettings, run_loop
from napari_glandseg.train.losses import segmentation_loss


@dataclass(frozen=True)
class GuidedConfig(SupervisedSettings):
    out: str = "runs/guided"
    model: str = "glandseg_guided"
    crop_px: int = 384
    val_max_glands: int = 300  # clicks per validation (a few minutes on a CPU)
    second_click: float = 0.5  # share of crops that are corrective clicks on a previous result (3 guidance maps)


def train_step(model, optimizer, images, maps, targets, cfg: GuidedConfig, device: torch.device):
    net = unwrap(model)
    x = torch.cat([net.normalize(images.to(device)), maps.to(device)], 1)
    with autocast(device, cfg.amp):
        out = model(x, return_all=True)
    loss, parts = segmentation_loss(out, targets.to(device), dice_weight=cfg.dice_weight,
                                    deep_weights=tuple(cfg.deep_weights), classes=(1,))
    parts["skipped"] = float(not optimizer_step(model, optimizer, loss, 1.0))
    return float(loss.detach()), parts


def click_point(mask: np.ndarray) -> tuple[int, int]:
    """The simulated user's click: the gland's most interior pixel (distance-transform maximum)."""
    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(y), int(x)


@torch.no_grad()
def validate_clicks(model, samples: list[Sample], max_glands: int = 300) -> dict[str, float]:
    """One click per gland → mean per-gland Dice and the share of glands found (Dice ≥ 0.5), and
    the Dice after one corrective click (``gland_dice_2``; a model without a previous-mask
    channel refines by adding or cutting, see ``interactive.segment``)."""
    net = unwrap(model)
    was_training = net.training
    net.eval()
    first, second = [], []
    for s in samples:
        read = image_reader(s.image, 1.0)
        for gid in range(1, int(s.labels.max()) + 1):
            truth = s.labels == gid
            if truth.sum() < MIN_GLAND_PX or len(first) >= max_glands:
                continue
            found = segment_window(net, read, [click_point(truth)], [], 1.0)
            mask = paste(found, truth.shape)
            first.append(pixel_dice(mask, truth))
            second.append(pixel_dice(refine_once(net, read, found, mask, truth), truth))
    net.train(was_training)
    scores = {"gland_dice": _mean(first), "found": _mean(np.asarray(first) >= 0.5), "glands": float(len(first))}
    if second:
        scores["gland_dice_2"] = _mean(second)
    return scores


def refine_once(net, read, found, mask: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The result after the simulated user's corrective click on ``found`` (pasted as ``mask``)."""
    click = corrective_click(mask, truth)
    if click is None:
        return mask
    point, inside = click
    found = segment_window(net, read, [], [] if inside else [point], 1.0, clicks=[point] if inside else [],
                           previous=found)
    return paste(found, truth.shape)


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def main(argv: list[str] | None = None, hooks: LoopHooks | None = None) -> int:
    cfg = parse_config(GuidedConfig, argv, __doc__)
    device, dist_info, out, log = start_run(cfg)
    model = build_model(cfg.model, crop_px=cfg.crop_px, mpp=cfg.mpp, init=cfg.init).to(device)
    if model.in_chans not in (5, 6):
        raise SystemExit(f"{cfg.model}: a guided model takes 5 or 6 input channels (RGB + 2 guidance maps "
                         f"[+ the previous mask]), not {model.in_chans}")
    train, val = load_split(cfg.data, cfg.val_data, data_mpp=cfg.data_mpp, model_mpp=model.card.mpp,
                            val_fraction=cfg.val_fraction, seed=cfg.seed)
    dataset = GuidedCropDataset(train, cfg.crop_px, length=10**9, seed=cfg.seed, channels=guide_channels(model),
                                second_click=cfg.second_click)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, extra = load_state(out, model, optimizer)
    freeze_unused(model)
    if dist_info.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    if dist_info.is_main:
        save_resolved_config(cfg, out)
        log(event="start", step=step, train_images=len(train), val_images=len(val), mpp=unwrap(model).card.mpp,
            world=dist_info.world)
    stream = batch_stream(dataset, step, cfg.batch_size, dist_info.rank, dist_info.world, cfg.workers)
    result = run_loop(
        cfg, model, optimizer, stream,
        lambda images, maps, targets: train_step(model, optimizer, images, maps, targets, cfg, device),
        step=step, best=extra.get("best", {}), out=out, log=log, is_main=dist_info.is_main, world=dist_info.world,
        validate_fn=(lambda m: validate_clicks(m, val, cfg.val_max_glands)) if val else None, metric="gland_dice",
        provenance={"data": cfg.data, "script": "training/guided.py (simulated clicks and squiggles)"}, hooks=hooks,
    )
    if dist_info.is_main:
        log(event="end", step=result.step, stopped=result.stopped, best=json.dumps(result.best))
    cleanup_distributed()
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
