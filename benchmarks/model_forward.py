"""Bare forward throughput of the model on real tissue tiles; prints one JSON line.

The reference the whole-slide engine is compared with: the Predictor's own ``predict`` (same
buffers, autocast and channels_last as the engine) on batches of tiles that are already in
memory, with no reading, blending or post-processing.

    .venv/bin/python benchmarks/model_forward.py [--model NAME|PATH] [--batch-size 4] [--batches 10]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GLAS = ROOT / ".." / "shared" / "data" / "glas" / "train" / "images"


def tissue_tiles(n: int, tile_px: int) -> np.ndarray:
    """``n`` tile_px² crops of real GlaS tissue (uint8 N×H×W×3)."""
    from PIL import Image

    files = sorted(GLAS.glob("*.png"))
    out = np.empty((n, tile_px, tile_px, 3), np.uint8)
    for i in range(n):
        im = np.asarray(Image.open(files[i % len(files)]).convert("RGB"))
        if min(im.shape[:2]) < tile_px:
            im = np.pad(im, ((0, max(0, tile_px - im.shape[0])), (0, max(0, tile_px - im.shape[1])), (0, 0)), mode="symmetric")
        out[i] = im[:tile_px, :tile_px]
    return out


def load(model_name: str | None):
    """The model and a name saying whether it is trained (untrained runs at the same speed)."""
    import torch

    from napari_glandseg.model import DEFAULT_MODEL, load_model
    from napari_glandseg.model.registry import bundled_weights_dir

    torch.manual_seed(0)  # an untrained model is the same in every run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(model_name, device="cpu")
    name = model.card.name
    if model_name is None and not (bundled_weights_dir() / f"{DEFAULT_MODEL}.safetensors").exists():
        name += " (untrained)"
    return model, name


def forward_rate(predictor, tiles: np.ndarray, batches: int) -> float:
    """Tiles per second of ``predictor.predict`` over ``batches`` batches (after one warm-up)."""
    bs = predictor.batch_size
    predictor.predict(tiles[:bs])
    t0 = time.perf_counter()
    for i in range(batches):
        j = (i * bs) % max(1, len(tiles) - bs + 1)
        predictor.predict(tiles[j : j + bs])
    return batches * bs / (time.perf_counter() - t0)


def main() -> None:
    from napari_glandseg.inference.predictor import Predictor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--no-amp", action="store_true")
    args = ap.parse_args()
    model, name = load(args.model)
    pred = Predictor(model, device=args.device, batch_size=args.batch_size, amp=not args.no_amp)
    tile = model.card.tile_px
    tiles = tissue_tiles(max(16, 2 * pred.batch_size), tile)
    rate = forward_rate(pred, tiles, args.batches)
    print(json.dumps({
        "benchmark": "model_forward", "model": name, "tile_px": tile, **pred.info(),
        "tiles_per_s": round(rate, 2), "mpx_per_s": round(rate * tile * tile / 1e6, 3),
    }))


if __name__ == "__main__":
    main()
