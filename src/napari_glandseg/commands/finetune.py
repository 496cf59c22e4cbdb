"""``glandseg finetune``: fine-tune a model on corrected masks (the engine of the viewer's
"Fine-tune on my corrections" button), writing ``OUT/model.safetensors`` + ``OUT/model.json``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from napari_glandseg.errors import GlandsegError, check_mpp
from napari_glandseg.labels.folders import GLAS_MPP


def register(subparsers: Any) -> None:
    from napari_glandseg.train.corrections_settings import REPLAY_ENV, CorrectionSettings

    d = CorrectionSettings()
    parser = subparsers.add_parser(
        "finetune", help="fine-tune a model on corrected masks (image/mask folders, training packages)",
        description="Fine-tune --model on the images in --images with the masks of the same names in "
        "--masks (binary or instance masks) and/or training packages exported by the plugin. Part of "
        "the data is held back and scored before and after; the base model's own training data is "
        f"replayed so it keeps what it knew (found from its card, or ${REPLAY_ENV}). Every input is "
        "checked before training starts. OUT/model.safetensors loads with --model in segment and "
        "evaluate, and in the viewer (Load checkpoint…).",
    )
    parser.add_argument("--images", type=Path, help="folder of RGB images")
    parser.add_argument("--masks", type=Path, help="folder of masks (same file names as the images)")
    parser.add_argument("--mpp", type=float, default=GLAS_MPP, help=f"the images' µm/px (default {GLAS_MPP}, GlaS)")
    parser.add_argument("--package", type=Path, action="append", default=[], metavar="PKG",
                        help="a training package exported by the plugin (repeatable)")
    parser.add_argument("--model", default=None, help="base model: preset, checkpoint path or user model name "
                        "(default: the bundled model)")
    parser.add_argument("--minutes", type=float, default=d.minutes, help=f"time budget of the whole run (default {d.minutes:g})")
    parser.add_argument("--out", required=True, type=Path, help="new (or empty) output folder")
    replay = parser.add_mutually_exclusive_group()
    replay.add_argument("--replay", action="append", default=None, metavar="PATH[@MPP[@WEIGHT]]",
                        help="a GlaS-style folder (images/, masks/) of the base model's data to replay (repeatable)")
    replay.add_argument("--no-replay", action="store_true", help="train on the corrections only (the model may forget)")
    parser.add_argument("--replay-ratio", type=float, default=d.replay_ratio, help=f"share of replay crops (default {d.replay_ratio:g})")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr:g})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"crops per step (default {d.batch_size})")
    parser.add_argument("--crop-px", type=int, default=d.crop_px, help=f"crop edge, model px (default {d.crop_px})")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (default: the time budget)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-postprocess", action="store_true",
                        help="keep the base model's gland threshold and minimum area (default: chosen again, when at least 30 glands are held back, "
                        "on the held-back corrections after fine-tuning)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_glandseg.commands._progress import progress_bar
    from napari_glandseg.model import DEFAULT_MODEL
    from napari_glandseg.train.corrections import finetune_on_corrections
    from napari_glandseg.train.corrections_data import ImageFolders, parse_replay_entry
    from napari_glandseg.train.corrections_settings import CorrectionSettings

    if (args.images is None) != (args.masks is None):
        raise GlandsegError("give --images and --masks together")
    if args.images is None and not args.package:
        raise GlandsegError("nothing to train on: give --images DIR --masks DIR and/or --package PKG")
    check_mpp(args.mpp, "--mpp (the images' µm per pixel)")
    if args.threads is not None and args.threads < 1:
        raise GlandsegError(f"--threads must be at least 1, got {args.threads}")
    settings = CorrectionSettings(
        minutes=args.minutes, max_steps=args.max_steps, lr=args.lr, batch_size=args.batch_size,
        crop_px=args.crop_px, replay_ratio=args.replay_ratio, device=args.device, threads=args.threads,
        seed=args.seed, calibrate_postprocess=not args.keep_postprocess)
    replay = [] if args.no_replay else [parse_replay_entry(e) for e in args.replay] if args.replay else None
    folders = [ImageFolders(args.images, args.masks, args.mpp)] if args.images is not None else []
    with progress_bar("finetune", unit="‰") as bar:
        result = finetune_on_corrections(
            args.model or DEFAULT_MODEL, out_dir=args.out, folders=folders, packages=args.package,
            replay=replay, settings=settings, progress=bar)
    if args.json:
        print(json.dumps({"model": str(result.model_path), "before": result.before, "after": result.after,
                          "replay_before": result.replay_before, "replay_after": result.replay_after,
                          "postprocess": result.card.postprocess, "steps": result.steps,
                          "seconds": round(result.seconds, 1), "warnings": result.warnings,
                          "worse_than_base": result.worse}))
        return 0
    print(summary(result))
    return 0


def summary(result: Any) -> str:
    """Before → after, in words and numbers."""
    from napari_glandseg.train.corrections_scoring import describe_postprocess

    def row(what: str, a: dict | None, b: dict | None) -> str:
        if a is None or b is None:
            return f"{what:<34}-"
        return (f"{what:<34}object F1 {a['object_f1']:.3f} → {b['object_f1']:.3f}   "
                f"Dice {a['pixel_dice']:.3f} → {b['pixel_dice']:.3f}   ({b['images']} images)")

    lines = [f"model: {result.model_path} ({result.steps} steps, {result.seconds:.0f} s)",
             row("held-back corrections:", result.before, result.after),
             row("held-out replay images (forgetting):", result.replay_before, result.replay_after),
             f"post-processing: {describe_postprocess(result.card.postprocess)}"]
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines)
