"""OpenSlide backend (optional): MRXS, SCN, BIF, VMS and whatever tifffile cannot read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg.errors import SlideError
from napari_glandseg.slide._base import Slide, computed_pyramid, dask_from_source
from napari_glandseg.slide._units import positive_float
from napari_glandseg.slide.pixels import composite_on_white

#: Dask chunk edge when the file does not state a usable tile size.
_CHUNK_PX = 512


def available() -> bool:
    try:
        import openslide  # noqa: F401
    except Exception:  # ImportError, or OSError when the C library is missing
        return False
    return True


class _LevelReader:
    """Array-like (Y, X, 3) over one OpenSlide level; each ``__getitem__`` is one read_region."""

    def __init__(self, osr: Any, level: int) -> None:
        self._osr = osr
        self._level = level
        w, h = osr.level_dimensions[level]
        self.shape = (int(h), int(w), 3)
        self.dtype = np.dtype(np.uint8)
        self._ds = float(osr.level_downsamples[level])

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        ys, xs = key[0], key[1]
        y0, y1 = ys.start or 0, self.shape[0] if ys.stop is None else ys.stop
        x0, x1 = xs.start or 0, self.shape[1] if xs.stop is None else xs.stop
        # read_region takes level-0 coordinates for the top-left corner
        loc = (int(round(x0 * self._ds)), int(round(y0 * self._ds)))
        img = self._osr.read_region(loc, self._level, (int(x1 - x0), int(y1 - y0)))
        # openslide-python un-premultiplies: straight RGBA, transparent (alpha 0) off the scanned area
        out = composite_on_white(np.asarray(img, dtype=np.uint8))
        return out[:, :, key[2]] if len(key) > 2 else out


def open_openslide(path: Path, *, mpp: float | None = None) -> Slide:
    """Open any slide OpenSlide understands; levels are dask arrays of lazy read_region calls."""
    try:
        import openslide
    except Exception as exc:
        raise SlideError(
            path, f"this format needs OpenSlide; install napari-glandseg[openslide] ({exc})"
        ) from exc
    try:
        osr = openslide.OpenSlide(str(path))
    except Exception as exc:
        raise SlideError(path, f"OpenSlide cannot open it ({type(exc).__name__}: {exc})") from exc
    props = dict(osr.properties)
    levels = []
    token = f"{path.resolve()}-{path.stat().st_mtime}"
    tile_px = _int(props.get("openslide.level[0].tile-width"))
    for i in range(osr.level_count):
        reader = _LevelReader(osr, i)
        if 0 in reader.shape:
            osr.close()
            raise SlideError(path, f"level {i} is empty (shape {reader.shape})")
        tw = _int(props.get(f"openslide.level[{i}].tile-width"))
        th = _int(props.get(f"openslide.level[{i}].tile-height"))
        edge = tw if tw and tw == th and tw >= 256 else _CHUNK_PX
        levels.append(
            dask_from_source(
                reader, (edge, edge, 3), f"glandseg-openslide-{token}-{i}", path, f"level {i}"
            )
        )
    downsamples: list[float] | None = [float(d) for d in osr.level_downsamples]
    if len(levels) == 1:
        levels, downsamples = computed_pyramid(levels[0]), None
    mpp_x = positive_float(props.get(openslide.PROPERTY_NAME_MPP_X))
    mag = positive_float(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER))
    associated = {name: _assoc_loader(osr, name) for name in osr.associated_images}
    meta = {
        "vendor": props.get(openslide.PROPERTY_NAME_VENDOR),
        "native_levels": osr.level_count,
    }
    return Slide(
        path,
        format="openslide",
        levels=levels,
        downsamples=downsamples,
        native_levels=osr.level_count,
        mpp=mpp if mpp is not None else mpp_x,
        magnification=mag,
        associated=associated,
        metadata=meta,
        tile_px=tile_px,
        closer=osr.close,
    )


def _assoc_loader(osr: Any, name: str):
    def load() -> np.ndarray:
        return np.asarray(osr.associated_images[name].convert("RGB"))

    return load


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None
