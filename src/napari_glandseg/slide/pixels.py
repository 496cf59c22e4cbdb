"""Pixel rules shared by the backends: whatever the file holds becomes Y×X×3 uint8, lazily."""

from __future__ import annotations

import os
import warnings

import dask.array as da
import numpy as np

from napari_glandseg.errors import SlideError

#: Axis letters (tifffile / NGFF) that may be dropped when they have length 1.
_DROPPABLE = set("TZQIRPEFHLVMA")


def to_rgb8(
    arr: da.Array,
    axes: str,
    path: str | os.PathLike,
    *,
    scale16: float | None = None,
    chunk_px: int | None = None,
) -> da.Array:
    """Return ``arr`` (axes like "YXS", "CYX", "TCZYX", "YX") as a Y×X×3 uint8 dask array.

    Grey becomes RGB, alpha is composited onto white, 16-bit is scaled to 8-bit with a warning
    (``scale16`` is the value that maps to 255; default the dtype's maximum), and anything else
    (more colour channels, float data, several planes) is a ``SlideError`` naming the shape.
    """
    axes = axes.upper().replace("S", "C")
    shape = tuple(int(s) for s in arr.shape)
    if len(axes) != arr.ndim:
        raise SlideError(path, f"axes {axes!r} do not match the image shape {shape}")
    if any(s == 0 for s in shape):
        raise SlideError(path, f"the image is empty (shape {shape})")
    if "Y" not in axes or "X" not in axes:
        raise SlideError(path, f"image with axes {axes!r} and shape {shape} has no Y and X")
    # drop singleton extra axes (time, z, pages); more than one plane is not a slide
    index: list[int | slice] = []
    kept = ""
    for ax, n in zip(axes, shape, strict=True):
        if ax in "YXC":
            index.append(slice(None))
            kept += ax
        elif n == 1:
            index.append(0)
        else:
            raise SlideError(
                path,
                f"image has {n} planes along axis {ax!r} (shape {shape}, axes {axes}); "
                "expected one RGB plane",
            )
    arr = arr[tuple(index)]
    if "C" not in kept:
        arr = arr[..., None]
        kept += "C"
    arr = arr.transpose([kept.index("Y"), kept.index("X"), kept.index("C")])
    channels = arr.shape[2]
    if channels not in (1, 2, 3, 4):
        raise SlideError(
            path,
            f"image has {channels} channels (shape {shape}, axes {axes}); expected grey, RGB or RGBA "
            "(brightfield H&E). Multichannel fluorescence is not supported",
        )
    dtype = np.dtype(arr.dtype)
    if dtype == np.uint16:
        maxval = float(scale16 or 65535)
        warnings.warn(
            f"{os.fspath(path)}: 16-bit image scaled to 8-bit (value {maxval:g} -> 255)",
            stacklevel=3,
        )
    elif dtype not in (np.dtype(np.uint8), np.dtype(bool)):
        raise SlideError(path, f"pixel type {dtype} is not supported (shape {shape}); expected uint8 or uint16")
    else:
        maxval = 1.0 if dtype == np.dtype(bool) else 255.0
    if arr.chunks[2] != (channels,):
        arr = arr.rechunk({2: channels})
    if chunk_px is not None:
        arr = arr.rechunk((chunk_px, chunk_px, channels))
    if dtype == np.uint8 and channels == 3:
        return arr
    return arr.map_blocks(
        _convert_block, maxval, dtype=np.uint8, chunks=arr.chunks[:2] + ((3,),)
    )


def _convert_block(block: np.ndarray, maxval: float) -> np.ndarray:
    """One chunk of any supported layout → RGB uint8 (alpha composited onto white)."""
    if block.dtype != np.uint8:
        block = np.clip(np.rint(block.astype(np.float32) * (255.0 / maxval)), 0, 255).astype(np.uint8)
    c = block.shape[2]
    if c in (2, 4):
        block = composite_on_white(block)
        c -= 1
    if c == 1:
        block = np.repeat(block, 3, axis=2)
    return np.ascontiguousarray(block)


def composite_on_white(block: np.ndarray) -> np.ndarray:
    """Straight (not premultiplied) uint8 colour + alpha (last channel) → colour on white, uint8."""
    alpha = block[..., -1:].astype(np.uint16)
    color = block[..., :-1].astype(np.uint16)
    # out = color*a + 255*(1-a), in integers with rounding
    return ((color * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def rgb8_numpy(arr: np.ndarray, axes: str, path: str | os.PathLike) -> np.ndarray:
    """Same rules as ``to_rgb8`` for a small in-memory image (associated images)."""
    return np.asarray(to_rgb8(da.from_array(arr, chunks=arr.shape), axes, path).compute())


def guess_axes(shape: tuple[int, ...]) -> str:
    """Axes for an array without metadata: YX, YXC or CYX (channels are the short side)."""
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3:
        if shape[2] <= 4 or (shape[2] < shape[0] and shape[2] < 16):
            return "YXC"
        return "CYX"
    if len(shape) == 5:
        return "TCZYX"
    if len(shape) == 4:
        return "CZYX" if shape[0] <= 4 else "ZYXC"
    return "?" * len(shape)
