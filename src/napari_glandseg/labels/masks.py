"""Reading ground-truth masks and their images: one reader for `glandseg evaluate`, fine-tuning
and training folders, so a folder one of them accepts is read the same way by the others.

A mask may be binary (0/255 or 0/1), an instance map (grey or palette values, one per gland) or
colour-coded (each gland its own colour, black background: one id per colour, never its red
channel alone). Lossy formats are refused: JPEG blurs a mask's edges into extra "glands".
"""

from __future__ import annotations

import os

import numpy as np

from napari_glandseg._atomic import open_regular
from napari_glandseg.errors import GlandsegError

#: Formats that blur a mask's values at the glands' edges: a blurred instance mask cannot be read back.
LOSSY_FORMATS = ("JPEG", "MPO", "WEBP")


def colour_ids(arr: np.ndarray) -> np.ndarray:
    """A 2-D id map from an H×W or H×W×C mask: grey as it is, colours as one id per colour."""
    if arr.ndim == 2:
        return arr
    arr = arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1]
    if arr.shape[2] == 1 or (arr == arr[..., :1]).all():
        return arr[..., 0]
    rgb = arr.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # black stays 0


def read_image(path: str | os.PathLike, *, rgb: bool = True) -> np.ndarray:
    """An image file as an array (RGB uint8 with ``rgb``); unreadable, huge or broken files are a
    ``GlandsegError`` naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open_regular(path) as f, Image.open(f) as im:  # a FIFO must not hang the caller
            return np.asarray(im.convert("RGB") if rgb else im)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
        raise GlandsegError(f"{path}: cannot read the image: {exc}") from exc


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask file as one 2-D array (see the module doc)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open_regular(path) as f, Image.open(f) as im:
            fmt, arr = im.format, np.asarray(im)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
        raise GlandsegError(f"{path}: cannot read the mask: {exc}") from exc
    if fmt in LOSSY_FORMATS:
        raise GlandsegError(f"{path}: a {fmt} mask (lossy: gland edges blur into "
                            f"{np.unique(arr).size} values); save the masks as PNG or TIFF")
    return colour_ids(arr)
