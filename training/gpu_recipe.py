"""The one-GPU recipe behind the shipped models: the multi-organ default, the guided
(click-to-segment) model and the pretraining ablation, trained side by side in one run.

Runs (all glandseg_small-sized, bf16, data from ``scripts/make_gpu_bundle.py``):

- ``default``: supervised, GlaS train + RINGS gland tiles (≈ 25 % of crops), from scratch.
- ``guided``: the guided model on the same data, simulated clicks and squiggles.
- ablation, equal fine-tuning budgets: ``scratch``; ``smit`` (SMIT pretraining on all unlabeled
  tissue, then fine-tuning); ``smit_distill`` (SMIT, tumour-guided self-distillation with GlaS
  grades and RINGS tumour masks, then fine-tuning). Evaluated on GlaS testA (all, benign,
  malignant) and the held-out RINGS gland tile, whole images, the card's default post-processing.

Outputs under ``--out``: ``models.tar.part*`` (fp16 best checkpoints of default and guided),
``runs.tar`` (every run's log, config and the ablation table ``ablation.json``).

    python -m training.gpu_recipe --bundle gpu_bundle --runs /tmp/runs --out $OUT --minutes 6.5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

SPLIT_BYTES = 16_000_000  # what comes back from the machine: files of at most 16 MiB


def train_data(bundle: Path, rings_weight: float) -> str:
    return json.dumps([str(bundle / "glas_train"), {"path": str(bundle / "rings_glands"), "mpp": 2.72,
                                                     "weight": rings_weight}])


def launch(module: str, out: Path, log_dir: Path, **settings) -> subprocess.Popen:
    args = [sys.executable, "-m", module, "--out", str(out)]
    for key, value in settings.items():
        args += [f"--{key.replace('_', '-')}", value if isinstance(value, str) else json.dumps(value)]
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    print(f"[{time.strftime('%H:%M:%S')}] start {out.name}: {' '.join(args)}", flush=True)
    return subprocess.Popen(args, stdout=open(log_dir / f"{out.name}.out", "w"), stderr=subprocess.STDOUT, env=env)


def evaluate_arms(bundle: Path, runs: Path, arms: list[str]) -> dict:
    """Whole-image metrics of each arm's best checkpoint: testA all/benign/malignant, RINGS val."""
    import numpy as np
    import torch

    from napari_glandseg.inference.postprocess import probabilities_to_instances
    from napari_glandseg.labels.folders import split_names
    from napari_glandseg.labels.metrics import evaluate_pair
    from napari_glandseg.model import load_checkpoint
    from napari_glandseg.train.common import predict_probs
    from napari_glandseg.train.data import load_glas_folder

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    test = load_glas_folder(bundle / "glas_testA", source_mpp=1.24, model_mpp=1.24)
    rings_names = sorted(p.stem for p in (bundle / "rings_glands" / "images").glob("*.png"))
    _, rings_val = split_names(rings_names, 0.15, 0)
    rings = load_glas_folder(bundle / "rings_glands", source_mpp=2.72, model_mpp=1.24, names=rings_val)
    table = {}
    for arm in arms:
        ckpt = runs / arm / "best.safetensors"
        if not ckpt.exists():
            table[arm] = {"error": "no checkpoint"}
            continue
        net = load_checkpoint(ckpt).to(device).eval()
        rows = {}
        for group, samples in (("testA", test), ("rings_val", rings)):
            for s in samples:
                probs = predict_probs(net, s.image, device, True)
                pred = probabilities_to_instances(probs, mpp=net.card.mpp, params=net.card.postprocess)
                rows.setdefault(group, []).append({**evaluate_pair(pred, s.labels, gt_kind="instance"), "tumor": s.tumor})
        summary = {}
        for group, rs in rows.items():
            subsets = {group: rs}
            if group == "testA":
                subsets["testA_benign"] = [r for r in rs if r["tumor"] == 0]
                subsets["testA_malignant"] = [r for r in rs if r["tumor"] == 1]
            for name, sub in subsets.items():
                summary[name] = {k: round(float(np.nanmean([r[k] for r in sub])), 4)
                                 for k in ("pixel_dice", "object_f1", "object_dice")} | {"images": len(sub)}
        summary["steps"] = json.loads((runs / arm / "best.json").read_text())["provenance"]["validation"]["step"]
        table[arm] = summary
        print(arm, json.dumps(summary), flush=True)
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=Path("gpu_bundle"))
    parser.add_argument("--runs", type=Path, default=Path("/tmp/runs"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=6.5, help="training time of the default and guided runs")
    parser.add_argument("--rings-weight", type=float, default=8.0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny batches and crops: checks the recipe itself on a CPU")
    a = parser.parse_args()
    bundle, runs, m = a.bundle.resolve(), a.runs, a.minutes
    runs.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = train_data(bundle, a.rings_weight)
    common = {"device": a.device, "amp": True, "threads": 2, "time_schedule": True, "data_mpp": 1.24, "mpp": 1.24}
    sup = {**common, "data": data, "batch_size": 16, "warmup_steps": 150, "lr": 8e-4, "log_every": 50}
    big, small, workers = 384, 256, (5, 2)
    if a.smoke:
        sup.update(batch_size=2, warmup_steps=2, log_every=5)
        big, small, workers = 128, 128, (1, 1)
    ft_minutes = round(m * 0.45, 2)
    procs = {
        "default": launch("napari_glandseg.train.supervised", runs / "default", runs, **sup, model="glandseg_small",
                          crop_px=big, steps=6000, max_minutes=m, val_every=500, workers=workers[0]),
        "guided": launch("napari_glandseg.train.guided", runs / "guided", runs, **sup, model="glandseg_guided",
                         crop_px=big, steps=6000, max_minutes=m, val_every=1500, workers=workers[0],
                         val_max_glands=3 if a.smoke else 250),
        "scratch": launch("napari_glandseg.train.supervised", runs / "scratch", runs, **sup, model="glandseg_small",
                          crop_px=small, steps=2500, max_minutes=ft_minutes, val_every=2500, workers=workers[1]),
        "pretrain": launch("napari_glandseg.train.pretrain", runs / "pretrain", runs, **common, model="glandseg_small",
                           data=json.dumps([str(bundle / "glas_train"), str(bundle / "unlabeled")]), crop_px=small,
                           batch_size=sup["batch_size"] * 2, steps=3000, lr=5e-4, warmup_steps=100, max_minutes=round(m * 0.32, 2),
                           workers=workers[1], save_every=200, log_every=50),
    }
    finetune_arm = {**sup, "model": "glandseg_small", "crop_px": small, "steps": 2500, "max_minutes": ft_minutes,
                    "val_every": 2500, "workers": workers[1]}
    started = set(procs)
    deadline = t0 + 60 * (m + 1.2)
    while time.time() < deadline:
        done = {k for k, p in procs.items() if p.poll() is not None}
        if "pretrain" in done and "smit" not in started:
            pre = runs / "pretrain" / "pretrained.safetensors"
            procs["smit"] = launch("napari_glandseg.train.supervised", runs / "smit", runs, **finetune_arm, init=str(pre))
            procs["distill"] = launch(
                "napari_glandseg.train.distill", runs / "distill", runs, **common, crop_px=small,
                batch_size=sup["batch_size"] * 2,
                data=json.dumps([str(bundle / "glas_train")]), teacher=str(pre), steps=1500, lr=2e-4, warmup_steps=30,
                tumour_masks=json.dumps([{"path": str(bundle / "rings_tumour"), "mpp": 2.72, "weight": 4.0}]),
                max_minutes=round(m * 0.12, 2), workers=workers[1], log_every=50)
            started |= {"smit", "distill"}
        if "distill" in done and "smit_distill" not in started:
            procs["smit_distill"] = launch("napari_glandseg.train.supervised", runs / "smit_distill", runs, **finetune_arm,
                                           init=str(runs / "distill" / "distilled.safetensors"))
            started.add("smit_distill")
        if all(p.poll() is not None for p in procs.values()) and {"smit_distill"} <= started:
            break
        time.sleep(2)
    for name, p in procs.items():
        if p.poll() is None:
            print(f"{name}: still running at the deadline, stopped", flush=True)
            p.kill()
        print(f"{name}: exit {p.returncode}", flush=True)
    print(f"training wall time {time.time() - t0:.0f} s", flush=True)
    table = evaluate_arms(bundle, runs, ["scratch", "smit", "smit_distill", "default"])
    if (runs / "default" / "best.safetensors").exists():
        table["forward"] = forward_rate(runs, seconds=2 if a.smoke else 10)
        print(json.dumps(table["forward"]), flush=True)
    (runs / "ablation.json").write_text(json.dumps(table, indent=2))
    pack(runs, a.out)
    print(f"total {time.time() - t0:.0f} s", flush=True)
    return 0


def forward_rate(runs: Path, tile_px: int = 384, batch: int = 16, seconds: float = 10.0) -> dict:
    """Bare forward throughput of the trained default on this device (bf16 autocast)."""
    import torch

    from napari_glandseg.model import load_checkpoint

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = load_checkpoint(runs / "default" / "best.safetensors").to(device).eval()
    x = torch.randn(batch, 3, tile_px, tile_px, device=device).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        for _ in range(3):
            net(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t, n = time.time(), 0
        while time.time() - t < seconds:
            net(x)
            n += batch
        if device.type == "cuda":
            torch.cuda.synchronize()
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    return {"device": name, "tile_px": tile_px, "batch": batch, "tiles_per_s": round(n / (time.time() - t), 1)}


def pack(runs: Path, out: Path, names: tuple[str, ...] = ("default", "guided")) -> None:
    """fp16 best checkpoints of the ``names`` runs, split into parts; logs and configs apart."""
    from napari_glandseg.model import load_checkpoint, save_checkpoint

    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / "runs.tar", "w") as tar:
        for p in sorted(runs.rglob("*")):
            if p.suffix in (".jsonl", ".yaml", ".out") or p.name in ("ablation.json", "best.json", "last.json"):
                tar.add(p, arcname=str(p.relative_to(runs)))
    models = runs / "ship"
    for name in names:
        best = runs / name / "best.safetensors"
        if best.exists():
            save_checkpoint(load_checkpoint(best), models / name, half=True)
    if not models.is_dir():
        print("no best checkpoints to pack", flush=True)
        return
    with tarfile.open(runs / "models.tar", "w") as tar:
        tar.add(models, arcname="ship")
    blob = (runs / "models.tar").read_bytes()
    for i in range(0, len(blob), SPLIT_BYTES):
        (out / f"models.tar.part{i // SPLIT_BYTES}").write_bytes(blob[i:i + SPLIT_BYTES])


if __name__ == "__main__":
    sys.exit(main())
