"""Write a config's training and validation samples (the split, the glass, the weights, at the
model's µm/px) to one file that a machine without ``../shared`` trains on: ``--samples FILE``.

    python training/pack_samples.py --config training/configs/default_cpu_separation.yaml --out .gpu_data/samples.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_glandseg.train.common import parse_config
from napari_glandseg.train.sample_cache import write_samples
from napari_glandseg.train.supervised import FinetuneConfig, build_model, load_samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args, rest = parser.parse_known_args(argv)
    cfg = parse_config(FinetuneConfig, rest, __doc__)
    mpp = build_model(cfg).card.mpp
    train, val = load_samples(cfg, mpp)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_samples(args.out, train, val, mpp=mpp, meta={"data": cfg.data, "val_fraction": cfg.val_fraction, "seed": cfg.seed})
    mib = args.out.stat().st_size / 2**20
    print(f"{args.out}: {len(train)} training and {len(val)} validation samples at {mpp} µm/px, {mib:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
