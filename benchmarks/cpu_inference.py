"""CPU inference settings for the shipped model: precision, memory format, threads, batch size.

One JSON line per setting: tiles/s of ``Predictor.predict`` on real GlaS tissue tiles (the
engine's own path: reused buffers, softmax, copy out). The settings are measured round-robin,
``--rounds`` times each, and the best round is kept, so that load from other processes on a
shared machine shifts every setting alike. A last line names the fastest.

    .venv/bin/python benchmarks/cpu_inference.py [--batches 3] [--rounds 2] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path


def main() -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from model_forward import load, tissue_tiles
    from napari_glandseg.inference.predictor import Predictor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--batches", type=int, default=3, help="timed batches per setting and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", default=",".join(str(n) for n in sorted({1, torch.get_num_threads()})))
    ap.add_argument("--batch-sizes", default="1,2,4,8")
    args = ap.parse_args()
    model, name = load(args.model)
    tile = model.card.tile_px
    tiles = tissue_tiles(16, tile)
    settings = list(itertools.product(
        (True, False),  # bf16 autocast
        (True, False),  # channels_last
        [int(n) for n in args.threads.split(",")],
        [int(n) for n in args.batch_sizes.split(",")],
    ))
    best: dict[tuple, float] = {}
    for _ in range(args.rounds):
        for amp, channels_last, threads, batch in settings:
            torch.set_num_threads(threads)
            pred = Predictor(model, device="cpu", batch_size=batch, amp=amp)
            if not channels_last:
                pred.model = pred.model.to(memory_format=torch.contiguous_format)
            pred.predict(tiles[:batch])  # warm-up: kernels for this shape
            t0 = time.perf_counter()
            for i in range(args.batches):
                j = (i * batch) % (len(tiles) - batch + 1)
                pred.predict(tiles[j : j + batch])
            rate = args.batches * batch / (time.perf_counter() - t0)
            key = (amp, channels_last, threads, batch)
            best[key] = max(best.get(key, 0.0), rate)
    model.to(memory_format=torch.channels_last)
    for (amp, channels_last, threads, batch), rate in best.items():
        print(json.dumps({"benchmark": "cpu_inference", "model": name, "tile_px": tile,
                          "precision": "bf16" if amp else "fp32", "channels_last": channels_last,
                          "threads": threads, "batch_size": batch, "tiles_per_s": round(rate, 2)}), flush=True)
    (amp, channels_last, threads, batch), rate = max(best.items(), key=lambda kv: kv[1])
    print(json.dumps({"benchmark": "cpu_inference", "fastest": {
        "precision": "bf16" if amp else "fp32", "channels_last": channels_last, "threads": threads,
        "batch_size": batch, "tiles_per_s": round(rate, 2)}}), flush=True)


if __name__ == "__main__":
    main()
