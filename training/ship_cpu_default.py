"""Compare a continued default (a ``finetune.py`` run started from the shipped model) with the
shipped one on the validation images of each organ, and ship it only if it is better on both.

Each model gets its own per-organ post-processing (``tune_postprocess``: the best setting on each
organ's validation images), so the comparison is model against model, each at its best. The
winner is written as fp16 safetensors + card beside the bundled weights, with how it was made.

    python training/ship_cpu_default.py /work/runs/default_cpu/best \\
        --config training/configs/default_cpu.yaml [--dry-run]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shipping import WEIGHTS, without_run_dir, write_bundled  # noqa: E402
from tune_postprocess import best_by_source, grid_for, tune, validation_pairs  # noqa: E402

#: What a shipped card keeps of the provenance of the model its run started from.
STARTED_FROM = ("script", "command", "data", "device", "minutes", "steps", "validation", "test")


def started_from(run_provenance: dict) -> tuple[str, dict]:
    """(name, provenance) of the model the run started from: its config's ``model`` (a preset or
    user model name, or a checkpoint path, which configs give from the repository's root)."""
    from napari_glandseg.model.resolve import resolve

    spec = str(run_provenance.get("config", {}).get("model") or "")
    if not spec:
        raise SystemExit("the run's card does not say which model it started from (config.model)")
    root_relative = Path(__file__).resolve().parents[1] / spec
    if not Path(spec).is_absolute() and not Path(spec).exists() and root_relative.exists():
        spec = str(root_relative)
    source = resolve(spec)  # a clear error when it names nothing
    return source.name, source.card.provenance


def organ_scores(checkpoint: Path, pairs) -> tuple[dict, dict]:
    """(best balanced result, {organ: best result on that organ}) over the tuning grid."""
    best, results = tune(checkpoint, pairs)
    return best, best_by_source(results)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="STEM of the run's best checkpoint (STEM.safetensors + .json)")
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--name", default="glandseg_small")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)

    from napari_glandseg.model.checkpoint import load_checkpoint

    pairs = validation_pairs(args.config)
    shipped = WEIGHTS / f"{args.name}.safetensors"
    new_best, new_organs = organ_scores(args.checkpoint.with_suffix(".safetensors"), pairs)
    old_best, old_organs = organ_scores(shipped, pairs)
    better = {o: (new_organs[o]["object_f1"], new_organs[o]["pixel_dice"]) > (old_organs[o]["object_f1"],
                                                                                old_organs[o]["pixel_dice"])
              for o in new_organs}
    report = {"validation_images": len(pairs), "new": new_organs, "shipped": old_organs,
              "new_balanced": new_best, "shipped_balanced": old_best, "better_by_organ": better}
    print(json.dumps(report, indent=1, default=str))
    if args.dry_run or not all(better.values()):
        print("not shipped" + ("" if args.dry_run else ": not better on every organ's validation images"))
        return 0
    model = load_checkpoint(args.checkpoint.with_suffix(".safetensors"))
    old = load_checkpoint(shipped).card.provenance
    run_dir = args.checkpoint.parent
    start_name, start = started_from(model.card.provenance)
    prov = dict(model.card.provenance)  # the run's command, config, data, best validation
    prov.update({
        "license": old.get("license"),
        "data_description": old.get("data_description"),
        "continued_from": {"model": start_name} | {k: start.get(k) for k in STARTED_FROM if k in start},
        "how": f"training/finetune.py --config {args.config.as_posix()} (continued from the bundled {start_name}), "
               f"then training/ship_cpu_default.py --config {args.config.as_posix()}",
        "device": "CPU (threads and precision: the run's config and log)",
        "postprocess_profiles": {"by_organ": new_organs, "replaced": {"by_organ": old_organs}},
        "weights": "fp16 (loaded as fp32)",
    })
    prov = without_run_dir(prov, run_dir)
    card = dataclasses.replace(
        model.card, name=args.name, postprocess=new_best["params"], organ=None,
        profiles={o: {k: r["params"][k] for k in grid_for(model.card)} | {"fill_holes": r["params"]["fill_holes"]}
                  for o, r in new_organs.items() if "/" not in o},
        provenance=prov)
    print(f"shipped {write_bundled(model, card, run_dir, args.name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
