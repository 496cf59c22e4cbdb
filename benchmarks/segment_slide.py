"""Whole-slide run on a generated slide of real tissue; prints one JSON line per slide size.

The slide (default 50,000² px at 0.5 µm/px) is a pyramidal JPEG TIFF written once to
bench_out/ from pre-compressed tiles: about 30 % real GlaS tissue, the rest white glass, in one
of two layouts: ``ellipses`` (three large blocks) or ``pieces`` (many small fragments and thin
biopsy strips spread over the slide, as tissue lies on real slides). Measured in the same
process:

* end-to-end ``segment_slide`` time, output Mpx/s (store px at the model's µm/px) and the
  engine's model throughput (tiles run / wall time) against the bare forward throughput of the
  same Predictor on the same tiles and batch size (``engine_ratio``, target >= 0.85);
* peak RSS (psutil, sampled every 50 ms in a thread; target < 3 GB) and its growth with a 4×
  larger slide;
* model tiles run against the tiles whose core meets the real tissue (``tiles_run_per_tissue_tile``,
  goal <= 1.15; the run mask's 64-µm margin is what it costs) and model tiles run on
  pure glass (their box meets no tissue tile of the generator: ``glass_tiles_run``).

    .venv/bin/python benchmarks/segment_slide.py [--size 50000] [--layout pieces] [--quick] [--model NAME|PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
#: real tissue to build the slide from ($GLANDSEG_BENCH_TISSUE: a folder of GlaS images where ../shared is not)
GLAS = Path(os.environ.get("GLANDSEG_BENCH_TISSUE") or ROOT / ".." / "shared" / "data" / "glas" / "train" / "images")
MPP = 0.5
TILE = 512
GLASS = 243
#: tissue ellipses (cy, cx, ry, rx) as fractions of the side: about 30 % of the area
ELLIPSES = ((0.30, 0.32, 0.22, 0.20), (0.68, 0.62, 0.20, 0.26), (0.25, 0.78, 0.12, 0.12))
#: fraction of the slide under tissue in the "pieces" layout
PIECES_TISSUE = 0.3


def tissue_layout(n: int, layout: str) -> np.ndarray:
    """Which of the n×n level-0 TILE² tiles hold tissue (the generator's ground truth)."""
    centres = (np.arange(n) + 0.5) / n
    if layout == "ellipses":
        y, x = centres[:, None], centres[None, :]
        inside = np.zeros((n, n), bool)
        for cy, cx, ry, rx in ELLIPSES:
            inside |= ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1
        return inside
    # pieces: fragments (1-3 tiles) and thin strips (1 tile wide, 3-10 long) with glass between
    rng = np.random.default_rng(7)
    grid = np.zeros((n, n), bool)
    while grid.mean() < PIECES_TISSUE:
        y, x = rng.integers(0, n, 2)
        if rng.random() < 0.4:  # a biopsy strip, horizontal or vertical
            length = int(rng.integers(3, 11))
            if rng.random() < 0.5:
                grid[y, x : x + length] = True
            else:
                grid[y : y + length, x] = True
        else:
            h, w = rng.integers(1, 4, 2)
            grid[y : y + h, x : x + w] = True
    return grid


def write_slide(path: Path, side: int, layout: str) -> Path:
    """Pyramidal JPEG TIFF: level 0 from pre-compressed tiles (tissue or glass by the layout),
    the lower levels true downsamples of it (so a coarse level has tissue exactly where level 0
    has: the tissue detector reads a coarse level)."""
    import imagecodecs
    import tifffile
    from PIL import Image

    if path.exists():
        return path
    raw = []
    for f in sorted(GLAS.glob("*.png"))[:24]:
        im = np.asarray(Image.open(f).convert("RGB"))
        if min(im.shape[:2]) >= TILE:
            raw.append(np.ascontiguousarray(im[:TILE, :TILE]))
    tissue = [imagecodecs.jpeg_encode(im, level=85) for im in raw]
    glass = imagecodecs.jpeg_encode(np.full((TILE, TILE, 3), GLASS, np.uint8), level=85)
    n0 = -(-side // TILE)
    layout = np.where(tissue_layout(n0, layout),
                      (np.arange(n0)[:, None] * 7 + np.arange(n0)[None, :] * 3) % len(raw), -1)
    sizes = [side]
    while sizes[-1] > 1024:
        sizes.append(sizes[-1] // 2)

    def level0():
        for i in range(n0):
            for j in range(n0):
                yield glass if layout[i, j] < 0 else tissue[layout[i, j]]

    def level(k: int):
        sub = TILE >> k
        small = [np.asarray(Image.fromarray(im).resize((sub, sub), Image.Resampling.BOX)) for im in raw]
        per = 1 << k  # level-0 tiles per level-k tile, along each side
        n = -(-sizes[k] // TILE)
        for i in range(n):
            for j in range(n):
                tile = np.full((TILE, TILE, 3), GLASS, np.uint8)
                block = layout[i * per : (i + 1) * per, j * per : (j + 1) * per]
                for a, b in zip(*np.nonzero(block >= 0), strict=True):
                    tile[a * sub : (a + 1) * sub, b * sub : (b + 1) * sub] = small[block[a, b]]
                yield imagecodecs.jpeg_encode(tile, level=85)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
        for k, s in enumerate(sizes):
            tw.write(level0() if k == 0 else level(k), shape=(s, s, 3), dtype="uint8", tile=(TILE, TILE), compression="jpeg",
                     photometric="rgb", subfiletype=1 if k else 0, metadata=None,
                     resolution=(1e4 / (MPP * 2**k),) * 2, resolutionunit="CENTIMETER")
    tmp.rename(path)
    return path


class PeakRSS:
    """Peak resident memory of this process, sampled in a thread."""

    def __init__(self, every_s: float = 0.05):
        import psutil

        self.proc, self.every, self.peak = psutil.Process(), every_s, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.every)

    def __enter__(self) -> PeakRSS:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def run_one(side: int, args, model, name: str) -> dict:
    from model_forward import forward_rate
    from napari_glandseg.inference import SlideRunSettings, segment_slide
    from napari_glandseg.inference.predictor import Predictor
    from napari_glandseg.slide import open_slide

    slide = open_slide(write_slide(args.out / f"slide_v2_{args.layout}_{side}.tif", side, args.layout))
    pred = Predictor(model, device=args.device, batch_size=args.batch_size)
    card = pred.card
    f = card.mpp / slide.mpp
    n = -(-side // TILE)
    truth = tissue_layout(n, args.layout)

    def meets_tissue(y: float, x: float, h: float, w: float) -> bool:
        """Whether a level-0 box meets a generator tile with tissue."""
        i0, i1 = max(0, int(y // TILE)), min(n, int(-(-(y + h) // TILE)))
        j0, j1 = max(0, int(x // TILE)), min(n, int(-(-(x + w) // TILE)))
        return bool(truth[i0:i1, j0:j1].any())

    # the engine reads each model tile by its own box: count the reads of boxes on pure glass
    glass_runs = [0]
    read = slide.read_at_mpp

    def counting_read(box, target_mpp):
        if not meets_tissue(*box):
            glass_runs[0] += 1
        return read(box, target_mpp)

    slide.read_at_mpp = counting_read
    # model tiles (the engine's slide grid) whose core meets real tissue: the least a run needs
    from napari_glandseg.inference.tiling import SlideTiles

    grid = SlideTiles(card.tile_px, card.overlap_px)
    store_side = -(-side // f)
    cores = [grid.core(i) for i in grid.span(0, int(store_side))]
    needed = sum(meets_tissue(a * f, b * f, (a1 - a) * f, (b1 - b) * f) for a, a1 in cores for b, b1 in cores)
    # bare forward throughput: same predictor, same batch size, tissue tiles from this slide
    t = card.tile_px
    spots = np.argwhere(truth)[:: max(1, int(truth.sum()) // (2 * pred.batch_size))][: 2 * pred.batch_size]
    tiles = np.stack([read((i * TILE, j * TILE, t * f, t * f), card.mpp)[:t, :t] for i, j in spots])
    bare = forward_rate(pred, tiles, args.bare_batches)
    pred.calls = pred.tiles = 0
    out = args.out / f"store_{side}.zarr"
    shutil.rmtree(out, ignore_errors=True)
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        stats = segment_slide(slide, out, pred, SlideRunSettings(chunk_px=args.chunk_px)).stats()
        wall = time.perf_counter() - t0
    engine = pred.tiles / stats["t_chunks_s"]
    shape = stats["shape"]
    return {
        "benchmark": "segment_slide", "model": name, **pred.info(), "slide_px": side, "slide_mpp": MPP,
        "store_px": shape, "chunks": stats["chunks"], "chunks_with_tissue": stats["chunks_with_tissue"],
        "layout": args.layout, "tiles": pred.tiles, "model_calls": pred.calls, "objects": stats["objects"],
        "tiles_run": stats["tiles_run"], "tiles_padding": stats["tiles_padding"],
        "tiles_meeting_tissue_mask": stats["tiles_with_tissue"], "tiles_meeting_tissue": needed,
        "tiles_run_per_tissue_tile": round(stats["tiles_run"] / max(1, needed), 3),
        "glass_tiles_run": glass_runs[0],
        "seconds": round(wall, 1), "t_chunks_s": round(stats["t_chunks_s"], 1),
        "t_stitch_pyramid_s": round(stats["t_stitch_s"], 1), "t_tissue_s": round(stats["t_tissue_s"], 2),
        "output_mpx_per_s": round(shape[0] * shape[1] / 1e6 / wall, 2),
        "tissue_chunk_mpx_per_s": round(stats["chunks_with_tissue"] * args.chunk_px**2 / 1e6 / wall, 3),
        "bare_tiles_per_s": round(bare, 2), "engine_tiles_per_s": round(engine, 2),
        "engine_tiles_per_s_incl_stitch": round(pred.tiles / wall, 2),
        "engine_ratio": round(engine / bare, 3), "engine_ratio_incl_stitch": round(pred.tiles / wall / bare, 3),
        "peak_rss_gb": round(rss.peak / 1e9, 3),
    }


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from model_forward import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=50_000, help="slide side in level-0 px")
    ap.add_argument("--quick", action="store_true", help="only the given size, not 4× its area")
    ap.add_argument("--layout", choices=("ellipses", "pieces"), default="pieces", help="where the tissue lies")
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--chunk-px", type=int, default=2048)
    ap.add_argument("--bare-batches", type=int, default=12)
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out")
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, name = load(args.model)
    sizes = [args.size] if args.quick else [args.size, 2 * args.size]
    for side in sizes:
        print(json.dumps(run_one(side, args, model, name)), flush=True)


if __name__ == "__main__":
    main()
