"""The bundled sample slide (a TCGA prostate section; see ``napari_glandseg/data/PROVENANCE.md``)."""

from __future__ import annotations

from pathlib import Path

#: Estimated µm/px of the sample: its file states none. See data/PROVENANCE.md for the method.
SAMPLE_MPP = 5.0


def sample_slide_path() -> Path:
    """Path of the bundled pyramidal OME-TIFF sample."""
    return Path(__file__).resolve().parent.parent / "data" / "prostate_sample.ome.tif"
