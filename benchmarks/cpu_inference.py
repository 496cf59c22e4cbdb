"""CPU inference settings for the shipped model: precision, memory format, threads, batch size,
torch.compile — and whether the fastest keeps the GlaS testA metrics.

One JSON line per setting: tiles/s of ``Predictor.predict`` on real GlaS tissue tiles (the
engine's own path: reused buffers, softmax, copy out), ``--tiles`` tiles timed per setting and
round. The settings are measured round-robin, ``--rounds`` times each, and the best round is
kept, so that load from other processes on a shared machine shifts every setting alike.
``--compile`` also times ``torch.compile`` of the fastest eager setting (compile time apart).
``--check N`` scores the engine's default and the fastest setting on N GlaS testA images and
the RINGS tiles (``glandseg evaluate``'s code) and prints the differences. A last line names the fastest.
``--load N`` starts N busy processes first (as another job beside this one would be); every line
then also has the engine's own choice (``precision auto``, threads from the free cores) and its
ratio to the fastest fixed setting. Every line says the CPU kind: set ``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2`` to measure a CPU without AVX-512 on one that has it.

    .venv/bin/python benchmarks/cpu_inference.py [--tiles 16] [--rounds 2] [--threads 1,2] \\
        [--batch-sizes 1,2,4,8] [--compile] [--check 60] [--load 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

from napari_glandseg.labels.folders import GLAS_MPP

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".." / "shared" / "data"
#: (images, masks, µm/px): GlaS images are one tile each at the model's µm/px, so the batch size
#: changes nothing there; the RINGS tiles are 16 tiles each.
CHECKS = {"glas_testA": (DATA / "glas" / "testA", GLAS_MPP), "rings_tiles": (DATA / "rings" / "glands", 2.72)}


def timed_rate(pred, tiles, n_tiles: int) -> float:
    """Tiles/s of ``pred.predict`` over about ``n_tiles`` tiles in its own batches (after a warm-up)."""
    batch = min(pred.batch_size, len(tiles))
    pred.batch_size = batch
    pred.predict(tiles[:batch])  # warm-up: kernels for this shape
    batches = max(1, math.ceil(n_tiles / batch))
    t0 = time.perf_counter()
    for i in range(batches):
        j = (i * batch) % (len(tiles) - batch + 1)
        pred.predict(tiles[j : j + batch])
    return batches * batch / (time.perf_counter() - t0)


def make_predictor(model, amp: bool, channels_last: bool, batch: int, threads: int | None = None):
    import torch

    from napari_glandseg.inference.predictor import Predictor

    pred = Predictor(model, device="cpu", batch_size=batch, precision="bf16" if amp else "fp32", threads=threads)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    pred.model = pred.model.to(memory_format=fmt)
    return pred


def setting(amp: bool, channels_last: bool, threads: int, batch: int) -> dict:
    return {"precision": "bf16" if amp else "fp32", "channels_last": channels_last, "threads": threads,
            "batch_size": batch}


def _busy() -> None:
    while True:
        pass


def start_load(n: int) -> list:
    """``n`` busy processes (pure Python loops, one core each); terminated at exit."""
    import atexit
    import multiprocessing as mp

    procs = [mp.get_context("spawn").Process(target=_busy, daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    atexit.register(lambda: [p.terminate() for p in procs])
    time.sleep(1.0)  # let them reach full speed before the engine counts free cores
    return procs


def check_metrics(pred, n: int) -> dict:
    """Mean metrics on the first ``n`` images of each of ``CHECKS``."""
    from napari_glandseg.commands.evaluate import evaluate_folder

    out = {}
    for name, (folder, mpp) in CHECKS.items():
        overall = evaluate_folder(folder / "images", folder / "masks", model=pred, mpp=mpp, limit=n)["overall"]
        out[name] = {k: round(overall[k], 4) for k in ("object_f1", "pixel_dice", "object_dice")}
    return out


def main() -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from model_forward import load, tissue_tiles
    from napari_glandseg.inference.predictor import default_batch_size

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--tiles", type=int, default=16, help="tiles timed per setting and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", default=",".join(str(n) for n in sorted({1, torch.get_num_threads()})))
    ap.add_argument("--batch-sizes", default="1,2,4,8")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the fastest setting")
    ap.add_argument("--check", type=int, default=0, help="GlaS testA images to score default and fastest on")
    ap.add_argument("--load", type=int, default=0, help="busy processes to start beside the benchmark")
    ap.add_argument("--precisions", default="bf16,fp32", help="fixed precisions to time")
    args = ap.parse_args()
    from napari_glandseg.model.precision import cpu_description

    start_load(args.load)
    facts = {"cpu": cpu_description(), "load": args.load}
    model, name = load(args.model)
    tile = model.card.tile_px
    tiles = tissue_tiles(16, tile)
    settings = list(itertools.product(
        [p == "bf16" for p in args.precisions.split(",")],  # bf16 autocast
        (True, False),  # channels_last
        [int(n) for n in args.threads.split(",")],
        [int(n) for n in args.batch_sizes.split(",")],
    ))
    best: dict[tuple, float] = {}
    auto_rate, auto_info = 0.0, {}
    for _ in range(args.rounds):
        for amp, channels_last, threads, batch in settings:
            rate = timed_rate(make_predictor(model, amp, channels_last, batch, threads), tiles, args.tiles)
            key = (amp, channels_last, threads, batch)
            best[key] = max(best.get(key, 0.0), rate)
        from napari_glandseg.inference.predictor import Predictor

        auto = Predictor(model, device="cpu")  # what the engine chooses by itself, here and now
        rate = timed_rate(auto, tiles, args.tiles)
        if rate > auto_rate:
            auto_rate, auto_info = rate, auto.info()
    for key, rate in best.items():
        print(json.dumps({"benchmark": "cpu_inference", "model": name, "tile_px": tile, **facts, **setting(*key),
                          "tiles_per_s": round(rate, 2)}), flush=True)
    key, rate = max(best.items(), key=lambda kv: kv[1])
    print(json.dumps({"benchmark": "cpu_inference", "model": name, "tile_px": tile, **facts, "setting": "engine auto",
                      "precision": auto_info.get("precision"), "threads": auto_info.get("threads"),
                      "precision_timing_s": auto_info.get("precision_timing_s"),
                      "tiles_per_s": round(auto_rate, 2), "ratio_to_fastest": round(auto_rate / rate, 3)}), flush=True)
    amp, channels_last, threads, batch = key
    torch.set_num_threads(threads)
    if args.compile:
        pred = make_predictor(model, amp, channels_last, batch, threads)
        pred.model = torch.compile(pred.model)
        t0 = time.perf_counter()
        pred.predict(tiles[:batch])
        compile_s = time.perf_counter() - t0
        compiled = max(timed_rate(pred, tiles, args.tiles) for _ in range(args.rounds))
        print(json.dumps({"benchmark": "cpu_inference", "model": name, **setting(*key), "compile": True,
                          "compile_s": round(compile_s, 1), "tiles_per_s": round(compiled, 2)}), flush=True)
    default = (auto_info.get("precision") == "bf16", True, auto_info.get("threads") or threads,
               default_batch_size(torch.device("cpu"), tile))
    print(json.dumps({"benchmark": "cpu_inference", **facts, "fastest": {**setting(*key), "tiles_per_s": round(rate, 2)},
                      "engine_auto": {**setting(*default), "tiles_per_s": round(auto_rate, 2)}}), flush=True)
    if args.check:
        scores = {}
        for label, k in (("engine_default", default), ("fastest", key)):
            scores[label] = check_metrics(make_predictor(model, k[0], k[1], k[3], k[2]), args.check)
        delta = {data: {m: round(v - scores["engine_default"][data][m], 4) for m, v in metrics.items()}
                 for data, metrics in scores["fastest"].items()}
        print(json.dumps({"benchmark": "cpu_inference", "check": f"first {args.check} images of each", **scores,
                          "fastest_minus_default": delta}), flush=True)


if __name__ == "__main__":
    main()
