"""Build the bundled prostate sample from the RINGS tiles: a pyramidal OME-TIFF mosaic.

The 4 gland tiles (top row) and 4 tumour tiles (bottom row) of ../shared/data/rings, 512² px
each at ≈ 2.72 µm/px (an estimate, see that folder's PROVENANCE.md), laid out with 32-px white
gaps like tissue pieces on glass. RINGS is CC BY 4.0: the attribution is written into the
file's OME Description and into data/PROVENANCE.md.

    .venv/bin/python scripts/make_rings_sample.py [src/napari_glandseg/data/prostate_rings.ome.tif]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from convert_dicom_sample import pyramid, write_ome_tiff
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RINGS = ROOT / ".." / "shared" / "data" / "rings"
MPP = 2.72
GAP_PX = 32
ATTRIBUTION = (
    "Prostate H&E tiles from the RINGS algorithm dataset (Salvi M., Bosco M., Molinaro L., Gambella A., "
    "Papotti M., Acharya U.R., Molinari F., 'A hybrid deep learning approach for gland segmentation in "
    "prostate histopathological images', Artificial Intelligence in Medicine 2021, "
    "doi:10.1016/j.artmed.2021.102076; data doi:10.17632/h8bdwrtnr5.1), licensed CC BY 4.0. "
    "Resized to 512 px (~2.72 um/px, estimated) and arranged as a mosaic by napari-glandseg."
)


def mosaic() -> np.ndarray:
    rows = [sorted((RINGS / part / "images").glob("*.png")) for part in ("glands", "tumour")]
    tile = 512
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (tile + GAP_PX) + GAP_PX, cols * (tile + GAP_PX) + GAP_PX, 3), 255, np.uint8)
    for i, files in enumerate(rows):
        for j, f in enumerate(files):
            img = np.asarray(Image.open(f).convert("RGB"))
            if img.shape[:2] != (tile, tile):
                raise SystemExit(f"{f}: expected a {tile}² tile, got {img.shape[:2]}")
            y, x = GAP_PX + i * (tile + GAP_PX), GAP_PX + j * (tile + GAP_PX)
            out[y:y + tile, x:x + tile] = img
    return out


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "src" / "napari_glandseg" / "data" / "prostate_rings.ome.tif"
    levels = pyramid(mosaic())
    write_ome_tiff(levels, out, name="RINGS prostate tiles (CC BY 4.0, Salvi et al. 2021)", mpp=MPP,
                   description=ATTRIBUTION)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB; {levels[0].shape[1]}×{levels[0].shape[0]} px)")


if __name__ == "__main__":
    main()
