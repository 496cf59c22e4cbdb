"""Ship a trained checkpoint as a bundled model: fp16 weights, its card with test metrics, MODEL_CARD.md.

The fp16 copy is what gets evaluated (on a held-out GlaS-style folder, never seen in training),
so the metrics in the card are those of the file users load.

    python training/ship_model.py /work/runs/default_small/best --test ../shared/data/glas/testA
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from napari_glandseg.labels.folders import GLAS_MPP

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "src" / "napari_glandseg" / "model" / "weights"
GLAS_TERMS = (
    "GlaS (Gland Segmentation in Colon Histology Images Challenge, MICCAI 2015; Sirinukunwattana et "
    "al., Medical Image Analysis 35:489-502, 2017; Sirinukunwattana, Snead & Rajpoot, IEEE TMI "
    "34(11):2366-2378, 2015). The dataset is released for research use only; models trained on it "
    "inherit that restriction: not for clinical use."
)


def ship(checkpoint: Path, test: Path, *, name: str, out_dir: Path = WEIGHTS_DIR, test_mpp: float = GLAS_MPP) -> dict:
    from napari_glandseg._atomic import write_text_atomic
    from napari_glandseg.commands.evaluate import evaluate_folder
    from napari_glandseg.model import save_checkpoint
    from napari_glandseg.model.checkpoint import checkpoint_paths, load_checkpoint

    model = load_checkpoint(checkpoint)
    stem = out_dir / name
    save_checkpoint(model, stem, half=True)
    shipped = load_checkpoint(stem.with_suffix(".safetensors"))
    t0 = time.perf_counter()
    result = evaluate_folder(test / "images", test / "masks", model=shipped, mpp=test_mpp, device="cpu")
    card = dataclasses.replace(shipped.card, provenance={
        **shipped.card.provenance,
        "source_checkpoint": str(checkpoint),
        "test": {"data": str(test), "mpp": test_mpp, "seconds": round(time.perf_counter() - t0, 1),
                 **{k: v for k, v in result["overall"].items() if v is not None}},
        "license": GLAS_TERMS,
        "weights": "fp16 (loaded as fp32)",
    })
    write_text_atomic(checkpoint_paths(stem)[1], card.to_json() + "\n")  # the weights stay as evaluated
    (out_dir / "MODEL_CARD.md").write_text(model_card(card, result), encoding="utf-8")
    return result


def model_card(card, result: dict) -> str:
    p = card.provenance
    val, test = p.get("validation", {}), p.get("test", {})
    cfg = p.get("config", {})
    rows = [("pixel Dice", "pixel_dice"), ("pixel IoU", "pixel_iou"), ("object F1 (mean over images)", "object_f1"),
            ("object F1 (pooled, GlaS style)", "object_f1_pooled"), ("object Dice", "object_dice"),
            (f"object Hausdorff (px at {test.get('mpp', GLAS_MPP)} µm/px)", "object_hausdorff")]
    table = "\n".join(
        f"| {label} | {_fmt(val.get(key))} | {_fmt(test.get(key))} |" for label, key in rows
    )
    return f"""# Model card: {card.name}

The default gland model of napari-glandseg, loaded by `load_model()` with no download.

| | |
|---|---|
| Architecture | dual-path Swin Transformer U-Net (`{card.arch}`, preset `{card.name}`), {_n_params(card)} |
| Input | RGB H&E at **{card.mpp} µm/px** (half GlaS resolution), tiles of {card.tile_px} px with {card.overlap_px} px overlap |
| Output | background / gland / gland border; instances by border-aware splitting ({card.postprocess}) |
| Weights | fp16 safetensors (loaded as fp32), no pickle |
| Training data | {", ".join(cfg.get("data", p.get("data", [])))}: GlaS train, {cfg.get("val_fraction", "?")} held out for validation; GlaS testA never used in training |
| Command | `{p.get("command", "?")}` |
| Steps | {val.get("step", "?")} of {cfg.get("steps", "?")} (best validation object F1), batch {cfg.get("batch_size", "?")}, crops {cfg.get("crop_px", "?")} px, AdamW lr {cfg.get("lr", "?")} cosine |

## How it was made

1. `python {p.get("command", "training/finetune.py ...")}` (from scratch, no pretraining: SMIT
   pretraining and tumor-guided distillation are in `training/` but were not run for this model
   on a 2-core CPU); the checkpoint with the best validation object F1 is kept.
2. `python training/tune_postprocess.py BEST.safetensors --config training/configs/default_small.yaml`:
   post-processing thresholds chosen on the same validation images{_tuning(p)}.
3. `python training/ship_model.py BEST.safetensors --test ../shared/data/glas/testA`: fp16 copy,
   evaluated on testA, this card.

## Metrics

Validation: the held-out GlaS train images, as measured during training (at the model's µm/px,
before post-processing tuning). Test: GlaS testA ({result["overall"].get("images")} images),
evaluated on the shipped fp16 file with `glandseg evaluate --images {test.get("data", "?")}/images
--masks {test.get("data", "?")}/masks` ({test.get("seconds", "?")} s on 2 CPU cores).

| metric | validation | testA |
|---|---|---|
{table}

## Terms

{GLAS_TERMS}

Glands of other organs (prostate) and other scanners were not part of training: check the
results on your slides, correct them in napari and fine-tune (`training/finetune.py` on the
exported training package).
"""


def _tuning(p: dict) -> str:
    t = p.get("postprocess_tuning")
    if not t or not t.get("before"):
        return ""
    return (f" (object F1 at full resolution {t['before']['object_f1']:.3f} with the defaults → "
            f"{t['best']['object_f1']:.3f}, {t['validation_images']} images)")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def _n_params(card) -> str:
    from napari_glandseg.model import create_model

    n = sum(p.numel() for p in create_model(card.name).parameters())
    return f"{n / 1e6:.1f} M parameters"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="STEM.safetensors / STEM.json of the trained model")
    parser.add_argument("--test", type=Path, required=True, help="GlaS-style folder held out from training")
    parser.add_argument("--name", default="glandseg_small", help="bundled name (the preset load_model() uses)")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    result = ship(args.checkpoint, args.test, name=args.name, out_dir=args.out_dir)
    json.dump(result["overall"], sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
