"""Generated test slides whose pixels are real tissue: GlaS images tiled into pyramids.

Writers for pyramidal TIFF (levels as SubIFDs or as following pages), OME-TIFF and OME-Zarr
(NGFF 0.4 on zarr v2, 0.5 on zarr v3), plus a huge 100,000² TIFF whose level-0 tiles are junk.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def glas_mosaic(glas_dir: Path, height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """An H×W×3 uint8 mosaic of 256² crops from real GlaS training images."""
    from PIL import Image

    files = sorted((glas_dir / "train" / "images").glob("*.png"))[:12]
    crops = []
    for f in files:
        im = np.asarray(Image.open(f).convert("RGB"))
        crops.append(im[:256, :256])
    rng = np.random.default_rng(seed)
    out = np.empty((height, width, 3), np.uint8)
    for y in range(0, height, 256):
        for x in range(0, width, 256):
            c = crops[rng.integers(len(crops))]
            h, w = min(256, height - y), min(256, width - x)
            out[y : y + h, x : x + w] = c[:h, :w]
    return out


def pyramid_levels(img: np.ndarray, n_levels: int) -> list[np.ndarray]:
    """Level 0 and 2× mean-downsampled levels."""
    levels = [img]
    for _ in range(n_levels - 1):
        a = levels[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        b = a[:h, :w].astype(np.uint16)
        levels.append(((b[::2, ::2] + b[1::2, ::2] + b[::2, 1::2] + b[1::2, 1::2] + 2) // 4).astype(np.uint8))
    return levels


def write_pyramid_tiff(
    path: Path,
    img: np.ndarray,
    *,
    n_levels: int = 3,
    layout: str = "subifds",
    ome: bool = False,
    mpp: float | None = None,
    tile: int = 256,
    compression: str | None = "jpeg",
) -> list[np.ndarray]:
    """Write a tiled pyramid; returns the levels written (before JPEG loss)."""
    import tifffile

    levels = pyramid_levels(img, n_levels)
    opts: dict = {"tile": (tile, tile), "compression": compression, "photometric": "rgb"}
    first: dict = {}
    if ome:
        meta: dict = {"axes": "YXS"}
        if mpp is not None:
            meta.update(PhysicalSizeX=mpp, PhysicalSizeY=mpp)
        first["metadata"] = meta
    else:
        first["metadata"] = None  # no tifffile 'shaped' description: a plain generic TIFF
        if mpp is not None:
            first["resolution"] = (1e4 / mpp, 1e4 / mpp)
            first["resolutionunit"] = "CENTIMETER"
    if layout == "subifds":
        first["subifds"] = n_levels - 1
    with tifffile.TiffWriter(path, bigtiff=True, ome=ome) as tw:
        tw.write(levels[0], **opts, **first)
        for lv in levels[1:]:
            extra = {} if ome else {"metadata": None}
            tw.write(lv, subfiletype=1, **opts, **extra)
    return levels


def write_ome_zarr(
    path: Path,
    img: np.ndarray,
    *,
    version: str = "0.4",
    n_levels: int = 3,
    mpp: float | None = 0.5,
    layout: str = "cyx",
    chunk: int = 256,
) -> list[np.ndarray]:
    """OME-Zarr image: NGFF 0.4 (zarr v2 .zattrs) or 0.5 (zarr v3, attributes under "ome")."""
    import zarr

    levels = pyramid_levels(img, n_levels)
    group = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    axes_names = {"cyx": "cyx", "yxc": "yxc", "tczyx": "tczyx"}[layout]
    axes = []
    for name in axes_names:
        ax: dict = {"name": name, "type": {"t": "time", "c": "channel"}.get(name, "space")}
        if name in "yx" and mpp is not None:
            ax["unit"] = "micrometer"
        axes.append(ax)
    datasets = []
    for i, lv in enumerate(levels):
        if layout == "cyx":
            data = np.moveaxis(lv, 2, 0)
        elif layout == "tczyx":
            data = np.moveaxis(lv, 2, 0)[None, :, None]
        else:
            data = lv
        chunks = tuple(chunk if n in "yx" else 1 if n in "tz" else 3 for n in axes_names)
        arr = group.create_array(str(i), shape=data.shape, chunks=chunks, dtype="uint8")
        arr[...] = data
        scale = [((mpp or 1.0) * 2**i) if n in "yx" else 1.0 for n in axes_names]
        datasets.append({"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    ms = {"axes": axes, "datasets": datasets, "name": path.stem}
    if version == "0.4":
        ms["version"] = "0.4"
        group.attrs["multiscales"] = [ms]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [ms]}
    return levels


def write_huge_junk_tiff(path: Path, side: int = 100_000, tile: int = 512) -> None:
    """A side×side pyramid whose level-0 tiles are junk bytes; lower levels are valid JPEG.

    Opening it, and reading the low levels, must never touch level 0; reading level 0 must
    fail with a SlideError. Pre-encoded tiles keep the file small and the write fast.
    """
    import imagecodecs
    import tifffile

    rng = np.random.default_rng(1)
    good = imagecodecs.jpeg_encode(
        rng.integers(120, 220, (tile, tile, 3), dtype=np.uint8), level=50
    )
    junk = b"not a jpeg tile"
    sizes = [side]
    while sizes[-1] > 1024:
        sizes.append(sizes[-1] // 4)  # 100000, 25000, 6250, 1562, 390

    def tiles(n: int, payload: bytes):
        for _ in range(n):
            yield payload

    opts = {"tile": (tile, tile), "compression": "jpeg", "photometric": "rgb", "dtype": "uint8"}
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for i, s in enumerate(sizes):
            n = (-(-s // tile)) ** 2
            payload = junk if i < len(sizes) - 2 else good  # only the two smallest are valid
            tw.write(
                tiles(n, payload),
                shape=(s, s, 3),
                subfiletype=1 if i else 0,
                metadata=None,
                **({"subifds": len(sizes) - 1} if i == 0 else {}),
                **opts,
            )


def json_attrs(path: Path) -> dict:
    """The top-level attributes of a zarr v2 / v3 group (for assertions)."""
    if (path / "zarr.json").is_file():
        return json.loads((path / "zarr.json").read_text())["attributes"]
    return json.loads((path / ".zattrs").read_text())


def write_flat_giant_tiff(path: Path, tile_rgb: np.ndarray, side: int = 1_000_000) -> None:
    """A side×side single-level tiled BigTIFF (no lower levels) at 0.5 µm/px, about 2 MB.

    Only the top-left tile holds ``tile_rgb`` (a square JPEG tile, 4096 px at most); every other
    tile is junk, so any read beyond the top-left tile fails with a SlideError.
    """
    import imagecodecs
    import tifffile

    tile = tile_rgb.shape[0]
    good = imagecodecs.jpeg_encode(np.ascontiguousarray(tile_rgb), level=85)
    n = (-(-side // tile)) ** 2

    def tiles():
        yield good
        for _ in range(n - 1):
            yield b"not a jpeg tile"

    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(tiles(), shape=(side, side, 3), dtype="uint8", tile=(tile, tile), compression="jpeg",
                 photometric="rgb", metadata=None, resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
