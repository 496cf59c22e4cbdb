"""Evaluate a checkpoint on a GlaS-style folder (images/*.png + masks/*.png).

Per image and overall (mean over images): pixel Dice / IoU, object F1, object Dice, object
Hausdorff (GlaS challenge definitions, ``napari_glandseg.labels.metrics``), plus pooled pixel
Dice over all pixels. Masks that are binary are split into connected components.

    python training/evaluate.py runs/x/best.safetensors ../shared/data/glas/testA --mpp 0.62 --json -
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def segment(model, rgb: np.ndarray, mpp: float, device) -> np.ndarray:
    """Gland instances at the image's resolution, through the package's inference API.

    ``inference.segment_image`` is the path the plugin and CLI use; until it exists, the same
    steps are done here (resample to the model's µm/px, whole-image probabilities,
    post-processing, resample the labels back).
    """
    try:
        from napari_glandseg.inference import segment_image
    except ImportError:
        segment_image = None
    if segment_image is not None:
        labels = np.asarray(segment_image(rgb, model, mpp=mpp, device=device))
    else:
        from napari_glandseg.inference.postprocess import probabilities_to_instances
        from napari_glandseg.train.common import predict_probs

        scale = mpp / model.card.mpp
        h, w = rgb.shape[:2]
        small = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                        Image.BILINEAR))
        probs = predict_probs(model, small, device, amp=device.type == "cuda")
        labels = probabilities_to_instances(probs, mpp=model.card.mpp, params=model.card.postprocess)
    if labels.shape != rgb.shape[:2]:
        labels = np.asarray(Image.fromarray(labels.astype(np.int32), mode="I").resize((rgb.shape[1], rgb.shape[0]),
                                                                                      Image.NEAREST))
    return labels.astype(np.int32)


def evaluate_folder(model, folder: Path, *, mpp: float, device, limit: int | None = None,
                    progress=None) -> dict[str, Any]:
    """Metrics for every image of ``folder`` with a mask; returns {"images": [...], "overall": {...}}."""
    from napari_glandseg.labels.metrics import evaluate_pair

    folder = Path(folder)
    paths = sorted((folder / "images").glob("*.png"))[:limit]
    if not paths:
        raise FileNotFoundError(f"{folder}: no images/*.png (a GlaS-style folder has images/ and masks/)")
    rows, inter, total = [], 0, 0
    for i, p in enumerate(paths):
        mask_path = folder / "masks" / p.name
        if not mask_path.exists():
            raise FileNotFoundError(f"{mask_path}: mask for {p.name} is missing")
        rgb = np.asarray(Image.open(p).convert("RGB"))
        gt = np.asarray(Image.open(mask_path))
        gt = gt[..., 0] if gt.ndim == 3 else gt
        pred = segment(model, rgb, mpp, device)
        rows.append({"name": p.stem, **evaluate_pair(pred, gt)})
        inter += int(((pred > 0) & (gt > 0)).sum())
        total += int((pred > 0).sum() + (gt > 0).sum())
        if progress:
            progress(i + 1, len(paths), p.stem)
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not k.startswith("n_")]
    overall: dict[str, Any] = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    overall["pixel_dice_pooled"] = 1.0 if total == 0 else 2 * inter / total
    overall["n_images"] = len(rows)
    return {"images": rows, "overall": overall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="NAME.safetensors / NAME.json, or a preset name (bundled weights)")
    parser.add_argument("folder", type=Path, help="GlaS-style folder: images/*.png + masks/*.png")
    parser.add_argument("--mpp", type=float, default=0.62, help="µm/px of the images (GlaS: 0.62)")
    parser.add_argument("--json", dest="json_out", help="write the results as JSON to this file ('-': stdout)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    args = parser.parse_args(argv)

    import torch

    from napari_glandseg.model import load_model, pick_device

    device = pick_device(args.device)
    model = load_model(args.checkpoint, device=device)
    with torch.inference_mode():
        result = evaluate_folder(model, args.folder, mpp=args.mpp, device=device, limit=args.limit,
                                 progress=lambda d, t, n: print(f"[{d}/{t}] {n}", file=sys.stderr))
    result = {"checkpoint": str(args.checkpoint), "folder": str(args.folder), "mpp": args.mpp,
              "model_mpp": model.card.mpp, **result}
    text = json.dumps(result, indent=1)
    if args.json_out == "-":
        print(text)
    else:
        if args.json_out:
            Path(args.json_out).write_text(text + "\n", encoding="utf-8")
        for k, v in result["overall"].items():
            print(f"{k:>20s}: {v:.4f}" if isinstance(v, float) else f"{k:>20s}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
