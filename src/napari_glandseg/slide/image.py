"""Plain images (PNG, JPEG, BMP, ...): one decoded level plus a lazily computed pyramid."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg.errors import SlideError
from napari_glandseg.slide._base import DEFAULT_CHUNK_PX, Slide, computed_pyramid, dask_from_source
from napari_glandseg.slide.pixels import to_rgb8

#: PIL modes and how they map onto (channels, dtype) before the pixel rules apply.
_MODES: dict[str, tuple[int, str]] = {
    "1": (1, "bool"),
    "L": (1, "uint8"),
    "LA": (2, "uint8"),
    "RGB": (3, "uint8"),
    "RGBA": (4, "uint8"),
    "I;16": (1, "uint16"),
    "I;16B": (1, "uint16"),
    "I;16L": (1, "uint16"),
}
#: Modes PIL converts for us without losing anything that matters for H&E.
_CONVERT = {"P": "RGBA", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "RGBX": "RGB"}

MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"BM", b"GIF8", b"RIFF")


class _LazyImage:
    """Decodes the whole file on first access (PNG/JPEG cannot be read by region) and keeps it."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: str, convert: str | None) -> None:
        self._path = path
        self._convert = convert
        self._data: np.ndarray | None = None
        self._lock = threading.Lock()
        self.shape = shape
        self.dtype = np.dtype(dtype)

    def _load(self) -> np.ndarray:
        from PIL import Image

        with self._lock:
            if self._data is None:
                with Image.open(self._path) as im:
                    im = im.convert(self._convert) if self._convert else im
                    data = np.asarray(im)
                if data.dtype != self.dtype:
                    data = data.astype(self.dtype)
                self._data = data.reshape(self.shape)
            return self._data

    def __getitem__(self, key: Any) -> np.ndarray:
        return self._load()[key]


def open_image(path: Path, *, mpp: float | None = None) -> Slide:
    """Open a plain image with PIL; pixels are decoded only when first read."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # large scans are the point; we never decode eagerly
    try:
        with Image.open(path) as im:
            mode, (w, h) = im.mode, im.size
            dpi = im.info.get("dpi")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SlideError(path, f"not a readable image ({type(exc).__name__}: {exc})") from exc
    if w == 0 or h == 0:
        raise SlideError(path, f"the image is empty ({w}×{h} px)")
    convert = _CONVERT.get(mode)
    channels, dtype = _MODES.get(convert or mode, (0, ""))
    if not channels:
        raise SlideError(path, f"image mode {mode!r} ({w}×{h}) is not supported; expected RGB or grey")
    lazy = _LazyImage(path, (h, w, channels), dtype, convert)
    token = f"{path.resolve()}-{path.stat().st_mtime}"
    raw = dask_from_source(
        lazy, (DEFAULT_CHUNK_PX, DEFAULT_CHUNK_PX, channels), f"glandseg-image-{token}", path, "image"
    )
    level0 = to_rgb8(raw, "YXC", path)
    levels = computed_pyramid(level0)
    file_mpp = None
    if dpi and dpi[0] and 25400.0 / float(dpi[0]) <= 50.0:  # 72/96/300 dpi are screen defaults
        file_mpp = 25400.0 / float(dpi[0])
    return Slide(
        path,
        format="image",
        levels=levels,
        mpp=mpp if mpp is not None else file_mpp,
        metadata={"mode": mode, "native_levels": 1},
        native_levels=1,
        tile_px=None,
    )
