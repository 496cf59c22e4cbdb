"""Exports of gland labels: training packages, OME-TIFF and OME-Zarr masks, measurement tables.

Every writer builds its output under a temporary name beside the target and renames it into
place when it is complete, so a failure never leaves a half-written file where a good one was.

A **training package** is a folder that ``training/finetune.py`` reads unchanged::

    manifest.json        slide (path, name, sha256, µm/px, shape), µm/px of the tiles, model,
                         and one entry per reviewed region: its files, bounds and review record
    images/NAME.png      RGB tile of the region at the package's µm/px
    masks/NAME.png       its gland instances (16-bit PNG, consecutive ids per tile)
    valid/NAME.png       255 where the labels were reviewed (ground truth), 0 elsewhere
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg._atomic import atomic_path, open_regular, read_bounded, write_json_atomic
from napari_glandseg.errors import GlandsegError, check_mpp
from napari_glandseg.labels._objects import compact_labels
from napari_glandseg.slide.placement import GridPlacement
from napari_glandseg.slide.resample import resize_labels, resize_rgb, with_mpp

PACKAGE_FORMAT = "glandseg-training-package"
PACKAGE_VERSION = 1
MAX_MANIFEST_BYTES = 64 << 20
TIFF_TILE = 512
MIN_TIFF_LEVEL = 512


# -- training packages -------------------------------------------------------------------------


def export_training_package(
    out_dir: str | os.PathLike,
    slide: Any,
    store_or_labels: Any,
    regions: Sequence[dict[str, Any]],
    *,
    mpp: float | None = None,
    model_name: str | None = None,
) -> Path:
    """Write the reviewed ``regions`` of a label store (or labels array) as a training package.

    Region ``bounds`` are ``[y, x, h, w]`` on the labels' own grid (store level 0, or the array).
    The labels' grid is placed on the slide by µm/px (store) or by shape (array covering the
    slide). Tiles are written at ``mpp`` µm/px (default: the labels' own).
    """
    if not regions:
        raise GlandsegError(f"{out_dir}: no reviewed regions to export; commit corrections first")
    grid = _LabelGrid.of(slide, store_or_labels)
    out_mpp = float(mpp) if mpp else grid.mpp
    ds_out = grid.level0_per_px * (out_mpp / grid.mpp) if (out_mpp and grid.mpp) else grid.level0_per_px
    tiles = []
    check_package_target(out_dir)
    with atomic_path(out_dir, is_dir=True) as tmp:
        for sub in ("images", "masks", "valid"):
            (tmp / sub).mkdir()
        for i, region in enumerate(regions):
            tile = _export_region(tmp, f"region_{i:04d}", slide, grid, region, ds_out)
            if tile is not None:
                tiles.append(tile)
        if not tiles:
            raise GlandsegError(f"{out_dir}: every reviewed region lies outside the labels")
        manifest = {
            "format": PACKAGE_FORMAT,
            "version": PACKAGE_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "slide": _slide_facts(slide),
            "mpp": out_mpp,
            "level0_per_px": ds_out,
            "model": model_name,
            "labels": grid.source,
            "regions": tiles,
        }
        write_json_atomic(tmp / "manifest.json", manifest)
    return Path(out_dir)


class _LabelGrid:
    """Where a label grid sits on a slide (``placement``: corner 0, level-0 px per label px), its
    µm/px, and a reader."""

    def __init__(self, read: Any, placement: GridPlacement, mpp: float | None, source: str):
        self.read, self.placement, self.mpp, self.source = read, placement, mpp, source
        self.shape: tuple[int, int] = placement.shape  # type: ignore[assignment]
        self.level0_per_px = placement.scale

    @classmethod
    def of(cls, slide: Any, labels: Any) -> _LabelGrid:
        if hasattr(labels, "read_region"):  # a LabelStore
            shape = tuple(int(s) for s in labels.levels[0].shape)
            store_mpp = getattr(labels, "mpp", None)
            place = GridPlacement.of_store(shape, slide.shape, store_mpp, slide.mpp)
            f = place.scale
            mpp = store_mpp or (slide.mpp * f if slide.mpp else None)
            return cls(lambda y, x, h, w: labels.read_region(y, x, h, w), place, mpp, str(labels.path))
        arr = np.asarray(labels)
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise GlandsegError(f"labels must be a 2-D integer array or a LabelStore, got {arr.shape} {arr.dtype}")
        place = GridPlacement.of_store(arr.shape, slide.shape)
        f = place.scale

        def read(y: int, x: int, h: int, w: int) -> np.ndarray:
            out = np.zeros((h, w), np.int32)
            part = arr[max(0, y) : y + h, max(0, x) : x + w]
            out[max(0, -y) : max(0, -y) + part.shape[0], max(0, -x) : max(0, -x) + part.shape[1]] = part
            return out

        return cls(read, place, slide.mpp * f if slide.mpp else None, "array")


def _export_region(folder: Path, name: str, slide: Any, grid: _LabelGrid, region: dict, ds_out: float) -> dict | None:
    y, x, h, w = _clip_bounds(region, grid.shape)
    if h <= 0 or w <= 0:
        return None
    f = grid.level0_per_px
    bbox0 = grid.placement.box_to_level0((y, x, h, w))
    out_h, out_w = max(1, round(h * f / ds_out)), max(1, round(w * f / ds_out))
    rgb = _read_rgb(slide, bbox0, ds_out)
    if rgb.shape[:2] != (out_h, out_w):
        rgb = resize_rgb(rgb, out_h, out_w)
    labels, _ = compact_labels(resize_labels(grid.read(y, x, h, w), out_h, out_w))
    return {
        **write_package_tile(folder, name, rgb, labels, np.ones((out_h, out_w), bool)),
        "bounds": [y, x, h, w],
        "bounds_level0": [round(v, 3) for v in bbox0],
        "review": {k: v for k, v in region.items() if k not in ("bounds", "patch")},
    }


def write_package_tile(folder: Path, name: str, rgb: np.ndarray, labels: np.ndarray, valid: np.ndarray) -> dict:
    """One tile of a training package being written in ``folder``: ``images/NAME.png``,
    ``masks/NAME.png`` (16-bit instances) and ``valid/NAME.png`` (255 where the labels count).
    Returns its manifest entry: the file names and ``n_glands``."""
    if labels.max() > np.iinfo(np.uint16).max:
        raise GlandsegError(f"{name}: more than 65535 glands in one region; review smaller regions")
    _save_png(folder / "images" / f"{name}.png", rgb)
    _save_png(folder / "masks" / f"{name}.png", labels.astype(np.uint16))
    _save_png(folder / "valid" / f"{name}.png", valid.astype(np.uint8) * 255)
    return {"name": name, "image": f"images/{name}.png", "mask": f"masks/{name}.png", "valid": f"valid/{name}.png",
            "n_glands": int(labels.max())}


def check_package_target(out_dir: str | os.PathLike) -> None:
    """Refuse to write a training package over anything but nothing, an empty folder or an
    earlier package (replacing a folder deletes all it holds)."""
    _check_replaceable(Path(out_dir), _foreign_in_package, "training package")


def _clip_bounds(region: dict, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    try:
        y, x, h, w = (int(v) for v in region["bounds"])
    except (KeyError, TypeError, ValueError) as exc:
        raise GlandsegError(f"a reviewed region needs bounds [y, x, h, w], got {region!r}") from exc
    y0, x0 = max(0, y), max(0, x)
    return y0, x0, min(shape[0], y + h) - y0, min(shape[1], x + w) - x0


def _read_rgb(slide: Any, bbox0: tuple[float, ...], ds: float) -> np.ndarray:
    """The level-0 box at ``ds`` level-0 px per output px (works when the slide's µm/px is unknown)."""
    if slide.mpp:
        return slide.read_at_mpp(bbox0, slide.mpp * ds)
    return with_mpp(slide, 1.0).read_at_mpp(bbox0, ds)  # unknown µm/px: work in level-0 px


def _slide_facts(slide: Any) -> dict[str, Any]:
    path = Path(str(slide.path))
    return {
        "path": str(path.resolve()) if path.exists() else str(path),
        "name": getattr(slide, "name", path.name),
        "sha256": sha256_file(path) if path.is_file() else None,
        "mpp": slide.mpp,
        "shape": [int(s) for s in slide.shape],
    }


def sha256_file(path: str | os.PathLike, block: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _save_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(arr).save(path)


def read_training_package(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The tiles of a training package: ``image`` (H×W×3 uint8), ``mask`` (int32 instances),
    ``valid`` (uint8, >0 where reviewed), ``mpp``, ``name``. Errors name the offending file.

    The manifest's file names must stay inside the package (no absolute paths, ``..`` or links
    out of it) and name plain files: a package never reads anything else the user can read."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    manifest = _read_manifest(manifest_path, folder)
    mpp = manifest.get("mpp")
    check_mpp(mpp, f"{manifest_path}: mpp (the tiles' µm/px)")
    root = folder.resolve()
    items = []
    for i, entry in enumerate(manifest["regions"]):
        if not isinstance(entry, dict):
            raise GlandsegError(f"{manifest_path}: region {i} must be an object with image, mask and valid, "
                                f"got {type(entry).__name__}")
        arrays = {key: _read_tile(root, manifest_path, entry, key, i) for key in ("image", "mask", "valid")}
        if not arrays["image"].shape[:2] == arrays["mask"].shape == arrays["valid"].shape:
            raise GlandsegError(f"{folder / entry['mask']}: image, mask and valid sizes differ")
        items.append({
            "name": f"{folder.name}_{entry.get('name', len(items))}",
            "image": arrays["image"],
            "mask": arrays["mask"].astype(np.int32),
            "valid": arrays["valid"].astype(np.uint8),
            "mpp": float(mpp),
        })
    return items


def _read_manifest(path: Path, folder: Path) -> dict[str, Any]:
    if not path.resolve().is_relative_to(folder.resolve()):
        raise GlandsegError(f"{path}: a link out of the package; a package's manifest is its own file")
    raw = read_bounded(path, MAX_MANIFEST_BYTES, f"a training package manifest ({folder} is not a package)")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise GlandsegError(f"{path}: not valid JSON ({str(exc)[:200] or type(exc).__name__})") from exc
    if (not isinstance(manifest, dict) or manifest.get("format") != PACKAGE_FORMAT
            or not isinstance(manifest.get("regions"), list)):
        raise GlandsegError(f"{path}: not a {PACKAGE_FORMAT} manifest (an object with format and regions)")
    return manifest


def _read_tile(root: Path, manifest_path: Path, entry: dict[str, Any], key: str, i: int) -> np.ndarray:
    """One PNG a region names, read only if it is a plain file inside the package."""
    from PIL import Image

    rel = entry.get(key)
    what = f"the {key} of region {entry.get('name', i)!s:.100}"
    if not isinstance(rel, str) or not rel or "\0" in rel:
        raise GlandsegError(f"{manifest_path}: {what} must be a file name in the package, got {rel!r:.100}")
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise GlandsegError(f"{manifest_path}: {what} ({rel!r:.200}) lies outside the package; "
                            "a package names only its own files")
    try:
        with open_regular(path) as f:
            if os.fstat(f.fileno()).st_nlink > 1:  # a hard link may be another copy of any file
                raise GlandsegError(f"{path}: a hard link; a package holds its own copies of its tiles")
            img = Image.open(f)
            img.load()
            return np.asarray(img.convert("RGB") if key == "image" else img)
    except (OSError, Image.DecompressionBombError, GlandsegError, ValueError) as exc:
        raise GlandsegError(f"{path}: cannot read {what} ({exc})") from exc


# -- replacing an earlier export ----------------------------------------------------------------------


def _check_replaceable(target: Path, foreign: Any, what: str) -> None:
    """Refuse a folder export onto anything but nothing, an empty folder or an earlier export of
    the same kind: replacing a folder deletes all it holds, so it must hold only what we wrote.

    ``foreign(folder)`` lists what in an existing folder the export did not write."""
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not target.is_dir():
        raise GlandsegError(f"{target}: exists and is not a folder; choose a new name for the {what}")
    if found := foreign(target):
        shown = ", ".join(found[:5]) + (", …" if len(found) > 5 else "")
        raise GlandsegError(f"{target}: not empty and not an earlier {what} (it holds {shown}); "
                            "choose a new folder or empty this one")


def _unknown(folder: Path, names: Any, prefix: str = "", *, files: bool | None = None) -> list[str]:
    """Entries of ``folder`` that are links, whose names ``names`` does not accept, or (``files``
    True / False) that are not plain files / folders."""
    def wrong_kind(p: Path) -> bool:
        return files is not None and not (p.is_file() if files else p.is_dir())

    return [prefix + p.name for p in sorted(folder.iterdir()) if p.is_symlink() or not names(p.name) or wrong_kind(p)]


def _json_of(path: Path) -> Any:
    try:
        return json.loads(read_bounded(path, MAX_MANIFEST_BYTES, "a JSON file"))
    except (GlandsegError, ValueError, RecursionError):
        return None


def _foreign_in_package(folder: Path) -> list[str]:
    """What an earlier training package would not hold: its manifest, region PNGs in three folders."""
    manifest = _json_of(folder / "manifest.json")
    if not (isinstance(manifest, dict) and manifest.get("format") == PACKAGE_FORMAT):
        return _unknown(folder, lambda n: False)
    subs = ("images", "masks", "valid")
    found = _unknown(folder, lambda n: n == "manifest.json" or n in subs)
    for sub in subs:
        path = folder / sub
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            found.append(sub)  # a file where the folder should be is the user's
        elif path.is_dir():
            found += _unknown(path, lambda n: n.startswith("region_") and n.endswith(".png"), f"{sub}/", files=True)
    return found


def _foreign_in_label_export(folder: Path) -> list[str]:
    """What an earlier OME-Zarr label export would not hold: a zarr group with levels only (a
    store's review journal is not ours to delete)."""
    meta = _json_of(folder / "zarr.json")
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    if not (isinstance(attrs, dict) and "ome" in attrs and "glandseg" in attrs):  # ours, not any OME-Zarr
        return _unknown(folder, lambda n: False)
    found = _unknown(folder, lambda n: n == "zarr.json" or n.isdigit())
    for level in (p for p in folder.iterdir() if p.name.isdigit() and p.is_dir() and not p.is_symlink()):
        found += [str(p.relative_to(folder)) for p in level.rglob("*")
                  if p.is_symlink() or not _zarr_array_part(p.relative_to(level).parts)]
    return found


def _zarr_array_part(parts: tuple[str, ...]) -> bool:
    """Whether a path inside a level array is what zarr writes: its zarr.json, c/ and chunk keys."""
    return parts == ("zarr.json",) or (parts[0] == "c" and all(p.isdigit() for p in parts[1:]))


# -- masks -----------------------------------------------------------------------------------------


def _check_labels(labels: Any, path: Any) -> Any:
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise GlandsegError(f"{path}: expected 2-D integer labels, got shape {labels.shape} dtype {labels.dtype}")
    return labels


def _check_mpp(mpp: float | None, path: Any) -> float:
    if mpp is None or not float(mpp) > 0:
        raise GlandsegError(f"{path}: the labels' µm/px must be a positive number, got {mpp!r}")
    return float(mpp)


def write_ome_tiff_mask(path: str | os.PathLike, labels: Any, mpp: float) -> Path:
    """A tiled, pyramidal (SubIFDs) OME-TIFF of the labels (uint32, zlib) with µm/px in its metadata."""
    import tifffile

    labels = _check_labels(np.asarray(labels), path)
    mpp = _check_mpp(mpp, path)
    data = labels.astype(np.uint32, copy=False)
    pyramid = [data]
    while max(pyramid[-1].shape) > MIN_TIFF_LEVEL:
        pyramid.append(pyramid[-1][::2, ::2])
    tile = (TIFF_TILE, TIFF_TILE) if min(data.shape) >= TIFF_TILE else None
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=data.nbytes > 2**31, ome=True) as tif:
            meta = {"axes": "YX", "PhysicalSizeX": mpp, "PhysicalSizeY": mpp,
                    "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm", "Name": Path(path).name}
            opts = {"tile": tile, "compression": "zlib", "photometric": "minisblack"}
            tif.write(pyramid[0], subifds=len(pyramid) - 1, metadata=meta,
                      resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER", **opts)
            for k, level in enumerate(pyramid[1:], start=1):
                small = tile if min(level.shape) >= TIFF_TILE else None
                tif.write(level, subfiletype=1, metadata=None, resolution=(1e4 / (mpp * 2**k),) * 2,
                          resolutionunit="CENTIMETER", **{**opts, "tile": small})
    return Path(path)


def write_ome_zarr_labels(path: str | os.PathLike, labels: Any, mpp: float, *, source: str | None = None) -> Path:
    """OME-Zarr (NGFF 0.5) label pyramid of a 2-D labels array (numpy or dask), written block-wise."""
    from napari_glandseg.labels.store import LabelStore

    labels = _check_labels(labels, path)
    mpp = _check_mpp(mpp, path)
    _check_replaceable(Path(path), _foreign_in_label_export, "OME-Zarr label export")
    with atomic_path(path, is_dir=True) as tmp:
        store = LabelStore.create(tmp, labels.shape, mpp=mpp, source=source)
        step = store.chunk_px * 4
        for y in range(0, labels.shape[0], step):
            for x in range(0, labels.shape[1], step):
                block = np.asarray(labels[y : y + step, x : x + step])
                store.levels[0][y : y + block.shape[0], x : x + block.shape[1]] = block.astype(np.int32)
        store.build_pyramid()
    return Path(path)


# -- tables ------------------------------------------------------------------------------------------


def write_measurements_csv(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    """One row per gland; the standard columns first, in their order, then any others."""
    from napari_glandseg.labels.measure import MEASUREMENT_COLUMNS

    rows = list(rows)
    extra = [k for r in rows for k in r if k not in MEASUREMENT_COLUMNS]
    columns = list(MEASUREMENT_COLUMNS) + list(dict.fromkeys(extra))
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for r in rows:
                writer.writerow({k: _fmt(v) for k, v in r.items()})
    return Path(path)


def _fmt(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return value
