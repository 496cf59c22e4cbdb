"""The ablation table: each arm's best checkpoint on its validation images (each organ with its own
best post-processing, ``tune_postprocess``) and, for information only, on GlaS testA (official
instances, the checkpoint's own default post-processing, as ``glandseg evaluate`` runs it).

    python training/ablation_report.py --config training/configs/ablation_cpu_finetune.yaml \\
        scratch=/work/runs/ablation/scratch/best smit=/work/runs/ablation/smit/best tgsd=...

One JSON line per arm: ``validation`` {organ: {object_f1, pixel_dice, params}}, ``testA``
{object_f1, pixel_dice, object_dice, benign / malignant object F1}, the arm's steps and the
validation step the checkpoint was kept at.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import by_grade  # noqa: E402
from tune_postprocess import best_by_source, tune, validation_pairs  # noqa: E402

TESTA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "glas" / "testA"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("arms", nargs="+", metavar="NAME=STEM", help="an arm's name and its checkpoint stem")
    ap.add_argument("--config", type=Path, required=True, help="the arms' training config (its validation split)")
    ap.add_argument("--test", type=Path, default=TESTA, help="a GlaS-style folder scored for information")
    args = ap.parse_args(argv)

    from napari_glandseg.commands.evaluate import evaluate_folder
    from napari_glandseg.labels.folders import glas_masks
    from napari_glandseg.model.checkpoint import load_checkpoint

    pairs = validation_pairs(args.config)
    for arm in args.arms:
        name, _, stem = arm.partition("=")
        weights = Path(stem).with_suffix(".safetensors")
        _, results = tune(weights, pairs)
        organs = {o: {k: r[k] for k in ("object_f1", "pixel_dice", "params")} for o, r in best_by_source(results).items()}
        masks = glas_masks(args.test)
        test = evaluate_folder(args.test / "images", masks, model=load_checkpoint(weights), device="cpu",
                               mask_kind="instance" if masks.name == "instances" else "auto")
        kept = json.loads(Path(stem).with_suffix(".json").read_text(encoding="utf-8")).get("provenance", {})
        print(json.dumps({"arm": name, "checkpoint": str(weights), "kept_at": kept.get("validation", {}).get("step"),
                          "validation": organs,
                          "testA": {k: test["overall"][k] for k in ("object_f1", "object_f1_pooled", "pixel_dice",
                                                                   "object_dice")}
                          | {g: m["object_f1"] for g, m in by_grade(test["per_image"], args.test).items()}}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
