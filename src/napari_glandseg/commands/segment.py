"""``glandseg segment SLIDE... --out DIR``: whole slides (or a region) to labels, polygons, measurements.

Per slide, ``OUT/<slide name>/`` gets ``labels.ome.zarr`` (the label pyramid at the model's
µm/px, resumable), ``glands.geojson`` (QuPath polygons in level-0 px), ``measurements.csv``
and ``summary.json``. Polygons and measurements are made block by block from the store, so a
gigapixel label image is never held in memory.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from napari_glandseg.commands._options import add_run_options
from napari_glandseg.commands._progress import progress_bar
from napari_glandseg.errors import GlandsegError

log = logging.getLogger(__name__)
STORE_NAME = "labels.ome.zarr"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "segment", help="segment glands in whole slides (or a region of them)",
        description="Segment glands in each SLIDE; results go to OUT/<slide name>/. A stopped run "
        "resumes where it stopped (--resume, the default).",
    )
    parser.add_argument("slides", nargs="+", metavar="SLIDE", help="slide files or OME-Zarr folders")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--model", default=None,
                        help="preset, checkpoint path or user model name (default: the bundled model)")
    parser.add_argument("--region", default=None, metavar="X,Y,W,H", help="only this box (level-0 px)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument("--mpp", type=float, default=None, help="the slides' µm/px (overrides the files)")
    parser.add_argument("--batch-size", type=int, default=None, help="tiles per model call")
    add_run_options(parser)
    parser.add_argument("--chunk-px", type=int, default=None, help="store chunk edge in model px")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: probabilities averaged over flips and quarter turns (8x slower)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, default=None, help="run on a local cluster of N processes")
    group.add_argument("--scheduler", default=None, metavar="ADDR", help="dask.distributed scheduler address")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                        help="continue an earlier run into the same folder (default) or start over")
    parser.add_argument("--geojson", action=argparse.BooleanOptionalAction, default=True,
                        help="write glands.geojson (default yes)")
    parser.set_defaults(func=run)


def parse_region(text: str) -> tuple[int, int, int, int]:
    """'X,Y,W,H' (level-0 px) → (y, x, h, w)."""
    try:
        x, y, w, h = (int(float(v)) for v in text.split(","))
    except ValueError:
        raise GlandsegError(f"--region must be X,Y,W,H in level-0 pixels, got {text!r}") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise GlandsegError(f"--region {text!r}: X, Y must be >= 0 and W, H > 0")
    return y, x, h, w


def run(args: argparse.Namespace) -> int:
    from napari_glandseg.commands._checks import check_options, preflight
    from napari_glandseg.inference.distributed_run import cluster_client
    from napari_glandseg.inference.region import get_predictor
    from napari_glandseg.model.resolve import resolve

    check_options(args)
    region = parse_region(args.region) if args.region else None
    for path in args.slides:  # every slide is checked before the model loads
        preflight(path, args, region)
    folders = _output_folders(args.slides)
    cluster = (args.workers, args.scheduler) if region is None else (None, None)
    with cluster_client(*cluster) as client:
        # locally the model is loaded once for all slides; a cluster loads it on each worker
        source = resolve(args.model)
        model = source if client is not None else get_predictor(
            source.load(args.device), args.device, args.batch_size, tta=args.tta, precision=args.precision,
            threads=args.threads, organ=args.organ)
        for path, folder in zip(args.slides, folders, strict=True):
            summary = segment_one(path, args, model=model, region=region, client=client, folder=folder,
                                  source=source)
            print(f"{summary['slide']}: {summary['glands']} glands -> {summary['out']}")
    return 0


def _output_folders(paths: list[str]) -> list[str]:
    """Distinct folders under --out; says so when same-named slides get suffixed ones."""
    from napari_glandseg.labels.outputs import output_folders
    from napari_glandseg.slide._base import slide_name

    folders = output_folders(paths)
    for path, folder in zip(paths, folders, strict=True):
        if folder != slide_name(path):
            print(f"note: several slides are named {slide_name(path)!r}: {path} goes to {folder}/")
    return folders


def segment_one(path: str, args: argparse.Namespace, *, model: Any, region, client,
                folder: str | None = None, source: Any = None) -> dict[str, Any]:
    """Segment one slide (or its region) into ``--out/<folder>`` (default: the slide's name)
    and write all outputs; returns the summary. ``source``: the ``ModelSource`` of ``model``
    (recorded in the summary; a whole-slide run reports its own)."""
    from napari_glandseg._lock import FolderLock
    from napari_glandseg.commands._checks import store_bytes, write_failure
    from napari_glandseg.slide import open_slide

    t0 = time.perf_counter()
    with open_slide(path, mpp=args.mpp) as slide:
        if slide.mpp is None:
            raise GlandsegError(f"{slide.path}: the file does not say its µm/px; pass --mpp")
        out_dir = args.out / (folder or slide.name)
        try:
            with FolderLock(out_dir, f"glandseg segment {slide.path.name}"):
                out_dir.mkdir(parents=True, exist_ok=True)
                return _segment_into(out_dir, slide, args, model=model, region=region, client=client, t0=t0,
                                     source=source)
        except OSError as exc:  # a read-only or full disk: say where, what it needs, what next
            card = getattr(model, "card", None)
            need = store_bytes(slide.shape, slide.mpp, card.mpp) if card is not None else None
            raise write_failure(exc, out_dir, need_bytes=need, resumes=region is None) from exc


def _segment_into(out_dir: Path, slide: Any, args: argparse.Namespace, *, model: Any, region, client,
                  t0: float, source: Any = None) -> dict[str, Any]:
    """The labels, tables and summary of one slide in ``out_dir`` (whose lock the caller holds)."""
    from napari_glandseg._atomic import write_json_atomic
    from napari_glandseg.commands._checks import whole_run
    from napari_glandseg.inference import SlideRunSettings, segment_region, segment_slide
    from napari_glandseg.labels import outputs as _outputs

    store_path = out_dir / STORE_NAME
    run = None
    with progress_bar(slide.name) as bar:
        if region is None:
            settings = SlideRunSettings(device=args.device, batch_size=args.batch_size, resume=args.resume,
                                        chunk_px=args.chunk_px, organ=args.organ)
            run = segment_slide(slide, store_path, model, settings, client=client, progress=bar, tile_progress=bar)
            store, factor = run.store, run.downsample
            card_name, model_mpp = run.model.card.name, float(run.model.card.mpp)
            source = source if run.model.kind == "memory" else run.model
            region_info = None
        else:
            res = segment_region(slide, _snap(region, slide, model), model=model, progress=bar)
            card_name, model_mpp = res.info["model"], res.mpp
            factor = res.scale
            store = _outputs.region_store(store_path, slide, res)
            region_info = {"bbox0": list(res.bbox0), "scale": res.scale, "translate": list(res.translate)}
    t_seg = time.perf_counter() - t0
    t1 = time.perf_counter()
    glands = _outputs.write_tables(store, out_dir, factor=factor, mpp=model_mpp, geojson=args.geojson,
                                   slide_shape=slide.shape)
    summary = {
        "slide": str(slide.path), "slide_mpp": slide.mpp, "slide_shape": list(slide.shape),
        "model": card_name, "model_mpp": model_mpp, "downsample": factor, "glands": glands,
        "model_source": source.describe() if source is not None else None,
        "out": str(out_dir), "labels": STORE_NAME, "region": region_info,
        "geojson": "glands.geojson" if args.geojson else None, "measurements": "measurements.csv",
        "timings_s": {"segment": t_seg, "tables": time.perf_counter() - t1, "total": time.perf_counter() - t0},
        "run": whole_run(run.stats(), _previous_run(out_dir), store) if run is not None else {},
        "compute": model.info() if hasattr(model, "info") else {"device": args.device, "precision": args.precision,
                                                                         "organ": args.organ},
    }
    write_json_atomic(out_dir / "summary.json", summary)
    return summary


def _previous_run(out_dir: Path) -> dict[str, Any] | None:
    """The run block of the summary an earlier session left in ``out_dir`` (None if none)."""
    import json

    try:
        return json.loads((out_dir / "summary.json").read_text(encoding="utf-8")).get("run")
    except (OSError, ValueError, AttributeError):
        return None


def _snap(region: tuple[int, int, int, int], slide: Any, model: Any) -> tuple[float, float, float, float]:
    """The region grown to whole store pixels (model µm/px grid from the slide's origin)."""
    import math

    f = model.card.mpp / slide.mpp
    y, x, h, w = region
    y0, x0 = math.floor(y / f), math.floor(x / f)
    y1, x1 = math.ceil((y + h) / f), math.ceil((x + w) / f)
    return y0 * f, x0 * f, (y1 - y0) * f, (x1 - x0) * f
