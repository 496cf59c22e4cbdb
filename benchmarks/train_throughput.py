"""Training throughput: tiles/s of one fine-tuning step (forward, loss, backward, AdamW) for a
preset at 256² × batch 8, fp32 vs bf16 autocast. Prints one JSON line.

    python benchmarks/train_throughput.py [--model glandseg_small] [--steps 3] [--threads N]

Random tiles and targets: the step's cost does not depend on the content. Both precisions are
measured in one run, interleaved, so that their ratio is meaningful on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch


def busy_note() -> str | None:
    """Whether another training run (runs/train.pid) was competing for the CPU."""
    pid_file = Path(__file__).resolve().parents[1] / "runs" / "train.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return f"a training run (pid {pid}) was using the CPU at the same time: absolute numbers are low"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="glandseg_small")
    parser.add_argument("--tile-px", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per precision (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from napari_glandseg.model import create_model
    from napari_glandseg.train import finetune

    torch.manual_seed(0)
    device = torch.device("cpu")
    model = create_model(args.model, img_px=256).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    n, px = args.batch, args.tile_px
    images = torch.randint(0, 256, (n, px, px, 3), dtype=torch.uint8)
    targets = torch.randint(0, 3, (n, px, px))
    tumor = torch.randint(0, 2, (n,))
    cfgs = {name: finetune.FinetuneConfig(data=["-"], amp=amp, crop_px=px)
            for name, amp in (("fp32", False), ("bf16", True))}
    times: dict[str, list[float]] = {k: [] for k in cfgs}
    for cfg in cfgs.values():  # warm-up (allocator, kernels) per precision
        finetune.train_step(model, opt, images, targets, tumor, cfg, device)
    for _ in range(args.steps):
        for name, cfg in cfgs.items():
            t0 = time.perf_counter()
            finetune.train_step(model, opt, images, targets, tumor, cfg, device)
            times[name].append(time.perf_counter() - t0)
    result = {
        "benchmark": "train_throughput", "model": args.model, "tile_px": px, "batch": n,
        "threads": torch.get_num_threads(), "steps": args.steps,
        **{f"tiles_per_s_{k}": round(n / (sum(v) / len(v)), 2) for k, v in times.items()},
        **{f"step_s_{k}": round(sum(v) / len(v), 3) for k, v in times.items()},
    }
    result["bf16_speedup"] = round(result["tiles_per_s_bf16"] / result["tiles_per_s_fp32"], 2)
    note = busy_note()
    if note:
        result["note"] = note
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
