"""npe2 reader: whole-slide images as multiscale RGB layers scaled in µm."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_glandseg.slide import Slide, open_slide

#: Extensions this reader takes (the manifest's filename_patterns, plus .ome.tif variants).
SUFFIXES = {
    ".svs", ".tif", ".tiff", ".ndpi", ".zarr", ".mrxs", ".scn", ".bif", ".vms", ".vmu",
    ".svslide", ".png", ".jpg", ".jpeg", ".bmp",
}

LayerData = tuple[Any, dict[str, Any], str]


def napari_get_reader(path: str | os.PathLike | list) -> Callable[[Any], list[LayerData]] | None:
    """Return a reader for one slide path, or None for paths this plugin does not handle."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.suffix.lower() not in SUFFIXES:
        return None
    return read_slide


def read_slide(path: str | os.PathLike | list) -> list[LayerData]:
    """Open the slide lazily; a broken file raises ``SlideError`` (napari shows its message)."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    return [slide_layer_data(open_slide(path))]


def slide_layer_data(slide: Slide, **extra: Any) -> LayerData:
    """napari layer data for a slide: multiscale when it has levels, scale in µm when known."""
    levels = list(slide.levels)
    meta: dict[str, Any] = {
        "rgb": True,
        "name": slide.name,
        "metadata": {"glandseg_slide": slide.info(), "path": str(slide.path)},
    }
    if len(levels) > 1:
        meta["multiscale"] = True
    if slide.mpp is not None:
        meta["scale"] = (slide.mpp, slide.mpp)
    meta.update(extra)
    return (levels if len(levels) > 1 else levels[0], meta, "image")
