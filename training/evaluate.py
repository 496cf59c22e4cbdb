"""Evaluate a checkpoint on a GlaS-style folder (images/*.png + the official instances/*.png where
the folder has them, else masks/*.png): ``glandseg
evaluate`` (one evaluation path: the same tiling, resampling and post-processing as the plugin
and the CLI), plus a breakdown by grade when a GlaS ``Grade.csv`` lies beside or above the
folder, and optional test-time augmentation.

    python training/evaluate.py runs/x/best.safetensors ../shared/data/glas/testA --mpp 0.62 --organ colon --json -
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg.labels.folders import GLAS_MPP


def by_grade(rows: list[dict[str, Any]], folder: Path) -> dict[str, dict[str, float]]:
    """Mean metrics of the benign and of the malignant images (GlaS Grade.csv), {} without one."""
    from napari_glandseg.train.data import read_grades

    csv = next((p for p in (folder / "Grade.csv", folder.parent / "Grade.csv") if p.exists()), None)
    if csv is None:
        return {}
    grades = read_grades(csv)
    out = {}
    for grade, name in ((0, "benign"), (1, "malignant")):
        sub = [r for r in rows if grades.get(Path(r["image"]).stem) == grade]
        if sub:
            out[name] = {k: float(np.nanmean([r[k] for r in sub])) for k in ("pixel_dice", "object_f1", "object_dice")}
            out[name]["images"] = len(sub)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="NAME.safetensors / NAME.json, or a preset name (bundled weights)")
    parser.add_argument("folder", type=Path, help="GlaS-style folder: images/*.png + instances/*.png or masks/*.png")
    parser.add_argument("--mpp", type=float, default=GLAS_MPP, help=f"µm/px of the images (default {GLAS_MPP}, GlaS)")
    parser.add_argument("--json", dest="json_out", help="write the results as JSON to this file ('-': stdout)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation (flips and quarter turns)")
    parser.add_argument("--organ", default=None, help="the card's post-processing profile for this organ "
                        "(colon, prostate); default: the card's own")
    args = parser.parse_args(argv)

    from napari_glandseg.commands.evaluate import evaluate_folder
    from napari_glandseg.labels.folders import glas_masks
    from napari_glandseg.model import load_model
    from napari_glandseg.model.tta import with_tta

    model = with_tta(load_model(args.checkpoint, device="cpu" if args.device == "auto" else args.device), args.tta)
    masks = glas_masks(args.folder)
    result = evaluate_folder(args.folder / "images", masks, model=model, mpp=args.mpp, device=args.device,
                             limit=args.limit, mask_kind="instance" if masks.name == "instances" else "auto",
                             organ=args.organ,
                             progress=lambda d, t, n: print(f"[{d}/{t}] {n}", file=sys.stderr))
    result = {"checkpoint": str(args.checkpoint), "folder": str(args.folder), "masks": masks.name, "mpp": args.mpp,
              "tta": args.tta, "organ": args.organ,
              "model_mpp": model.card.mpp, **result, "by_grade": by_grade(result["per_image"], args.folder)}
    text = json.dumps(result, indent=1)
    if args.json_out == "-":
        print(text)
    else:
        if args.json_out:
            Path(args.json_out).write_text(text + "\n", encoding="utf-8")
        for k, v in result["overall"].items():
            print(f"{k:>20s}: {v:.4f}" if isinstance(v, float) else f"{k:>20s}: {v}")
        for grade, metrics in result["by_grade"].items():
            print(f"{grade:>20s}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "images"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
