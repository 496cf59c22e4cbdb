"""npe2 sample data: the bundled TCGA prostate section (see data/PROVENANCE.md)."""

from __future__ import annotations

from napari_glandseg._reader import LayerData, slide_layer_data
from napari_glandseg.slide import SAMPLE_MPP, open_slide, sample_slide_path


def prostate_sample() -> list[LayerData]:
    """The sample slide as a multiscale RGB layer; its µm/px is an estimate (the file has none)."""
    slide = open_slide(sample_slide_path(), mpp=SAMPLE_MPP)
    return [slide_layer_data(slide, name="prostate sample (TCGA-XK-AAJU)")]
