"""Open whole-slide images as lazy pyramids: ``open_slide(path) -> Slide``.

One module per backend: ``tiff`` (tifffile), ``ngff`` (zarr / OME-Zarr), ``openslide_backend``
and ``image`` (PNG/JPEG/...). ``tissue.tissue_mask`` finds tissue on a low level.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from napari_glandseg.errors import SlideError
from napari_glandseg.slide._base import Slide
from napari_glandseg.slide.sample import SAMPLE_MPP, sample_slide_path

__all__ = ["BACKENDS", "SAMPLE_MPP", "Slide", "SlideError", "open_slide", "sample_slide_path"]

log = logging.getLogger(__name__)

BACKENDS = ("tifffile", "zarr", "openslide", "image")
#: Formats that OpenSlide reads better than tifffile (or tifffile cannot read at all).
_OPENSLIDE_FIRST = {".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide"}


def open_slide(
    path: str | os.PathLike, *, mpp: float | None = None, backend: str | None = None
) -> Slide:
    """Open a slide lazily (no level-0 pixels are read); ``mpp`` overrides the file's µm/px.

    ``backend`` forces one of ``BACKENDS``; by default it is chosen from the file's first bytes
    and extension. Every failure is a ``SlideError`` naming the file.
    """
    from napari_glandseg.slide import image, ngff, openslide_backend, tiff

    p = Path(path).expanduser()
    if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
        raise SlideError(p, f"mpp must be a finite positive number of µm per pixel, not {mpp!r}")
    if not p.exists():
        raise SlideError(p, "no such file or directory")
    if not (p.is_file() or p.is_dir()):  # a FIFO or device would block every reader for ever
        raise SlideError(p, "not a regular file or folder (a FIFO, socket or device)")
    openers = {
        "tifffile": tiff.open_tiff,
        "zarr": ngff.open_zarr,
        "openslide": openslide_backend.open_openslide,
        "image": image.open_image,
    }
    if backend is not None:
        if backend not in openers:
            raise SlideError(p, f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        return openers[backend](p, mpp=mpp)
    if p.is_dir():
        if ngff.is_zarr(p):
            return ngff.open_zarr(p, mpp=mpp)
        raise SlideError(p, "folder is not a zarr / OME-Zarr store (no zarr.json, .zattrs or .zgroup)")
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise SlideError(p, f"cannot read the file ({exc})") from exc
    if size == 0:
        raise SlideError(p, "the file is empty (0 bytes)")
    suffix = p.suffix.lower()
    if suffix in _OPENSLIDE_FIRST and openslide_backend.available():
        return openslide_backend.open_openslide(p, mpp=mpp)
    if tiff.is_tiff(p):
        try:
            return tiff.open_tiff(p, mpp=mpp)
        except SlideError as first:
            if not openslide_backend.available():
                raise
            try:
                slide = openslide_backend.open_openslide(p, mpp=mpp)
            except SlideError:
                raise first from None
            # say so: a tifffile failure on a TIFF is worth knowing about even when OpenSlide copes
            log.warning("%s; opened with OpenSlide instead", first)
            return slide
    if head.startswith(image.MAGIC):
        return image.open_image(p, mpp=mpp)
    if openslide_backend.available():
        try:
            return openslide_backend.open_openslide(p, mpp=mpp)
        except SlideError:
            pass
    raise SlideError(
        p,
        f"not a slide or image this tool can read (first bytes {head[:8]!r}); expected a TIFF-based "
        "slide (SVS, NDPI, OME-TIFF, pyramidal TIFF), OME-Zarr, PNG/JPEG, or an OpenSlide format",
    )
