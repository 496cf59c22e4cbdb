"""``glandseg evaluate``: segment a folder of images and score them against their masks (GlaS metrics)."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from napari_glandseg.commands._options import add_run_options
from napari_glandseg.errors import GlandsegError, check_mpp
from napari_glandseg.labels.folders import GLAS_MPP
from napari_glandseg.labels.metrics import MASK_KINDS

METRICS = ("pixel_dice", "pixel_iou", "object_f1", "object_dice", "object_hausdorff")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="segment images and score them against ground-truth masks",
        description="Segment each image in --images and compare with the mask of the same name (or "
        "NAME_anno) in --masks (binary masks become connected components; instance masks are used as they are; "
        "--mask-kind says which, by default masks with two values are binary). The output says "
        "how each mask was read.",
    )
    parser.add_argument("--images", required=True, type=Path, help="folder of RGB images")
    parser.add_argument("--masks", required=True, type=Path, help="folder of masks (same file names)")
    parser.add_argument("--model", default=None, help="preset name or checkpoint path (default: bundled)")
    parser.add_argument("--mpp", type=float, default=GLAS_MPP, help=f"the images' µm/px (default {GLAS_MPP}, GlaS)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--batch-size", type=int, default=None)
    add_run_options(parser)
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: probabilities averaged over flips and quarter turns (8x slower)")
    parser.add_argument("--mask-kind", choices=MASK_KINDS, default="auto",
                        help="binary (foreground > 0, split into connected components), instance (values "
                        "are gland ids), or auto: binary when a mask has two values, else instance")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def evaluate_folder(images: Path, masks: Path, *, model: Any = None, mpp: float = GLAS_MPP,
                    device: str | None = None, batch_size: int | None = None, limit: int | None = None,
                    progress=None, mask_kind: str = "auto", tta: bool = False, precision: str = "auto",
                    threads: int | None = None, organ: str | None = None) -> dict[str, Any]:
    """Per-image metrics and their means: ``{"per_image", "overall", "model", "masks"}``.

    ``masks`` counts how the masks were read ("binary" / "instance", see ``mask_kind``); each
    row's ``mask`` says it for that image.
    """
    from napari_glandseg.inference.region import get_predictor, segment_image
    from napari_glandseg.labels.folders import checked_pairs
    from napari_glandseg.labels.metrics import evaluate_pair, mask_reading, to_instances

    pairs = checked_pairs(images, masks, limit=limit)  # every named file checked before the model loads
    predictor = get_predictor(model, device, batch_size, tta=tta, precision=precision, threads=threads,
                              organ=organ)
    rows = []
    for i, pair in enumerate(pairs):
        rgb, raw = pair.read()
        reading = mask_reading(raw) if mask_kind == "auto" else mask_kind
        gt = to_instances(raw, reading)
        t0 = time.perf_counter()
        pred = segment_image(rgb, mpp=mpp, predictor=predictor)
        row = {"image": pair.image.name, **evaluate_pair(pred, gt, gt_kind="instance"), "mask": reading,
               "seconds": time.perf_counter() - t0}
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(pairs), pair.image.name)
    overall = {k: _mean([r[k] for r in rows]) for k in METRICS}
    # GlaS-style F1 over the whole set: true positives, predictions and glands pooled
    n_obj = sum(r["n_pred"] + r["n_true"] for r in rows)
    overall["object_f1_pooled"] = 2 * sum(r["n_tp"] for r in rows) / n_obj if n_obj else None
    overall["images"] = len(rows)
    kinds = [r["mask"] for r in rows]
    masks = {k: kinds.count(k) for k in ("binary", "instance") if k in kinds}
    return {"per_image": rows, "overall": overall, "model": predictor.card.name, "masks": masks,
            "compute": {**predictor.info(), "tta": bool(tta)}}


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def run(args: argparse.Namespace) -> int:
    from napari_glandseg.commands._progress import progress_bar

    check_mpp(args.mpp, "--mpp (the images' µm per pixel)")
    if args.limit is not None and args.limit < 1:
        raise GlandsegError(f"--limit must be at least 1 image, got {args.limit}")
    with progress_bar("evaluate", unit="image") as bar:
        result = evaluate_folder(
            args.images, args.masks, model=args.model, mpp=args.mpp, device=args.device,
            batch_size=args.batch_size, limit=args.limit, progress=bar, mask_kind=args.mask_kind, tta=args.tta,
            precision=args.precision, threads=args.threads, organ=args.organ,
        )
    if args.json:
        print(json.dumps(result))
        return 0
    print(format_table(result))
    return 0


def format_table(result: dict[str, Any]) -> str:
    heads = ("image", "Dice", "IoU", "objF1", "objDice", "objHaus", "pred", "true")
    compute = result.get("compute", {})
    lines = [f"model: {result['model']} ({_compute_text(compute)})", f"{heads[0]:<24}" + "".join(f"{h:>9}" for h in heads[1:])]
    for r in result["per_image"]:
        vals = [_fmt(r[k]) for k in METRICS] + [str(r["n_pred"]), str(r["n_true"])]
        lines.append(f"{r['image'][:24]:<24}" + "".join(f"{v:>9}" for v in vals))
    o = result["overall"]
    lines.append(f"{'mean (' + str(o['images']) + ' images)':<24}" + "".join(f"{_fmt(o[k]):>9}" for k in METRICS))
    lines.append(f"object F1 pooled over all images (GlaS challenge style): {_fmt(o.get('object_f1_pooled'))}")
    lines.append(masks_note(result.get("masks", {})))
    return "\n".join(lines)


def _compute_text(compute: dict[str, Any]) -> str:
    parts = [compute.get("device", "?"), compute.get("precision", "?")]
    if compute.get("organ"):
        parts.append(f"{compute['organ']} post-processing")
    if compute.get("threads"):
        parts.append(f"{compute['threads']} threads")
    return ", ".join(parts)


def masks_note(masks: dict[str, int]) -> str:
    """How the masks were read, in words."""
    said = {"binary": "binary (foreground split into connected components)",
            "instance": "instance maps (each value a gland)"}
    parts = [f"{n} as {said[k]}" for k, n in masks.items()]
    return "masks read: " + ", ".join(parts) + " (--mask-kind chooses)"


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"
