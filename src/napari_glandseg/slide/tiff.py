"""tifffile backend: Aperio SVS, generic pyramidal TIFF (SubIFDs or pages), OME-TIFF, NDPI.

Levels are read through tifffile's zarr store, so dask chunks are the file's tiles and nothing
is decoded until a chunk is asked for.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from napari_glandseg.errors import SlideError
from napari_glandseg.slide._base import (
    DEFAULT_CHUNK_PX,
    Slide,
    computed_pyramid,
    dask_from_source,
    square_chunks,
)
from napari_glandseg.slide._units import UNIT_UM, positive_float
from napari_glandseg.slide.pixels import rgb8_numpy, to_rgb8

log = logging.getLogger(__name__)

#: Resolution-tag values outside this range (µm/px) are screen/print defaults, not scans.
_PLAUSIBLE_MPP = (0.05, 50.0)


def open_tiff(path: Path, *, mpp: float | None = None) -> Slide:
    """Open a TIFF-based slide with tifffile."""
    import tifffile
    import zarr

    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:
        raise SlideError(path, f"not a readable TIFF file ({type(exc).__name__}: {exc})") from exc
    try:
        series = _main_series(tif, path)
        filesize = os.path.getsize(path)
        fmt = _format_name(tif, len(series.levels))
        levels: list[da.Array] = []
        damaged = 0
        tile_px: int | None = None
        token = f"{path.resolve()}-{os.path.getmtime(path)}-{filesize}"
        for i, lvl in enumerate(series.levels):
            store = series.aszarr(level=i)
            z = zarr.open_array(store, mode="r")
            if any(s == 0 for s in z.shape):
                raise SlideError(path, f"the image is empty (shape {tuple(z.shape)})")
            check, n_bad = _tile_check(lvl, filesize, z.chunks, path, i)
            damaged += n_bad
            iy, ix = lvl.axes.index("Y"), lvl.axes.index("X")
            edge = square_chunks((z.chunks[iy], z.chunks[ix]))
            if i == 0:
                tile_px = edge
            chunks = tuple(z.chunks) if edge else _fallback_chunks(z.shape, lvl.axes)
            arr = dask_from_source(
                z, chunks, f"glandseg-tiff-{token}-{i}", path, f"level {i}", check=check
            )
            levels.append(to_rgb8(arr, lvl.axes, path, chunk_px=None if edge else DEFAULT_CHUNK_PX))
        native = len(levels)
        if native == 1:
            levels = computed_pyramid(levels[0])
        file_mpp, mag, meta = _resolution_facts(tif, series)
        meta.update(
            {
                "compression": str(series.keyframe.compression.name),
                "native_levels": native,
                "damaged_tiles": damaged,
            }
        )
        if damaged:
            log.warning("%s: %d tiles point past the end of the file", path, damaged)
        associated = _associated(tif, series, path)
    except SlideError:
        tif.close()
        raise
    except Exception as exc:
        tif.close()
        raise SlideError(path, f"cannot read TIFF structure ({type(exc).__name__}: {exc})") from exc
    return Slide(
        path,
        format=fmt,
        levels=levels,
        mpp=mpp if mpp is not None else file_mpp,
        magnification=mag,
        associated=associated,
        metadata=meta,
        native_levels=native,
        tile_px=tile_px,
        closer=tif.close,
    )


def _main_series(tif: Any, path: Path) -> Any:
    """The image series: the first one (SVS 'Baseline'), else the largest."""
    if not tif.series:
        raise SlideError(path, "the TIFF holds no image")
    if tif.is_svs or tif.is_ndpi:
        return tif.series[0]
    # the largest series; ties go to the first
    return max(reversed(tif.series), key=lambda s: int(np.prod(s.shape)))


def _format_name(tif: Any, n_levels: int) -> str:
    if tif.is_svs:
        return "aperio-svs"
    if tif.is_ome:
        return "ome-tiff"
    if tif.is_ndpi:
        return "ndpi"
    return "generic-tiff" if n_levels > 1 else "tiff"


def _fallback_chunks(shape: tuple[int, ...], axes: str) -> tuple[int, ...]:
    """Square chunks for strip-based or oddly tiled files; other axes whole."""
    return tuple(
        DEFAULT_CHUNK_PX if ax in "YX" else int(n) for ax, n in zip(axes, shape, strict=True)
    )


def _tile_check(lvl: Any, filesize: int, zchunks: tuple[int, ...], path: Path, level: int):
    """A check run before each read: tiles whose bytes lie past end-of-file raise SlideError.

    tifffile would silently pad or hand garbage to a codec; checking offsets is exact and cheap.
    """
    page = lvl.keyframe
    pages = [p for p in lvl.pages if p is not None]
    if len(pages) != 1 or page.is_contiguous:
        return None, 0
    _check_tile_table(pages[0], path, level)
    offsets = np.asarray(pages[0].dataoffsets, np.int64)
    counts = np.asarray(pages[0].databytecounts, np.int64)
    bad = (offsets + counts > filesize) | ((offsets == 0) & (counts > 0))
    n_bad = int(bad.sum())
    if not n_bad:
        return None, 0
    axes = lvl.axes
    iy, ix = axes.index("Y"), axes.index("X")
    ty, tx = int(zchunks[iy]), int(zchunks[ix])
    grid_w = -(-int(lvl.shape[ix]) // tx)
    planar = page.planarconfig == 2 and page.samplesperpixel > 1
    if planar:  # separate planes: the same tile of any plane being bad counts
        bad = bad.reshape(page.samplesperpixel, -1).any(axis=0)
    bad_grid = bad[: (bad.size // grid_w) * grid_w].reshape(-1, grid_w)

    def check(key: tuple[slice, ...]) -> None:
        ys, xs = key[iy], key[ix]
        r0, r1 = (ys.start or 0) // ty, -(-(ys.stop or lvl.shape[iy]) // ty)
        c0, c1 = (xs.start or 0) // tx, -(-(xs.stop or lvl.shape[ix]) // tx)
        if bad_grid[r0:r1, c0:c1].any():
            raise SlideError(
                path,
                f"level {level} tile data at rows {ys.start}:{ys.stop}, columns "
                f"{xs.start}:{xs.stop} lies past the end of the file ({filesize} bytes): "
                "the file is truncated or corrupt",
            )

    return check, n_bad


def _check_tile_table(page: Any, path: Path, level: int) -> None:
    """A tiled page must list one offset per tile of its declared size (else tifffile pads the
    missing tiles silently, and a forged size makes a tiny file look like a huge slide)."""
    if not page.is_tiled:
        return
    need = int(np.prod(page.chunked, dtype=np.int64))
    have = len(page.dataoffsets)
    if have != need or len(page.databytecounts) != need:
        raise SlideError(
            path,
            f"level {level}: the tile table lists {have} tiles, but a {page.imagewidth} × {page.imagelength} px "
            f"image in {page.tilewidth} × {page.tilelength} px tiles has {need}: the header is corrupt",
        )


def _resolution_facts(tif: Any, series: Any) -> tuple[float | None, float | None, dict[str, Any]]:
    """(mpp, magnification, metadata) from vendor metadata, OME-XML or resolution tags."""
    page = tif.pages[0]
    meta: dict[str, Any] = {}
    mpp: float | None = None
    mag: float | None = None
    if tif.is_svs:
        desc = page.description or ""
        meta["description"] = desc.split("|")[0].strip()[:200]
        fields = dict(
            (k.strip(), v.strip())
            for k, _, v in (item.partition("=") for item in desc.split("|")[1:])
            if k.strip()
        )
        mpp = positive_float(fields.get("MPP"))
        mag = positive_float(fields.get("AppMag"))
        keep = ("AppMag", "MPP", "ScanScope ID", "Date")
        if any(k in fields for k in keep):
            meta["aperio"] = {k: fields[k] for k in keep if k in fields}
    elif tif.is_ome and tif.ome_metadata:
        mpp, mag = _ome_facts(tif.ome_metadata)
    elif tif.is_ndpi:
        tags = page.ndpi_tags or {}
        mag = positive_float(tags.get("Magnification"))
        mpp = _tag_mpp(page)
        meta["ndpi"] = {k: str(v) for k, v in tags.items() if k in ("Model", "Magnification")}
    if mpp is None and not tif.is_svs:
        mpp = _tag_mpp(series.keyframe)
    if mpp is not None and not _PLAUSIBLE_MPP[0] <= mpp <= _PLAUSIBLE_MPP[1]:
        meta["implausible_mpp"] = mpp
        mpp = None
    return mpp, mag, meta


def _tag_mpp(page: Any) -> float | None:
    """µm/px from XResolution when the unit is inch or cm (unit NONE says nothing)."""
    unit = int(page.tags.valueof(296, default=2) or 1)  # ResolutionUnit, TIFF default inch
    res = page.tags.valueof(282)  # XResolution (numerator, denominator)
    if res is None or unit not in (2, 3):
        return None
    num, den = (res if isinstance(res, tuple) else (res, 1))[:2]
    if not num or not den:
        return None
    px_per_unit = num / den
    return (25400.0 if unit == 2 else 10000.0) / px_per_unit


def _ome_facts(xml: str) -> tuple[float | None, float | None]:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, None
    mpp = mag = None
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "Pixels" and mpp is None:
            size = positive_float(el.get("PhysicalSizeX"))
            unit = el.get("PhysicalSizeXUnit", "µm")
            if size is not None and unit in UNIT_UM:
                mpp = size * UNIT_UM[unit]
        elif tag == "Objective" and mag is None:
            mag = positive_float(el.get("NominalMagnification"))
    return mpp, mag


def _associated(tif: Any, series: Any, path: Path) -> dict[str, Any]:
    """Lazy loaders for SVS thumbnail / label / macro (other series named so)."""
    out: dict[str, Any] = {}
    for s in tif.series:
        if s is series:
            continue
        key = (s.name or "").strip().lower()
        if key in ("thumbnail", "label", "macro") and key not in out:
            out[key] = _loader(s, path)
    return out


def _loader(series: Any, path: Path):
    def load() -> np.ndarray:
        try:
            data = series.asarray()
        except Exception as exc:
            raise SlideError(path, f"cannot read the {series.name} image: {exc}") from exc
        return rgb8_numpy(data, series.axes, path)

    return load


def is_tiff(path: Path) -> bool:
    """True when the file starts with a TIFF / BigTIFF byte-order mark."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

