"""Segment one screen-sized field of a slide end to end; prints one JSON line.

A 4096² pyramidal JPEG TIFF of real GlaS tissue at 0.5 µm/px is written once to bench_out/.
The field (default 2048 × 1024 level-0 px, what a viewer shows at full resolution) is
segmented with ``segment_region``: read at the model's µm/px with a context margin, tiles,
blending, post-processing. Target: < 3 s (median of 3, after a warm-up).

    .venv/bin/python benchmarks/segment_view.py [--field 2048x1024] [--model NAME|PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
#: real tissue to build the slide from ($GLANDSEG_BENCH_TISSUE: a folder of GlaS images where ../shared is not)
GLAS = Path(os.environ.get("GLANDSEG_BENCH_TISSUE") or ROOT / ".." / "shared" / "data" / "glas" / "train" / "images")
MPP = 0.5


def write_field_slide(path: Path, side: int = 4096) -> Path:
    """A tiled JPEG pyramid of GlaS crops (levels down by 2)."""
    import tifffile
    from PIL import Image

    if path.exists():
        return path
    crops = [np.asarray(Image.open(f).convert("RGB"))[:512, :512] for f in sorted(GLAS.glob("*.png"))[:16]]
    crops = [c for c in crops if c.shape[:2] == (512, 512)]
    img = np.empty((side, side, 3), np.uint8)
    rng = np.random.default_rng(0)
    for y in range(0, side, 512):
        for x in range(0, side, 512):
            img[y : y + 512, x : x + 512] = crops[rng.integers(len(crops))]
    levels = [img]
    while min(levels[-1].shape[:2]) > 512:
        a = levels[-1].astype(np.uint16)
        levels.append(((a[::2, ::2] + a[1::2, ::2] + a[::2, 1::2] + a[1::2, 1::2] + 2) // 4).astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
        for i, lv in enumerate(levels):
            tw.write(lv, tile=(256, 256), compression="jpeg", photometric="rgb", subfiletype=1 if i else 0,
                     metadata=None, resolution=(1e4 / (MPP * 2**i),) * 2, resolutionunit="CENTIMETER")
    tmp.rename(path)
    return path


def main() -> None:
    import sys

    from napari_glandseg.inference import segment_region
    from napari_glandseg.inference.predictor import Predictor
    from napari_glandseg.slide import open_slide

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from model_forward import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--field", default="2048x1024", help="W×H in level-0 px")
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out")
    args = ap.parse_args()
    w, h = (int(v) for v in args.field.lower().split("x"))
    slide = open_slide(write_field_slide(args.out / "field_4096.tif"), mpp=MPP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, name = load(args.model)
    pred = Predictor(model, device=args.device)
    bbox = (512, 512, h, w)
    segment_region(slide, bbox, predictor=pred)  # warm-up (allocator, threads)
    times, n = [], 0
    for _ in range(3):
        t0 = time.perf_counter()
        res = segment_region(slide, bbox, predictor=pred)
        times.append(time.perf_counter() - t0)
        n = int(res.labels.max())
    sec = statistics.median(times)
    print(json.dumps({
        "benchmark": "segment_view", "model": name, **pred.info(), "field_level0_px": [h, w],
        "field_model_px": list(res.labels.shape), "seconds": round(sec, 3), "target_s": 3.0,
        "ok": sec < 3.0, "glands": n,
    }))


if __name__ == "__main__":
    main()
