"""Training throughput on this CPU: crops/s of one fine-tuning step (forward, loss, backward,
AdamW) for a preset, over precision × memory format × crop size and batch, and what preparing
the crops costs (real GlaS crops: resampled in memory, augmented, targets made). One JSON line
per setting, then a summary line with the fastest setting and its ratio to the loop's own.

    python benchmarks/train_throughput.py [--model glandseg_small] [--steps 2] [--threads 1]
        [--crops 384x4,256x8] [--precisions fp32,bf16]

Settings are measured interleaved (round-robin, ``--steps`` rounds, the best kept), so that their
ratios hold on a machine shared with other work; every line says the CPU kind and the load.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import torch

from napari_glandseg.labels.folders import GLAS_MPP

ROOT = Path(__file__).resolve().parent.parent
GLAS = ROOT / ".." / "shared" / "data" / "glas" / "train"


def crop_cost_s(crop_px: int, n: int = 20) -> float | None:
    """Seconds to prepare one augmented crop with its targets from GlaS train held in memory."""
    if not GLAS.is_dir():
        return None
    from napari_glandseg.train.data import CropDataset, load_glas_folder

    samples = load_glas_folder(GLAS, source_mpp=GLAS_MPP, model_mpp=1.24, names=[f"train_{i}" for i in range(1, 11)])
    ds = CropDataset(samples, crop_px, 10**6, seed=0, pad_background=True)
    ds[0]
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        ds[i]
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="glandseg_small")
    parser.add_argument("--crops", default="384x4,256x8", help="crop px x batch, comma-separated")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--steps", type=int, default=2, help="timed rounds per setting (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from napari_glandseg.model import create_model
    from napari_glandseg.model.precision import cpu_description
    from napari_glandseg.train import supervised

    torch.manual_seed(0)
    device = torch.device("cpu")
    facts = {"benchmark": "train_throughput", "model": args.model, "threads": args.threads,
             "cpu": cpu_description(), "load_1min": round(os.getloadavg()[0], 2)}
    crops = [tuple(int(v) for v in c.split("x")) for c in args.crops.split(",")]
    settings = list(itertools.product(crops, args.precisions.split(","), (False, True)))
    # one network per crop size (built for it, as a training run's is) and memory format
    models = {(px, cl): create_model(args.model, img_px=px) for (px, _), _, cl in settings}
    for (_, cl), m in models.items():
        if cl:
            m.to(memory_format=torch.channels_last)
    opts = {key: torch.optim.AdamW(m.parameters(), lr=1e-6) for key, m in models.items()}
    batches = {}
    for px, n in crops:
        batches[px, n] = (torch.randint(0, 256, (n, px, px, 3), dtype=torch.uint8), torch.randint(0, 3, (n, px, px)),
                          torch.randint(0, 2, (n,)))
    best: dict[tuple, float] = {}
    for round_ in range(args.steps + 1):
        for (px, n), prec, cl in settings:
            os.environ["GLANDSEG_PRECISION"] = prec  # what amp=True resolves to in this process
            cfg = supervised.FinetuneConfig(data=["-"], amp=True, crop_px=px)
            images, targets, tumor = batches[px, n]
            t0 = time.perf_counter()
            supervised.train_step(models[px, cl], opts[px, cl], images, targets, tumor, cfg, device)
            dt = time.perf_counter() - t0
            if round_:  # round 0 warms up allocator and kernels
                key = (px, n, prec, cl)
                best[key] = min(best.get(key, float("inf")), dt)
    data_s = {px: crop_cost_s(px) for px, _ in crops}
    rates = {}
    for (px, n, prec, cl), dt in best.items():
        model_rate = n / dt
        d = data_s.get(px)
        loop_rate = n / (dt + n * d) if d else None  # crops prepared in the training process
        rates[px, n, prec, cl] = loop_rate or model_rate
        print(json.dumps({**facts, "crop_px": px, "batch": n, "precision": prec, "channels_last": cl,
                          "step_s": round(dt, 3), "crops_per_s_model": round(model_rate, 3),
                          "prepare_crop_s": None if d is None else round(d, 4),
                          "crops_per_s_loop": None if loop_rate is None else round(loop_rate, 3)}), flush=True)
    # the loop's own setting: channels_last since 2026-12-03 (train.common.build_model)
    loop_own = (384, 4, "bf16" if "native" in cpu_description() else "fp32", True)
    fastest = max(rates, key=rates.get)
    print(json.dumps({**facts, "fastest": dict(zip(("crop_px", "batch", "precision", "channels_last"), fastest, strict=True)),
                      "fastest_crops_per_s": round(rates[fastest], 3),
                      "loop_default": dict(zip(("crop_px", "batch", "precision", "channels_last"), loop_own, strict=True)),
                      "loop_default_crops_per_s": round(rates.get(loop_own, float("nan")), 3),
                      "ratio": round(rates[fastest] / rates[loop_own], 2) if loop_own in rates else None}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
