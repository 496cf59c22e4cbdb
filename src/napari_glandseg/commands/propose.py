"""``glandseg propose SLIDE|FOLDER --out OUT``: gland proposals with no model and no labels.

A folder of images (``--mpp`` says their µm/px): per image ``OUT/masks/NAME.png`` (16-bit
instance labels at the image's size, so that ``OUT/masks`` serves as ``--masks`` of ``glandseg
finetune`` and ``evaluate``) and ``OUT/geojson/NAME.geojson`` (QuPath polygons with
measurements, in image px); ``OUT/summary.json`` lists them.

A slide (or a ``--region`` of it): ``OUT/<slide name>/`` gets what ``glandseg segment --region``
writes: ``labels.ome.zarr`` (a label store on the slide's grid at the working µm/px, which the
plugin opens and Correct edits), ``glands.geojson`` (level-0 px), ``measurements.csv`` and
``summary.json``. Every file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg.errors import GlandsegError, check_mpp

STORE_NAME = "labels.ome.zarr"

def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "propose", help="gland proposals with no labels and no model (MSSG-style SPM)",
        description="Propose glands in a SLIDE (or --region of it) or in every image of a FOLDER: each "
        "image's pixels are clustered by a small network trained on that image alone, and a morphology "
        "cue keeps the clusters that are gland sub-regions (epithelium, lumen). A start to correct and "
        "fine-tune on where no model fits (a new organ, stain or scanner).",
    )
    parser.add_argument("input", metavar="SLIDE|FOLDER", type=Path, help="a slide file, OME-Zarr or a folder of images")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--mpp", type=float, default=None,
                        help="µm/px of the input (required for a folder of images; overrides a slide's own)")
    parser.add_argument("--region", default=None, metavar="X,Y,W,H",
                        help="slides only: this box (level-0 px); default the whole slide if it is small enough")
    parser.add_argument("--iterations", type=int, default=None, help="clustering steps per image (default 60)")
    parser.add_argument("--clusters", type=int, default=None, help="clusters per image (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same glands)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--limit", type=int, default=None, help="folders: only the first N images")
    parser.set_defaults(func=run)


def proposal_config(args: argparse.Namespace) -> Any:
    """The ``ProposalConfig`` of the command's options (checked: a bad number is a GlandsegError)."""
    from dataclasses import replace

    from napari_glandseg.unsupervised import ClusterConfig, ProposalConfig

    cluster = ClusterConfig(seed=int(args.seed))
    if args.iterations is not None:
        cluster = replace(cluster, iterations=args.iterations)
    if args.clusters is not None:
        cluster = replace(cluster, n_clusters=args.clusters)
    return ProposalConfig(cluster=cluster)


def run(args: argparse.Namespace) -> int:
    if args.mpp is not None:
        check_mpp(args.mpp, "--mpp (the input's µm per pixel)")
    for name in ("threads", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise GlandsegError(f"--{name} must be at least 1, got {value}")
    config = proposal_config(args)
    path = args.input
    if not path.exists():
        raise GlandsegError(f"{path}: no such file or folder")
    if path.is_dir() and not _is_zarr(path):
        if args.region is not None:
            raise GlandsegError(f"{path}: --region applies to a slide, not to a folder of images")
        summary = propose_folder(path, args.out, mpp=args.mpp, config=config, limit=args.limit, threads=args.threads)
        print(f"{summary['images']} images: {summary['glands']} glands -> {args.out}")
    else:
        summary = propose_slide(path, args.out, mpp=args.mpp, region=args.region, config=config, threads=args.threads)
        print(f"{summary['slide']}: {summary['glands']} glands -> {summary['out']}")
    return 0


def _is_zarr(path: Path) -> bool:
    from napari_glandseg.slide.ngff import is_zarr

    return is_zarr(path)


def folder_images(folder: Path, limit: int | None = None) -> list[Path]:
    """The images of ``folder`` (``labels.folders.image_files``: hidden files are not images);
    none is an error."""
    from napari_glandseg.labels.folders import image_files

    files = image_files(folder)
    return files[:limit] if limit else files


def write_label_png(path: Path, labels: np.ndarray) -> Path:
    """Instance labels as a 16-bit greyscale PNG, atomically (more than 65535 glands: an error)."""
    from PIL import Image

    from napari_glandseg._atomic import atomic_path

    if labels.size and int(labels.max()) > np.iinfo(np.uint16).max:
        raise GlandsegError(f"{path}: {int(labels.max())} glands do not fit a 16-bit PNG")
    with atomic_path(path) as tmp:
        Image.fromarray(labels.astype(np.uint16)).save(tmp, format="PNG")
    return path


def write_image_geojson(path: Path, labels: np.ndarray, mpp: float) -> Path:
    """The glands of an image as QuPath GeoJSON (image px), each with its measurements."""
    from napari_glandseg.labels.geojson import labels_to_features, write_geojson
    from napari_glandseg.labels.measure import measure_glands

    rows = measure_glands(labels, mpp)
    return write_geojson(path, labels_to_features(labels, measurements=rows, clip_to=labels.shape))


def propose_folder(folder: Path, out: Path, *, mpp: float | None, config: Any, limit: int | None = None,
                   threads: int | None = 1) -> dict[str, Any]:
    """Proposals for every image of ``folder`` into ``out`` (see the module doc); returns the summary."""
    from napari_glandseg._atomic import write_json_atomic
    from napari_glandseg.commands._progress import progress_bar
    from napari_glandseg.labels.masks import read_image
    from napari_glandseg.unsupervised import propose_glands

    if mpp is None:
        raise GlandsegError(f"{folder}: images do not say their µm/px; pass --mpp (e.g. 0.62 for GlaS, 20×)")
    files = folder_images(folder, limit)
    rows = []
    with progress_bar("propose", unit="image") as bar:
        for i, path in enumerate(files):
            rgb = read_image(path)  # a GlandsegError naming the file when it is no image
            props = propose_glands(rgb, mpp, config, threads=threads)
            name = path.stem
            write_label_png(out / "masks" / f"{name}.png", props.labels)
            write_image_geojson(out / "geojson" / f"{name}.geojson", props.labels, mpp)
            rows.append({"image": str(path), "mask": f"masks/{name}.png", "geojson": f"geojson/{name}.geojson",
                         "glands": int(props.labels.max()), "seconds": props.info["seconds"]})
            bar(i + 1, len(files), path.name)
    summary = {"input": str(folder), "mpp": mpp, "images": len(rows), "glands": sum(r["glands"] for r in rows),
               "method": _method(config), "per_image": rows}
    write_json_atomic(out / "summary.json", summary)
    return summary


def propose_slide(path: Path, out: Path, *, mpp: float | None, region: str | None, config: Any,
                  threads: int | None = 1) -> dict[str, Any]:
    """Proposals for a slide box (default: the whole slide when it fits) into ``out/<slide name>/``."""
    from napari_glandseg._atomic import write_json_atomic
    from napari_glandseg._lock import FolderLock
    from napari_glandseg.commands._checks import write_failure
    from napari_glandseg.commands.segment import parse_region
    from napari_glandseg.labels import outputs
    from napari_glandseg.slide import open_slide
    from napari_glandseg.unsupervised import propose_region
    from napari_glandseg.unsupervised.proposals import MAX_WORK_PX

    box = parse_region(region) if region else None
    t0 = time.perf_counter()
    with open_slide(path, mpp=mpp) as slide:
        if slide.mpp is None:
            raise GlandsegError(f"{slide.path}: the file does not say its µm/px; pass --mpp")
        h0, w0 = slide.shape
        if box is None:
            f = slide.mpp / config.work_mpp
            if h0 * f * w0 * f > MAX_WORK_PX:
                raise GlandsegError(f"{slide.path}: the slide ({w0} × {h0} px) is too large to propose on whole; "
                                    "pass --region X,Y,W,H (level-0 px)")
            box = (0, 0, h0, w0)
        elif box[0] >= h0 or box[1] >= w0:
            y, x, h, w = box
            raise GlandsegError(f"{slide.path}: --region {x},{y},{w},{h} lies outside the slide ({w0} × {h0} px, W × H)")
        out_dir = out / slide.name
        res = propose_region(slide, box, config, threads=threads)
        try:
            with FolderLock(out_dir, f"glandseg propose {slide.path.name}"):
                out_dir.mkdir(parents=True, exist_ok=True)
                store = outputs.region_store(out_dir / STORE_NAME, slide, res)
                glands = outputs.write_tables(store, out_dir, factor=res.scale, mpp=res.mpp, slide_shape=slide.shape)
                summary = {
                    "slide": str(slide.path), "slide_mpp": slide.mpp, "slide_shape": [h0, w0], "out": str(out_dir),
                    "model": res.info["model"], "model_mpp": res.mpp, "downsample": res.scale, "glands": glands,
                    "labels": STORE_NAME, "geojson": "glands.geojson", "measurements": "measurements.csv",
                    "region": {"bbox0": list(res.bbox0), "scale": res.scale, "translate": list(res.translate)},
                    "method": _method(config), "timings_s": {"total": time.perf_counter() - t0,
                                                             "propose": res.info["seconds"]},
                }
                write_json_atomic(out_dir / "summary.json", summary)
        except OSError as exc:
            raise write_failure(exc, out_dir, need_bytes=None, resumes=False) from exc
    return summary


def _method(config: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {"name": "spm-proposals", "labels_used": False, **asdict(config)}
