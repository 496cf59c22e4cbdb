"""Compare a guided-model run with the shipped ``glandseg_guided`` on the run's validation clicks
(one click per held-out gland, then one corrective click) and ship it only if its first click is
better: fp16 safetensors + card beside the bundled weights, with how it was made.

    python training/ship_guided.py /work/runs/guided_cpu/best --config training/configs/guided_cpu.yaml [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shipping import WEIGHTS, without_run_dir, write_bundled  # noqa: E402

NAME = "glandseg_guided"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="STEM of the run's best checkpoint (STEM.safetensors + .json)")
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)

    import dataclasses

    from napari_glandseg.model.checkpoint import load_checkpoint
    from napari_glandseg.model.precision import cpu_description
    from napari_glandseg.train.common import parse_config
    from napari_glandseg.train.data import load_split
    from napari_glandseg.train.guided import GuidedConfig, validate_clicks

    cfg = parse_config(GuidedConfig, ["--config", str(args.config)], __doc__)
    new = load_checkpoint(args.checkpoint.with_suffix(".safetensors")).eval()
    shipped = load_checkpoint(WEIGHTS / f"{NAME}.safetensors").eval()
    _, val = load_split(cfg.data, cfg.val_data, data_mpp=cfg.data_mpp, model_mpp=new.card.mpp,
                        val_fraction=cfg.val_fraction, seed=cfg.seed)
    scores = {"new": validate_clicks(new, val, cfg.val_max_glands), "shipped": validate_clicks(shipped, val, cfg.val_max_glands)}
    better = scores["new"]["gland_dice"] > scores["shipped"]["gland_dice"]
    print(json.dumps({"validation_images": len(val), **scores, "better": better}, indent=1))
    if args.dry_run or not better:
        print("not shipped" + ("" if args.dry_run else ": its first click is not better on the validation glands"))
        return 0
    run_dir = args.checkpoint.parent
    old = shipped.card.provenance
    prov = dict(new.card.provenance)  # the run's command, config, data, best validation
    prov.update({
        "license": old.get("license"),
        "how": f"training/guided.py --config {args.config}"
               + (f" (started from {cfg.init}: its weights, channels it lacks at zero weight, classes it has "
                  "beyond background and gland dropped)" if cfg.init else " (from scratch)")
               + ", then training/ship_guided.py",
        "device": f"CPU ({cpu_description()}), {cfg.threads} torch thread(s), beside other work",
        "validation_clicks": {"new": scores["new"], "replaced": scores["shipped"],
                              "replaced_how": {k: old.get(k) for k in ("script", "stages") if k in old}},
        "weights": "fp16 (loaded as fp32)",
    })
    prov = without_run_dir(prov, run_dir)
    card = dataclasses.replace(new.card, name=NAME, provenance=prov)
    print(f"shipped {write_bundled(new, card, run_dir, NAME)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
