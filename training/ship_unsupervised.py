"""Ship a model trained on proposals alone as the bundled ``glandseg_unsupervised``: fp16
safetensors + a card that says it saw no labels, with how it was made and what it measured.

Nothing here chooses weights or settings with labels: the model is the run's last checkpoint with
the default post-processing it was trained and measured with. The labels of the held-out
validation images decide one thing only, whether it ships: it must beat the proposals it was
trained on (mIoU on those images, ``benchmarks/propose.py``'s JSON lines; the package must have
left out exactly those images: holdout 0.15, seed 0).

    python benchmarks/propose.py --sets glas_val rings_val > RUN/proposals_val.jsonl
    python benchmarks/propose.py --model RUN/last.safetensors --sets glas_val rings_val > RUN/model_val.jsonl
    python training/ship_unsupervised.py RUN/last --config training/configs/unsupervised_cpu.yaml \\
        --proposals RUN/proposals_val.jsonl --model-scores RUN/model_val.jsonl [--dry-run]

A self-training round (``training/configs/unsupervised_selftrain_cpu.yaml``: the shipped model's
own glands as targets) must beat the shipped model instead: ``--proposals`` is then its scores
(``benchmarks/propose.py --model glandseg_unsupervised``), and the card keeps the shipped model's
provenance under ``started_from``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shipping import machine_paths, without_run_dir, write_bundled  # noqa: E402

NAME = "glandseg_unsupervised"
#: The validation split the benchmark's glas_val / rings_val sets are (labels.folders.validation_names).
HOLDOUT, SEED = 0.15, 0
KEYS = ("images", "miou", "iou_gland", "iou_background", "pixel_dice", "object_f1", "object_dice")


def scores(path: Path, method: str) -> dict[str, dict]:
    """``{set: {metric: value}}`` from benchmarks/propose.py's JSON lines, all of ``method``
    ("spm-proposals" or "model")."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            if row.get("method") != method:
                raise SystemExit(f"{path}: a {row.get('method')!r} line where {method!r} scores were expected")
            out[row["set"]] = {k: row[k] for k in KEYS if k in row}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, help="STEM of the run's checkpoint (STEM.safetensors + .json)")
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--proposals", type=Path, required=True, help="the proposals' scores on the validation sets")
    ap.add_argument("--model-scores", type=Path, required=True, help="this checkpoint's scores on the same sets")
    ap.add_argument("--ship-despite", nargs=2, metavar=("SET", "REASON"), default=None,
                    help="ship although not better on SET, for REASON (both recorded in the card)")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)

    from napari_glandseg.model.checkpoint import load_checkpoint
    from napari_glandseg.model.precision import cpu_description
    from napari_glandseg.model.resolve import resolve
    from napari_glandseg.train.common import parse_config
    from napari_glandseg.train.supervised import FinetuneConfig
    from napari_glandseg.unsupervised.pseudo_labels import SELF_TRAINING_LABELS

    run_dir = args.checkpoint.resolve().parent
    cfg = parse_config(FinetuneConfig, ["--config", str(run_dir / "config.yaml")], __doc__)  # as the run resolved it
    package_dir = Path(cfg.data[0])
    package = json.loads((package_dir / "manifest.json").read_text(encoding="utf-8"))
    made = package.get("proposals", {})
    if (made.get("holdout"), made.get("seed")) != (HOLDOUT, SEED):
        raise SystemExit(f"{package_dir}: proposals made with holdout {made.get('holdout')}, seed {made.get('seed')}: "
                         f"the validation images (holdout {HOLDOUT}, seed {SEED}) may be among its training images")
    model = load_checkpoint(args.checkpoint.with_suffix(".safetensors")).eval()
    self_training = package.get("labels") == SELF_TRAINING_LABELS  # a round on a no-label model's glands
    if self_training:
        installed = resolve(NAME).sha256()
        if (package.get("model"), package.get("model_sha256")) != (NAME, installed):
            raise SystemExit(f"{package_dir}: labelled by {package.get('model')} ({package.get('model_sha256')}), "
                             f"not by the installed {NAME} ({installed}): the card could not say what it started from")
    baseline = "model" if self_training else "spm-proposals"
    base, new = scores(args.proposals, baseline), scores(args.model_scores, "model")
    sets = sorted(set(base) & set(new))
    if not sets:
        raise SystemExit(f"{args.proposals}, {args.model_scores}: no validation set scored in both")
    worse = [s for s in sets if not new[s]["miou"] > base[s]["miou"]]
    overridden = args.ship_despite is not None and worse == [args.ship_despite[0]]
    print(json.dumps({"sets": sets, "baseline": baseline, "baseline_scores": base, "model": new,
                      "not_better_on": worse}, indent=1))
    if args.dry_run or (worse and not overridden):
        print("not shipped" + ("" if args.dry_run else f": not better than its {baseline} on {', '.join(worse)}"))
        return 0
    prov = {
        "command": "training/finetune.py --config " + str(args.config),
        "config": dataclasses.asdict(cfg),
        "data": list(cfg.data),
        "labels": ("none: trained on the glands that the model it started from (made without labels: "
                   "started_from) drew on the same unlabeled images, starting from its weights (no mask, grade "
                   "or other label of any kind)" if self_training else
                   "none: trained on SPM gland proposals only (no mask, grade or other label of any kind); "
                   "its encoders start from SMIT pretraining on unlabeled tissue"),
        "how": (f"training/propose_package.py --model {NAME} (the previous round's glands), " if self_training else
                "training/propose_package.py (proposals), ")
               + f"training/finetune.py --config {args.config}, then training/ship_unsupervised.py "
                 "(last checkpoint, no selection)",
        "steps": _last_step(run_dir),
        "proposals": {k: package[k] for k in ("proposals", "labels", "mpp") if k in package}
        | {"images": len(package["regions"]), "glands": sum(r["n_glands"] for r in package["regions"])},
        "device": f"CPU ({cpu_description()}), {cfg.threads} torch thread(s), beside other work",
        "validation_measured_only": {"sets": sets, "model": new, ("started_from" if self_training else "proposals"): base,
                                     "note": "held-out images; their labels decided only whether the model ships"},
        "shipped_despite": {"set": args.ship_despite[0], "reason": args.ship_despite[1]} if overridden else None,
        "weights": "fp16 (loaded as fp32)",
        "license": "Images (no labels) of GlaS: research use only (not for clinical use); RINGS: CC BY 4.0 "
                   "(Salvi et al. 2021, doi:10.1016/j.artmed.2021.102076; data doi:10.17632/h8bdwrtnr5.1); "
                   "CMU-1-Small-Region (OpenSlide test data): CC0 1.0",
    }
    if self_training:  # how the model it started from was made (its card: no weights read)
        prov["started_from"] = resolve(NAME).card.provenance
    prov = without_run_dir(prov, run_dir)
    prov = without_run_dir(prov, package_dir, "PROPOSALS")
    if cfg.init and Path(cfg.init).parent != Path("."):  # a path, not a model's name
        prov = without_run_dir(prov, Path(cfg.init).parent, "PRETRAINED")
    if found := machine_paths(prov):
        raise SystemExit(f"the card would record machine paths {found[:3]}: name them in ship_unsupervised.py")
    card = dataclasses.replace(model.card, name=NAME, provenance=prov, profiles={}, organ=None)
    print(f"shipped {write_bundled(model, card, run_dir, NAME)}")
    return 0


def _last_step(run_dir: Path) -> int | None:
    """The step of the run's last log line (the last checkpoint's)."""
    steps = [json.loads(line).get("step") for line in (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()
             if line.startswith("{")]
    return next((s for s in reversed(steps) if s is not None), None)


if __name__ == "__main__":
    sys.exit(main())
