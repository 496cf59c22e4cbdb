"""Few-shot fine-tuning on prostate: does fine-tuning on corrections help without forgetting colon?

Starts from the **colon-only** model (the bundled ``glandseg_colon``, trained on GlaS train only:
it has never seen the RINGS tiles; ``--model`` picks another), fine-tunes it with ``finetune_on_corrections`` (the engine of ``glandseg
finetune`` and of the viewer's button, replaying GlaS train as the model card says) on k of
the 4 RINGS gland tiles, and scores the result with ``glandseg evaluate``'s code on the tiles
not used (at 2.72 µm/px) and on GlaS testA (forgetting). Rotations spread over the choices of
k tiles. Prints one JSON line per run and one summary line per k.

    .venv/bin/python benchmarks/few_shot.py [--k 1 2 3] [--rotations 2] [--minutes 2] [--threads 1]

``--proposals``: the k tiles are trained on their gland proposals (``glandseg propose``: no model,
no labels), **uncorrected**, instead of their masks: the no-label loop of a new organ, proposals
→ fine-tune → a model, scored on the other tiles' masks against the base model.

RINGS: CC BY 4.0, Salvi et al., Artificial Intelligence in Medicine 2021,
doi:10.1016/j.artmed.2021.102076; data doi:10.17632/h8bdwrtnr5.1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_glandseg.labels.folders import GLAS_MPP

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".." / "shared" / "data"
RINGS = DATA / "rings" / "glands"
GLAS_TEST = DATA / "glas" / "testA"
RINGS_MPP = 2.72
KEYS = ("object_f1", "pixel_dice", "object_dice")


def link_folder(folder: Path, names: list[str]) -> tuple[Path, Path]:
    """images/ and masks/ of the RINGS tiles ``names`` (symlinks) in ``folder``."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
        for n in names:
            (folder / sub / n).symlink_to((RINGS / sub / n).resolve())
    return folder / "images", folder / "masks"


def proposal_masks(images: Path, out: Path) -> Path:
    """Gland proposals of every image in ``images`` (``glandseg propose``'s folder path): their masks folder."""
    from napari_glandseg.commands.propose import propose_folder
    from napari_glandseg.unsupervised import ProposalConfig

    propose_folder(images, out, mpp=RINGS_MPP, config=ProposalConfig(), threads=1)
    return out / "masks"


def rotations(tiles: list[str], k: int, n: int) -> list[list[str]]:
    """``n`` choices of ``k`` tiles, spread evenly over all combinations."""
    combos = [list(c) for c in itertools.combinations(tiles, k)]
    n = min(n, len(combos))
    return [combos[round(i * len(combos) / n)] for i in range(n)]


def rounded(metrics: dict) -> dict:
    return {k: round(metrics[k], 4) for k in KEYS}


def evaluate(model: Any, images: Path, masks: Path, mpp: float, limit: int | None = None) -> dict:
    from napari_glandseg.commands.evaluate import evaluate_folder

    result = evaluate_folder(images, masks, model=model if isinstance(model, torch.nn.Module) else str(model), mpp=mpp, device="cpu", limit=limit)
    return {"per_image": {r["image"]: {k: r[k] for k in KEYS} for r in result["per_image"]},
            **{k: result["overall"][k] for k in KEYS}}


def mean_of(rows: list[dict]) -> dict:
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in KEYS}


def main(argv: list[str] | None = None) -> int:
    from napari_glandseg.model import load_model
    from napari_glandseg.train.corrections import finetune_on_corrections
    from napari_glandseg.train.corrections_data import ImageFolders
    from napari_glandseg.train.corrections_settings import CorrectionSettings

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="glandseg_colon", help="base model (default: glandseg_colon, the colon-only model)")
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--rotations", type=int, default=2, help="choices of k tiles per k")
    p.add_argument("--minutes", type=float, default=2.0, help="time budget of each fine-tune")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--glas-limit", type=int, default=None, help="only the first N GlaS testA images")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--replay-ratio", type=float, default=None)
    p.add_argument("--crop-px", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--no-replay", action="store_true")
    p.add_argument("--proposals", action="store_true", help="train on the tiles' proposals (no labels), not their masks")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = {k: getattr(args, k) for k in ("lr", "replay_ratio", "crop_px", "batch_size", "max_steps")
                 if getattr(args, k) is not None}
    settings = CorrectionSettings(minutes=args.minutes, threads=args.threads, device="cpu", **overrides)
    tiles = sorted(p.name for p in (RINGS / "images").glob("*.png"))

    with tempfile.TemporaryDirectory(prefix="few_shot_") as tmp:
        tmp = Path(tmp)
        base = args.model
        t0 = time.perf_counter()
        base_rings = evaluate(base, RINGS / "images", RINGS / "masks", RINGS_MPP)["per_image"]
        base_glas = evaluate(base, GLAS_TEST / "images", GLAS_TEST / "masks", GLAS_MPP, args.glas_limit)
        print(json.dumps({"event": "base", "model": str(base), "rings_per_tile": base_rings,
                          "glas_testA": {k: base_glas[k] for k in KEYS}, "eval_s": round(time.perf_counter() - t0, 1)}),
              flush=True)
        summary: dict[int, list[dict]] = {}
        for k in args.k:
            for i, train in enumerate(rotations(tiles, k, args.rotations)):
                test = [t for t in tiles if t not in train]
                run = tmp / f"k{k}_{i}"
                images, masks = link_folder(run / "train", train)
                if args.proposals:
                    masks = proposal_masks(images, run / "proposals")
                t_run = time.perf_counter()
                result = finetune_on_corrections(
                    str(base), out_dir=run / "model", folders=[ImageFolders(images, masks, RINGS_MPP)],
                    replay=[] if args.no_replay else None, settings=settings)
                wall = time.perf_counter() - t_run
                test_images, test_masks = link_folder(run / "test", test)
                after_rings = evaluate(result.model_path, test_images, test_masks, RINGS_MPP)
                after_glas = evaluate(result.model_path, GLAS_TEST / "images", GLAS_TEST / "masks", GLAS_MPP, args.glas_limit)
                # the same fine-tuned model with its base's post-processing: what the calibration changed
                calibration = result.card.provenance.get("postprocess_calibration")
                kept = {}
                if calibration and calibration["chosen"] != calibration["base"]:
                    model = load_model(result.model_path, device="cpu")
                    model.card = model.card.replace(postprocess=calibration["base"])
                    kept = {"prostate_after_base_postprocess": rounded(evaluate(model, test_images, test_masks, RINGS_MPP)),
                            "glas_after_base_postprocess": rounded(evaluate(
                                model, GLAS_TEST / "images", GLAS_TEST / "masks", GLAS_MPP, args.glas_limit))}
                row = {
                    "event": "run", "k": k, "train": train, "test": test, "minutes": args.minutes,
                    "trained_on": "proposals (uncorrected)" if args.proposals else "masks",
                    "settings": overrides, "replay": not args.no_replay, "steps": result.steps,
                    "wall_s": round(wall, 1),
                    "prostate_before": mean_of([base_rings[t] for t in test]),
                    "prostate_after": rounded(after_rings),
                    "glas_before": rounded(base_glas),
                    "glas_after": rounded(after_glas),
                    "held_back_before": result.before, "held_back_after": result.after,
                    "postprocess": result.card.postprocess, **kept,
                }
                summary.setdefault(k, []).append(row)
                print(json.dumps(row), flush=True)
        for k, rows in summary.items():
            print(json.dumps({
                "event": "summary", "k": k, "runs": len(rows), "minutes": args.minutes,
                "trained_on": "proposals (uncorrected)" if args.proposals else "masks", "model": str(args.model),
                **{f"{what}_{when}": mean_of([r[f"{what}_{when}"] for r in rows])
                   for what in ("prostate", "glas") for when in ("before", "after")},
                "steps_mean": round(float(np.mean([r["steps"] for r in rows])), 1),
                "wall_s_mean": round(float(np.mean([r["wall_s"] for r in rows])), 1),
            }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
