"""Click-to-segment quality and latency: one simulated click (or a 3-point squiggle) per gland.

For every gland of an image (GlaS: the official instances; RINGS: connected components of its
binary masks; ≥ 30 px at the model's µm/px): a click at the gland's most interior pixel (distance-transform maximum), or
a squiggle of 3 points along its long axis inside the shrunk gland; ``segment_gland`` on the
whole image at its own µm/px. Reported: mean per-gland Dice, and object F1 / object Dice of all
clicked glands together (each result a label, later ones drawn over earlier ones: merged or
split glands count as errors), latency per click (median, 90th percentile), and the mean gland
Dice after each of ``--corrections`` simulated corrective clicks (at the centre of the largest
error region: "this too" inside a missed part, "not this" in a wrong one, refining the same
gland from its previous result). Prints JSON lines.

    .venv/bin/python benchmarks/guided.py [--model PATH] [--limit 60]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from napari_glandseg.labels.folders import GLAS_MPP

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".." / "shared" / "data"
SETS = {  # name: (folder, µm/px, note)
    "glas_testA": (DATA / "glas" / "testA", GLAS_MPP, "never used in training or choices"),
    "rings_glands": (DATA / "rings" / "glands", 2.72, "3 of the 4 tiles were training tiles of the shipped model"),
}


def squiggle(mask: np.ndarray) -> list[tuple[int, int]]:
    """3 points at 25/50/75 % along the gland's long axis, each snapped into its shrunk mask."""
    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    inner = np.argwhere(dist >= max(1.0, 0.5 * dist.max())).astype(float)
    centre = inner.mean(0)
    axis = np.linalg.svd(inner - centre, full_matrices=False)[2][0]
    t = (inner - centre) @ axis
    points = []
    for q in (25, 50, 75):
        target = np.percentile(t, q)
        points.append(tuple(int(v) for v in inner[np.argmin(np.abs(t - target))]))
    return points


def run_set(name: str, folder: Path, mpp: float, model, limit: int, only: str | None = None,
            modes: tuple[str, ...] = ("click", "squiggle"), corrections: int = 2) -> list[dict]:
    from napari_glandseg.interactive import segment_gland
    from napari_glandseg.labels.folders import glas_masks, glas_pairs
    from napari_glandseg.labels.metrics import evaluate_pair, pixel_dice, to_instances
    from napari_glandseg.train.guided import click_point
    from napari_glandseg.train.guided_data import corrective_click

    kind = "instance" if glas_masks(folder).name == "instances" else "auto"  # GlaS: the official glands
    min_px = 30 * (model.card.mpp / mpp) ** 2
    rows = []
    for mode in modes:
        dices = [[] for _ in range(corrections + 1)]  # per-gland Dice after 0, 1, … corrective clicks
        times, refine_times, f1s, odices = [], [], [], []
        pairs = [p for p in glas_pairs(folder) if not only or p.name == only][:limit]
        for pair in pairs:
            rgb, mask = pair.read()
            gt = to_instances(mask, kind)
            pred = np.zeros(gt.shape, np.int32)
            for gid in range(1, int(gt.max()) + 1):
                truth = gt == gid
                if truth.sum() < min_px:
                    continue
                include = [click_point(truth)] if mode == "click" else squiggle(truth)
                t = time.perf_counter()
                result = segment_gland(rgb, include, mpp=mpp, model=model)
                times.append(time.perf_counter() - t)
                pred[result] = gid
                dices[0].append(pixel_dice(result, truth))
                for k in range(1, corrections + 1):  # the user's next click on the largest error
                    click = corrective_click(result, truth)
                    if click is not None:
                        point, inside = click
                        t = time.perf_counter()
                        result = segment_gland(rgb, [], [] if inside else [point], mpp=mpp, model=model,
                                               clicks=[point] if inside else [], previous=result)
                        refine_times.append(time.perf_counter() - t)
                    dices[k].append(pixel_dice(result, truth))
            scores = evaluate_pair(pred, gt, gt_kind="instance")
            f1s.append(scores["object_f1"])
            odices.append(scores["object_dice"])
        rows.append({
            "benchmark": "guided", "set": name + (f":{only}" if only else ""), "mode": mode, "images": len(f1s),
            "glands": len(dices[0]), "gland_dice_mean": round(float(np.mean(dices[0])), 4),
            "gland_dice_median": round(float(np.median(dices[0])), 4),
            **{f"gland_dice_after_{k}_corrections": round(float(np.mean(dices[k])), 4) for k in range(1, corrections + 1)},
            "object_f1": round(float(np.mean(f1s)), 4), "object_dice": round(float(np.mean(odices)), 4),
            "latency_s_median": round(float(np.median(times)), 3), "latency_s_p90": round(float(np.percentile(times, 90)), 3),
            "refine_latency_s_median": round(float(np.median(refine_times)), 3) if refine_times else None,
            "model": model.card.name, "guidance_channels": int(model.in_chans) - 3,
        })
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    import torch

    from napari_glandseg.interactive.segment import guided_model

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="guided checkpoint (default: the bundled one)")
    parser.add_argument("--limit", type=int, default=60, help="images per set")
    parser.add_argument("--sets", nargs="*", default=list(SETS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the free cores, as the tool)")
    parser.add_argument("--modes", nargs="*", default=["click", "squiggle"])
    parser.add_argument("--corrections", type=int, default=2, help="corrective clicks after the first (0: none)")
    args = parser.parse_args()
    if args.threads:
        os.environ["GLANDSEG_THREADS"] = str(args.threads)  # the click path sets its threads from this
    from napari_glandseg.model.precision import cpu_description, resolve_precision

    print(json.dumps({"cpu": cpu_description(), "threads": args.threads or "auto",
                      "precision": str(resolve_precision(torch.device("cpu"), "auto"))}), flush=True)
    model = guided_model(args.model, "cpu")
    for name in args.sets:
        folder, mpp, note = SETS[name]
        print(json.dumps({"set": name, "note": note}), flush=True)
        run_set(name, folder, mpp, model, args.limit, modes=tuple(args.modes), corrections=args.corrections)
        if name == "rings_glands":  # the tile the shipped guided model held out for validation
            run_set(name, folder, mpp, model, args.limit, only=held_out_rings(folder), modes=tuple(args.modes),
                    corrections=args.corrections)


def held_out_rings(folder: Path) -> str:
    from napari_glandseg.labels.folders import split_names

    names = sorted(p.stem for p in (folder / "images").glob("*.png"))
    return split_names(names, 0.15, 0)[1][0]


if __name__ == "__main__":
    main()
