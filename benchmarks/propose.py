"""Gland proposals with no labels (``glandseg propose``), and models trained on them
(``--model glandseg_unsupervised``), measured the way MSSG measures.

Prints one JSON line per data set: mIoU (mean of the gland IoU and the background IoU, each over
all pixels of the set pooled, as MSSG / PiCIE evaluate; ``miou_per_image`` is the mean of the
per-image values), pixel Dice, object F1 and object Dice (``napari_glandseg.labels.metrics``,
against the official instance masks where the set has them) and seconds per image (one torch
thread). MSSG reports mIoU 62.72 % on GlaS (SGSCN 52.61 %, PiCIE 48.77 %) after training a
network on its proposals (MSG); these are the proposals alone. The cue's thresholds were chosen
on GlaS train images only; run this on testA and RINGS, never to tune.

``glas_val`` / ``rings_val`` are the validation images of the training configs (15 % of GlaS train
and of the RINGS tiles, seed 0), which the unsupervised model's proposals left out.

    GLANDSEG_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/propose.py --limit 10
    python benchmarks/propose.py --model glandseg_unsupervised --sets glas_testA glas_val rings_val
    python benchmarks/propose.py --slide ../shared/data/slides/cmu-1-small-region.svs --region-px 2048 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from napari_glandseg.labels.folders import GLAS_MPP

DATA = Path(__file__).resolve().parent.parent / ".." / "shared" / "data"
#: (name, images, pooled-mIoU masks, instance masks or None, µm/px, only the validation images)
SETS = {
    "glas_testA": ("glas/testA/images", "glas/testA/masks", "glas/testA/instances", GLAS_MPP, False),
    "rings_glands": ("rings/glands/images", "rings/glands/masks", None, 2.72, False),
    "glas_val": ("glas/train/images", "glas/train/masks", "glas/train/instances", GLAS_MPP, True),
    "rings_val": ("rings/glands/images", "rings/glands/masks", None, 2.72, True),
}


def labeller(model: str | None, iterations: int | None):
    """(what, labels(rgb, mpp) -> (int labels, seconds)): the proposals, or a model's glands."""
    import time

    if model is None:
        from napari_glandseg.unsupervised import ClusterConfig, ProposalConfig, propose_glands

        cfg = ProposalConfig() if iterations is None else ProposalConfig(cluster=ClusterConfig(iterations=iterations))

        def propose(rgb, mpp):
            props = propose_glands(rgb, mpp, cfg, threads=1)
            return props.labels, props.info["seconds"]

        return {"method": "spm-proposals", "work_mpp": cfg.work_mpp, "iterations": cfg.cluster.iterations}, propose
    from napari_glandseg.inference.region import get_predictor, segment_image

    predictor = get_predictor(model, "cpu", None)

    def segment(rgb, mpp):
        t0 = time.perf_counter()
        return segment_image(rgb, mpp=mpp, predictor=predictor), time.perf_counter() - t0

    return {"method": "model", "model": model, **predictor.info()}, segment


def measure(name: str, limit: int | None, iterations: int | None, model: str | None = None) -> dict:
    from napari_glandseg.labels.folders import validation_names
    from napari_glandseg.labels.masks import read_image, read_mask
    from napari_glandseg.labels.metrics import evaluate_pair

    images, masks, instances, mpp, validation_only = SETS[name]
    what, label = labeller(model, iterations)
    files = sorted((DATA / images).glob("*.png"), key=lambda p: [int(t) if t.isdigit() else t for t in
                                                                  p.stem.replace("_", " ").split()])
    if validation_only:
        held = set(validation_names((DATA / images).parent, 0.15, 0))
        files = [p for p in files if p.stem in held]
    files = files[:limit] if limit else files
    inter, union = np.zeros(2), np.zeros(2)
    rows = []
    for path in files:
        rgb = read_image(path)
        truth = read_mask(DATA / masks / path.name) > 0
        gt = read_mask(DATA / instances / path.name) if instances else truth.astype(np.uint8)
        labels, seconds = label(rgb, mpp)
        found = labels > 0
        i = np.array([(~found & ~truth).sum(), (found & truth).sum()])
        u = np.array([(~found | ~truth).sum(), (found | truth).sum()])
        inter += i
        union += u
        scores = evaluate_pair(labels, gt, gt_kind="instance" if instances else "binary")
        rows.append({"miou": float(np.mean(i / np.maximum(u, 1))), "seconds": seconds, **scores})
    iou = inter / np.maximum(union, 1)

    def mean(key: str) -> float:
        return float(np.nanmean([r[key] for r in rows]))

    return {
        "benchmark": "propose", "set": name, "images": len(rows), "mpp": mpp, **what,
        "threads": torch.get_num_threads(),
        "miou": float(iou.mean()), "iou_gland": float(iou[1]), "iou_background": float(iou[0]),
        "miou_per_image": mean("miou"), "pixel_dice": mean("pixel_dice"), "object_f1": mean("object_f1"),
        "object_dice": mean("object_dice"), "seconds_per_image": mean("seconds"),
        "reported_glas_miou": {"MSSG": 0.6272, "SGSCN": 0.5261, "PiCIE": 0.4877},
    }


def time_slide_region(slide_path: Path, side: int, threads: int, out: Path) -> dict:
    """``glandseg propose SLIDE --region 0,0,SIDE,SIDE``'s code on a real slide, timed end to end
    (reading, proposals, label store, GeoJSON, CSV)."""
    import time

    from napari_glandseg.commands.propose import propose_slide
    from napari_glandseg.unsupervised import ProposalConfig

    t0 = time.perf_counter()
    summary = propose_slide(slide_path, out, mpp=None, region=f"0,0,{side},{side}", config=ProposalConfig(),
                            threads=threads)
    return {"benchmark": "propose_slide_region", "slide": slide_path.name, "region_level0_px": side,
            "slide_mpp": summary["slide_mpp"], "work_px": round(side * summary["slide_mpp"] / summary["model_mpp"]),
            "threads": threads, "glands": summary["glands"], "seconds_total": round(time.perf_counter() - t0, 2),
            "seconds_propose": round(summary["timings_s"]["propose"], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=sorted(SETS))
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each set")
    parser.add_argument("--iterations", type=int, default=None, help="clustering steps (default: the product's)")
    parser.add_argument("--model", default=None, help="measure this model's glands instead of the proposals")
    parser.add_argument("--slide", type=Path, default=None, help="time proposals on a region of this slide instead")
    parser.add_argument("--region-px", type=int, default=2048, help="with --slide: the region's side (level-0 px)")
    parser.add_argument("--threads", type=int, default=1, help="with --slide: torch threads")
    args = parser.parse_args(argv)
    if args.slide is not None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(time_slide_region(args.slide, args.region_px, args.threads, Path(tmp))), flush=True)
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    if not DATA.is_dir():
        print(f"no data at {DATA.resolve()}", file=sys.stderr)
        return 1
    for name in args.sets:
        print(json.dumps(measure(name, args.limit, args.iterations, args.model)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
