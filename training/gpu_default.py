"""Issue 18.6: the default model on one lent GPU, two arms side by side on the one chip.

- ``scratch``: glandseg_small from random weights (the recipe: lr 8·10⁻⁴, warm-up 150 steps);
- ``continued``: the shipped glandseg_small trained on (lr 2·10⁻⁴, warm-up 50 steps).

Both read ``training/configs/gpu_default.yaml`` (the samples file, crops made on the GPU, the
separation target) for ``--minutes`` each; each keeps its best checkpoint on the validation split's
object F1. Two processes fill the chip better than one: a model this small leaves it waiting on
kernel launches. Outputs under ``--out``: ``models.tar.part*`` (fp16 best checkpoints) and
``runs.tar`` (logs, configs). Back on a CPU, ``training/ship_cpu_default.py`` tunes each arm's
per-organ post-processing on validation and ships only what beats the default there.

    python -m training.gpu_default --out $OUT --minutes 6.5

On a lent device machine (no ../shared, 64 MiB of working tree): here, ``python
training/pack_samples.py --config training/configs/default_cpu_separation.yaml --out
.gpu_data/samples.npz`` (35 MiB, git-ignored), ``bash benchmarks/gpu_engine.sh --stash`` (the
other bundled models and samples out of the tree), then run(command="PYTHONPATH=$PWD/src:$PWD
python3 -m training.gpu_default --out $OUT --minutes 6.5", carry=[".gpu_data"], timeout_s=570),
and ``bash benchmarks/gpu_engine.sh --unstash``. 2026-12-04: 2.2 minutes of one arm took 159 s of
command and about 4 minutes of device time with the machine's start.
    python -m training.gpu_default --out /tmp/smoke --minutes 0.3 --device cpu --smoke   # the recipe itself, on a CPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from training.gpu_recipe import launch, pack

CONFIG = "training/configs/gpu_default.yaml"
SHIPPED = "src/napari_glandseg/model/weights/glandseg_small.safetensors"
ARMS = {
    "scratch": {"model": "glandseg_small", "lr": 8e-4, "warmup_steps": 150},
    "continued": {"model": SHIPPED, "lr": 2e-4, "warmup_steps": 50},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", type=Path, default=Path("/tmp/gpu_default_runs"))
    parser.add_argument("--minutes", type=float, default=6.5)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=list(ARMS))
    parser.add_argument("--smoke", action="store_true", help="tiny batches: checks the recipe itself on a CPU")
    a = parser.parse_args()
    if a.runs.exists() and any(a.runs.iterdir()):
        parser.error(f"--runs {a.runs} is not empty: its runs would resume (a failed run's weights too); give another")
    a.runs.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    extra = {"batch_size": 2, "crop_px": 128, "val_every": 5, "log_every": 1, "threads": 1} if a.smoke else {}
    procs = {name: launch("napari_glandseg.train.supervised", a.runs / name, a.runs, config=CONFIG, device=a.device,
                          max_minutes=a.minutes, **arm, **extra)
             for name, arm in ARMS.items() if name in a.arms}
    deadline = t0 + 60 * (a.minutes + 1.5)
    while time.time() < deadline and any(p.poll() is None for p in procs.values()):
        time.sleep(2)
    for name, p in procs.items():
        if p.poll() is None:
            print(f"{name}: still running at the deadline, stopped", flush=True)
            p.kill()
            p.wait()
        print(f"{name}: exit {p.returncode}; last lines:", flush=True)
        print("".join((a.runs / f"{name}.out").read_text().splitlines(keepends=True)[-4:]), flush=True)
    pack(a.runs, a.out, names=tuple(a.arms))
    print(f"total {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
