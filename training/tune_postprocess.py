"""Choose a checkpoint's post-processing thresholds on its validation images (never on test data).

Probabilities are computed once per image through the same path as ``glandseg evaluate``
(resample to the model's µm/px, tiled prediction); each candidate setting then only re-runs the
post-processing, and is scored at the images' own resolution. The setting with the best mean
object F1 over the organs (ties: pixel Dice) becomes the card's ``postprocess``; the best on each
organ's images alone becomes that organ's profile (``profiles``: data entries say their
``organ``), with the search recorded in its provenance.

    python training/tune_postprocess.py runs/default_small/best.safetensors \\
        --config training/configs/default_small.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np

GRID = {
    "neck_um": (0.0, 2.5, 5.0, 7.5),  # first: every uneroded setting is tried first and wins a tie
    "gland_threshold": (0.4, 0.5, 0.6),
    "border_threshold": (0.2, 0.3, 0.4, 0.5, 0.7),
    "min_area_um2": (100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0),
}
#: a model with a distance head: its map's cores split seeds (0 first: the border seeds alone) where
#: a valley deeper than seed_valley parts them, in place of eroding seeds at necks (which the map
#: makes needless; off, with the least used thresholds, to keep the search about twice GRID's)
DISTANCE_GRID = {"neck_um": (0.0,), "gland_threshold": (0.4, 0.5, 0.6), "border_threshold": (0.3, 0.4, 0.5, 0.7),
                 "min_area_um2": (200.0, 400.0, 800.0, 1600.0, 3200.0), "seed_distance": (0.0, 0.3, 0.45, 0.6),
                 "seed_valley": (0.0, 0.1, 0.2)}


def grid_for(card) -> dict[str, tuple]:
    """The settings searched for a model of ``card``."""
    return DISTANCE_GRID if "distance" in card.channels else GRID


def validation_pairs(config: Path) -> list[tuple[Path, Path, float, str]]:
    """(image, mask, µm/px, source) of the images the training config held out for validation."""
    import yaml

    from napari_glandseg.labels.folders import GLAS_MPP, glas_pairs, split_names
    from napari_glandseg.train.data import DataSource

    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    pairs = []
    for src in map(DataSource.parse, cfg["data"]):
        if src.glass:
            continue
        folder = glas_pairs(src.path)  # as training read it: the official instances/ where there are
        _, val = split_names([p.name for p in folder], float(cfg.get("val_fraction", 0.15)), int(cfg.get("seed", 0)))
        mpp = float(src.mpp or cfg.get("data_mpp", GLAS_MPP))
        pairs += [(p.image, p.mask, mpp, src.organ or str(src.path)) for p in folder if p.name in val]
    return pairs


def tune(checkpoint: Path, pairs: list[tuple[Path, Path, float, str]], *,
         grid: dict[str, tuple] | None = None) -> tuple[dict, list[dict]]:
    """Every grid setting (None: :func:`grid_for` the model) scored on the validation images;
    folders (organs) weigh equally."""
    from napari_glandseg.inference.postprocess import probabilities_to_instances
    from napari_glandseg.inference.region import get_predictor, probabilities
    from napari_glandseg.labels.folders import ImageMask
    from napari_glandseg.labels.metrics import evaluate_pair, to_instances
    from napari_glandseg.model.checkpoint import load_checkpoint
    from napari_glandseg.slide.resample import resize_labels, resize_rgb

    predictor = get_predictor(load_checkpoint(checkpoint), "cpu", None)
    card = predictor.card
    grid = grid or grid_for(card)
    cached = []
    for img_path, mask_path, mpp, source in pairs:
        rgb, mask = ImageMask(Path(img_path), Path(mask_path)).read()
        gt = to_instances(mask, "instance" if Path(mask_path).parent.name == "instances" else "auto")
        f = mpp / card.mpp
        small = resize_rgb(rgb, max(1, round(rgb.shape[0] * f)), max(1, round(rgb.shape[1] * f)))
        cached.append((probabilities(small, predictor), gt, source))
    results = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        params = {**card.postprocess, **dict(zip(keys, values, strict=True))}
        if "seed_valley" in grid and not params.get("seed_distance") and params["seed_valley"] != grid["seed_valley"][0]:
            continue  # without seeds from the map its valley depth changes nothing: scored once
        by_source: dict[str, list[dict]] = {}
        for probs, gt, source in cached:
            pred = resize_labels(probabilities_to_instances(probs, mpp=card.mpp, params=params), *gt.shape)
            by_source.setdefault(source, []).append(evaluate_pair(pred, gt, gt_kind="instance", hausdorff=False))
        result = {"params": params}
        for key in ("object_f1", "pixel_dice", "object_dice"):
            per_source = {src: float(np.mean([s[key] for s in rows])) for src, rows in by_source.items()}
            result[key] = float(np.mean(list(per_source.values())))
            result[f"{key}_by_source"] = per_source
        results.append(result)
    best = max(results, key=lambda r: (round(r["object_f1"], 4), r["pixel_dice"]))
    return best, results


def best_by_source(results: list[dict]) -> dict[str, dict]:
    """The best setting on each source's (organ's) images alone: {source: {params, object_f1, pixel_dice}}."""
    sources = results[0]["object_f1_by_source"]
    out = {}
    for src in sources:
        r = max(results, key=lambda r: (round(r["object_f1_by_source"][src], 4), r["pixel_dice_by_source"][src]))
        out[src] = {"params": r["params"], "object_f1": r["object_f1_by_source"][src],
                    "pixel_dice": r["pixel_dice_by_source"][src]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="STEM.safetensors of the trained model (its card is updated)")
    parser.add_argument("--config", type=Path, required=True, help="the training config (gives the validation split)")
    parser.add_argument("--dry-run", action="store_true", help="print the result, leave the card as it is")
    args = parser.parse_args(argv)

    from napari_glandseg.model import save_checkpoint
    from napari_glandseg.model.checkpoint import load_checkpoint

    pairs = validation_pairs(args.config)
    best, results = tune(args.checkpoint, pairs)
    model = load_checkpoint(args.checkpoint)
    grid = grid_for(model.card)
    current = {k: v for k, v in model.card.postprocess.items() if k in grid}
    before = next((r for r in results if all(r["params"][k] == v for k, v in current.items())), None)
    by_organ = best_by_source(results)
    report = {"validation_images": len(pairs), "best": best, "before": before, "by_organ": by_organ,
              "candidates": len(results)}
    print(json.dumps(report, indent=2))
    if not args.dry_run:
        organs = {k: v for k, v in by_organ.items() if "/" not in k}  # sources named by an organ
        card = dataclasses.replace(
            model.card, postprocess=best["params"], organ=None,
            profiles={organ: {k: r["params"][k] for k in grid} for organ, r in organs.items()},
            provenance={**model.card.provenance,
                        "postprocess_tuning": {k: v for k, v in report.items() if k != "candidates"}})
        save_checkpoint(model, args.checkpoint.with_suffix(""), card=card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
