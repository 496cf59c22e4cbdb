"""The bundled samples (see ``napari_glandseg/data/PROVENANCE.md``): RINGS prostate tiles at
≈ 2.72 µm/px (CC BY 4.0), and a coarse TCGA prostate section (≈ 5 µm/px)."""

from __future__ import annotations

from pathlib import Path

#: Estimated µm/px of the sample: its file states none. See data/PROVENANCE.md for the method.
SAMPLE_MPP = 5.0


def sample_slide_path() -> Path:
    """Path of the bundled pyramidal OME-TIFF sample."""
    return Path(__file__).resolve().parent.parent / "data" / "prostate_sample.ome.tif"


#: RINGS tiles: ≈ 2.72 µm/px (1500-px originals at ≈ 0.93 µm/px resized to 512 px), stored in the file.
RINGS_SAMPLE_MPP = 2.72


def rings_sample_path() -> Path:
    """Path of the bundled RINGS prostate mosaic (pyramidal OME-TIFF; CC BY 4.0, Salvi et al. 2021)."""
    return Path(__file__).resolve().parent.parent / "data" / "prostate_rings.ome.tif"
