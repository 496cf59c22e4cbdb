"""Polygons + measurements of a whole-slide label store (``outputs.write_tables``); prints JSON.

The store holds real gland outlines at the model's µm/px: the GlaS testA annotation masks
(0.62 µm/px) halved to 1.24 µm/px, laid on ``--tissue`` of a ``--side``² store in blobs (the
default is the store of a 20,000² px slide at 0.5 µm/px with 30 % tissue), with whole-slide
style ids (``image << 16 | gland``). Measured: seconds, ms per gland, CPU seconds of this process (all
of the work with ``--workers 1``), peak RSS growth, for the GeoJSON + CSV that ``glandseg
segment`` writes. On a shared machine compare CPU seconds, or runs made side by side.

    .venv/bin/python benchmarks/write_tables.py [--side 8064] [--tissue 0.3] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GLAS = ROOT / ".." / "shared" / "data" / "glas" / "testA" / "masks"
FACTOR, MPP = 2.48, 1.24


def gland_store(path: Path, side: int, tissue: float):
    """The store (made once per size) and its gland count: a ``side``² store px grid of mask-sized
    cells, about ``tissue`` of them (in blobs, as tissue lies on a slide) holding a GlaS mask."""
    from PIL import Image
    from scipy import ndimage as ndi

    from napari_glandseg.labels.store import LabelStore

    masks = [np.asarray(Image.open(f))[::2, ::2] > 0 for f in sorted(GLAS.glob("*.png"))]
    h, w = max(m.shape[0] for m in masks), max(m.shape[1] for m in masks)
    ny, nx = side // h, side // w
    rng = np.random.default_rng(0)
    blobs = ndi.gaussian_filter(rng.random((ny, nx)), 1.5)
    cells = blobs >= np.quantile(blobs, 1 - tissue)
    labels = np.zeros((side, side), np.int32)
    for k, (i, j) in enumerate(zip(*np.nonzero(cells), strict=True)):
        m = masks[k % len(masks)]
        lab, _ = ndi.label(m)
        labels[i * h : i * h + m.shape[0], j * w : j * w + m.shape[1]] = np.where(lab > 0, ((k + 1) << 16) + lab, 0)
    if not path.exists():
        store = LabelStore.create(path, labels.shape, chunk_px=2048, mpp=MPP)
        store.levels[0][:] = labels
    return LabelStore.open(path), len(np.unique(labels)) - 1, labels.shape


def main() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from napari_glandseg.labels.outputs import write_tables
    from segment_slide import PeakRSS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=8064, help="store side (px at 1.24 µm/px; 8064 = a 20,000² slide at 0.5)")
    ap.add_argument("--tissue", type=float, default=0.3, help="fraction of the store with glands")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: write_tables' choice)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out")
    args = ap.parse_args()
    store, n, shape = gland_store(args.out / f"tables_{args.side}_{args.tissue}.zarr", args.side, args.tissue)
    out = args.out / f"tables_{args.side}_out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    slide_shape = (int(shape[0] * FACTOR) - 2, int(shape[1] * FACTOR) - 1)
    with PeakRSS() as rss:
        base = rss.proc.memory_info().rss
        t0, c0 = time.perf_counter(), time.process_time()
        kw = {} if args.workers is None else {"workers": args.workers}
        glands = write_tables(store, out, factor=FACTOR, mpp=MPP, slide_shape=slide_shape, **kw)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert glands == n, (glands, n)
    print(json.dumps({
        "benchmark": "write_tables", "store_px": list(shape), "glands": glands, "seconds": round(seconds, 2),
        "ms_per_gland": round(1000 * seconds / glands, 3),
        "workers": args.workers, "cpu_s_this_process": round(cpu, 2), "rss_growth_gb": round((rss.peak - base) / 1e9, 3),
        "geojson_mb": round((out / "glands.geojson").stat().st_size / 1e6, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
