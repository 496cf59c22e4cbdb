"""Open a 100,000 × 100,000 px pyramidal JPEG TIFF of real tissue; print one JSON line.

The slide is written once to bench_out/ (gitignored) from a handful of real GlaS crops,
JPEG-encoded once and written repeatedly as pre-compressed tiles. Measures: open time, RSS
growth after opening, reading the whole lowest level, and a random 1024² region at level 0
(median of 20). Targets: open < 0.5 s, RSS growth < 150 MB, region < 50 ms.

    .venv/bin/python benchmarks/open_slide.py [--side 100000] [--out bench_out]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GLAS = ROOT / ".." / "shared" / "data" / "glas" / "train" / "images"
TILE = 512


def encoded_tiles(n: int = 24, quality: int = 80) -> list[bytes]:
    """JPEG bytes of ``n`` real 512² tissue crops (GlaS images are 775 × 522 or larger)."""
    import imagecodecs
    from PIL import Image

    tiles = []
    for f in sorted(GLAS.glob("*.png"))[:n]:
        im = np.asarray(Image.open(f).convert("RGB"))
        if min(im.shape[:2]) >= TILE:
            tiles.append(imagecodecs.jpeg_encode(im[:TILE, :TILE], level=quality))
    if not tiles:
        raise SystemExit(f"no GlaS images at {GLAS}")
    return tiles


def write_slide(path: Path, side: int) -> None:
    import tifffile

    tiles = encoded_tiles()
    sizes = [side]
    while sizes[-1] >= TILE:  # down by 2 until the last level is < 512 px
        sizes.append(sizes[-1] // 2)

    def stream(n: int):
        for i in range(n):
            yield tiles[(i * 7 + i // 13) % len(tiles)]

    tmp = path.with_suffix(".tmp")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
        for i, s in enumerate(sizes):
            n = (-(-s // TILE)) ** 2
            tw.write(
                stream(n), shape=(s, s, 3), dtype="uint8", tile=(TILE, TILE),
                compression="jpeg", photometric="rgb", subfiletype=1 if i else 0,
                metadata=None, resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER",
                **({"subifds": len(sizes) - 1} if i == 0 else {}),
            )
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench_{args.side}.tif"
    t = time.perf_counter()
    if not path.exists():
        write_slide(path, args.side)
    write_s = time.perf_counter() - t

    import psutil

    from napari_glandseg.slide import open_slide

    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    t = time.perf_counter()
    slide = open_slide(path)
    open_s = time.perf_counter() - t
    rss_mb = (proc.memory_info().rss - rss0) / 2**20

    t = time.perf_counter()
    low = slide.levels[-1].compute()
    lowest_s = time.perf_counter() - t

    rng = np.random.default_rng(0)
    times = []
    for _ in range(20):
        y, x = (int(v) for v in rng.integers(0, args.side - 1024, 2))
        t = time.perf_counter()
        region = slide.read_region(0, y, x, 1024, 1024)
        times.append(time.perf_counter() - t)
    assert region.shape == (1024, 1024, 3)
    print(json.dumps({
        "benchmark": "open_slide",
        "side_px": args.side,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "levels": len(slide.levels),
        "write_s": round(write_s, 2),
        "open_s": round(open_s, 4),
        "rss_growth_mb": round(rss_mb, 1),
        "lowest_level_shape": list(low.shape[:2]),
        "lowest_level_read_s": round(lowest_s, 4),
        "region_1024_median_ms": round(statistics.median(times) * 1e3, 2),
        "region_1024_max_ms": round(max(times) * 1e3, 2),
        "targets": {"open_s": 0.5, "rss_growth_mb": 150, "region_1024_median_ms": 50},
    }))


if __name__ == "__main__":
    main()
