"""Run under torchrun by test_supervised: every rank's gradients before and after DDP's all-reduce.

Set up as ``supervised.main`` does (seeded model, unused parameters frozen, DDP, this rank's share
of step 0's crops); writes ``grads_rank<r>.pt`` (crops, local and reduced gradients) into
``--out``, then runs ``supervised.main`` itself for the given steps in ``--out``/run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from napari_glandseg.train import supervised
from napari_glandseg.train.common import freeze_unused, parse_config, start_run
from napari_glandseg.train.data import CropDataset
from napari_glandseg.train.loop import batch_at


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def main(argv: list[str]) -> int:
    cfg = parse_config(supervised.FinetuneConfig, argv, __doc__)
    device, info, out, _ = start_run(cfg)
    model = supervised.build_model(cfg).to(device).train()
    train, _ = supervised.load_samples(cfg, model.card.mpp)
    dataset = CropDataset(train, cfg.crop_px, length=10**9, seed=cfg.seed, border_px=cfg.border_px)
    freeze_unused(model)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    batch = batch_at(dataset, 0, cfg.batch_size, info.rank, info.world)
    with ddp.no_sync():  # this rank's own gradients
        supervised.step_loss(ddp, *batch, cfg, device)[0].backward()
    local = gradients(model)
    model.zero_grad(set_to_none=True)
    supervised.step_loss(ddp, *batch, cfg, device)[0].backward()  # all-reduced
    torch.save({"images": batch[0], "local": local, "reduced": gradients(model)}, out / f"grads_rank{info.rank}.pt")
    return supervised.main([*argv, "--out", str(Path(cfg.out) / "run")])  # in the same process group


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
