"""zarr backend: OME-Zarr (NGFF 0.4 on zarr v2, 0.5 on zarr v3) and plain zarr multiscales."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.array as da

from napari_glandseg.errors import SlideError
from napari_glandseg.slide._base import (
    DEFAULT_CHUNK_PX,
    Slide,
    computed_pyramid,
    dask_from_source,
    square_chunks,
)
from napari_glandseg.slide._units import UNIT_UM
from napari_glandseg.slide.pixels import guess_axes, to_rgb8

_METADATA_FILES = ("zarr.json", ".zattrs", ".zgroup", ".zarray")


def is_zarr(path: Path) -> bool:
    """A folder with zarr metadata at its top."""
    return path.is_dir() and any((path / name).is_file() for name in _METADATA_FILES)


def open_zarr(path: Path, *, mpp: float | None = None) -> Slide:
    """Open an OME-Zarr image (or a zarr array / group of numbered arrays) lazily."""
    import zarr

    if not is_zarr(path):
        raise SlideError(path, "folder has no zarr metadata (zarr.json, .zattrs or .zgroup)")
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise SlideError(path, f"not a readable zarr store ({type(exc).__name__}: {exc})") from exc
    if isinstance(node, zarr.Array):
        arrays, axes, file_mpp, fmt = [node], guess_axes(node.shape), None, "zarr"
    else:
        arrays, axes, file_mpp, fmt = _multiscale(node, path)
    token = f"{path.resolve()}-{path.stat().st_mtime}"
    levels: list[da.Array] = []
    for i, arr in enumerate(arrays):
        if any(int(s) == 0 for s in arr.shape):
            raise SlideError(path, f"the image is empty (level {i} shape {tuple(arr.shape)})")
        if len(axes) != arr.ndim:
            raise SlideError(path, f"axes {axes!r} do not match level {i} shape {tuple(arr.shape)}")
        iy, ix = axes.upper().index("Y"), axes.upper().index("X")
        edge = square_chunks((arr.chunks[iy], arr.chunks[ix]))
        chunks = tuple(
            int(c) if edge or ax.upper() not in "YX" else DEFAULT_CHUNK_PX
            for c, ax in zip(arr.chunks, axes, strict=True)
        )
        raw = dask_from_source(arr, chunks, f"glandseg-zarr-{token}-{i}", path, f"level {i}")
        levels.append(to_rgb8(raw, axes, path))
    native = len(levels)
    if native == 1:
        levels = computed_pyramid(levels[0])
    edge0 = levels[0].chunksize[0]
    return Slide(
        path,
        format=fmt,
        levels=levels,
        mpp=mpp if mpp is not None else file_mpp,
        metadata={"native_levels": native, "axes": axes},
        native_levels=native,
        tile_px=int(edge0),
    )


def _multiscale(group: Any, path: Path) -> tuple[list[Any], str, float | None, str]:
    """(level arrays, axes, mpp, format) from NGFF multiscales attributes or numbered arrays."""
    attrs = dict(group.attrs)
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else None
    multiscales = (ome or attrs).get("multiscales")
    if not multiscales:
        # a plain group of arrays "0", "1", ... (largest first) is still a pyramid
        names = sorted((k for k in group.array_keys() if k.isdigit()), key=int)
        if not names:
            raise SlideError(path, "zarr group has no 'multiscales' metadata and no arrays 0, 1, ...")
        arrays = [group[n] for n in names]
        return arrays, guess_axes(arrays[0].shape), None, "zarr"
    ms = multiscales[0]
    version = str((ome or {}).get("version") or ms.get("version") or "")
    try:
        arrays = [group[d["path"]] for d in ms["datasets"]]
    except Exception as exc:
        raise SlideError(path, f"multiscales dataset missing ({type(exc).__name__}: {exc})") from exc
    axes_meta = ms.get("axes")
    if axes_meta:
        names = [a["name"] if isinstance(a, dict) else str(a) for a in axes_meta]
        axes = "".join(n[0].upper() for n in names)
    else:
        axes = guess_axes(arrays[0].shape)
    mpp = _mpp(ms, axes_meta, axes)
    fmt = "ome-zarr" if version else "zarr"
    return arrays, axes, mpp, fmt


def _mpp(ms: dict, axes_meta: Any, axes: str) -> float | None:
    """X scale of dataset 0 (times any multiscale-level scale), in µm when the unit says so."""
    if not axes_meta or "X" not in axes:
        return None
    ix = axes.index("X")
    ax = axes_meta[ix]
    unit = ax.get("unit") if isinstance(ax, dict) else None
    if unit not in UNIT_UM:
        return None
    scale = 1.0
    for source in (ms["datasets"][0].get("coordinateTransformations") or [],
                   ms.get("coordinateTransformations") or []):
        for t in source:
            if t.get("type") == "scale":
                scale *= float(t["scale"][ix])
    return scale * UNIT_UM[unit] if scale > 0 else None
