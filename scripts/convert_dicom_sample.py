"""Convert the small TCGA prostate DICOM (../shared/data/slides/small_dicom.dcm) into the
bundled sample: a pyramidal, tiled JPEG OME-TIFF with levels as SubIFDs.

The DICOM stores its 42 frames of 500×500 column by column (frame i at column i // 6,
row i % 6) instead of row by row, so it is re-assembled here and cropped to the
TotalPixelMatrix (3236 × 2638, W × H). The file states no pixel spacing, so none is written.

    .venv/bin/python scripts/convert_dicom_sample.py \
        ../shared/data/slides/small_dicom.dcm src/napari_glandseg/data/prostate_sample.ome.tif
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

TILE_PX = 256
MIN_SIDE_PX = 512
QUALITY = 90


def assemble(dcm_path: Path) -> np.ndarray:
    """The full pixel matrix (H × W × 3 uint8) from the column-major frames."""
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the header breaks several VR length limits
        ds = pydicom.dcmread(dcm_path)
        frames = ds.pixel_array  # (n, rows, cols, 3); pydicom converts YBR to RGB
    n, fh, fw = int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns)
    width, height = int(ds.TotalPixelMatrixColumns), int(ds.TotalPixelMatrixRows)
    rows_of_frames = -(-height // fh)
    cols_of_frames = -(-width // fw)
    if n != rows_of_frames * cols_of_frames:
        raise SystemExit(f"{dcm_path}: {n} frames do not tile {width}×{height} in {fw}×{fh}")
    full = np.full((rows_of_frames * fh, cols_of_frames * fw, 3), 255, np.uint8)
    for i in range(n):
        col, row = divmod(i, rows_of_frames)  # column-major: frame i at column i // rows
        full[row * fh : (row + 1) * fh, col * fw : (col + 1) * fw] = frames[i]
    return full[:height, :width]


def pyramid(level0: np.ndarray) -> list[np.ndarray]:
    """Level 0 and 2×2-mean levels down until the smaller side is below ``MIN_SIDE_PX``."""
    levels = [level0]
    while min(levels[-1].shape[:2]) >= MIN_SIDE_PX:
        a = levels[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        b = a[:h, :w].astype(np.uint16)
        levels.append(((b[0::2, 0::2] + b[1::2, 0::2] + b[0::2, 1::2] + b[1::2, 1::2] + 2) // 4).astype(np.uint8))
    return levels


def write_ome_tiff(levels: list[np.ndarray], out: Path, *, name: str = "TCGA-XK-AAJU-01A-01-TS1 (low-resolution copy)",
                   mpp: float | None = None, description: str | None = None) -> None:
    """A tiled JPEG OME-TIFF with the lower levels as SubIFDs; ``mpp`` and ``description`` go
    into the OME metadata when given."""
    import tifffile

    metadata = {"axes": "YXS", "Name": name}
    if mpp is not None:
        metadata.update(PhysicalSizeX=mpp, PhysicalSizeY=mpp, PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    if description:
        metadata["Description"] = description

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    opts = dict(
        tile=(TILE_PX, TILE_PX),
        compression="jpeg",
        compressionargs={"level": QUALITY},
        photometric="rgb",
    )
    with tifffile.TiffWriter(tmp, ome=True) as tw:
        tw.write(
            levels[0],
            subifds=len(levels) - 1,
            metadata=metadata,
            **opts,
        )
        for lv in levels[1:]:
            tw.write(lv, subfiletype=1, **opts)
    tmp.replace(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dicom", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    levels = pyramid(assemble(args.dicom))
    write_ome_tiff(levels, args.out)
    shapes = ", ".join(f"{lv.shape[1]}×{lv.shape[0]}" for lv in levels)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB; levels {shapes})")


if __name__ == "__main__":
    main()
