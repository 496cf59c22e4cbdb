"""npe2 sample data: RINGS prostate tiles (CC BY 4.0) and a coarse TCGA prostate section (see
data/PROVENANCE.md)."""

from __future__ import annotations

from napari_glandseg._reader import LayerData, slide_layer_data
from napari_glandseg.slide import SAMPLE_MPP, open_slide, sample_slide_path
from napari_glandseg.slide.sample import rings_sample_path

RINGS_CREDIT = "RINGS, Salvi et al. 2021, CC BY 4.0"


def prostate_sample() -> list[LayerData]:
    """The coarse (≈ 5 µm/px, estimated: the file has none) TCGA section as a multiscale layer."""
    slide = open_slide(sample_slide_path(), mpp=SAMPLE_MPP)
    return [slide_layer_data(slide, name="TCGA prostate section (≈ 5 µm/px)")]


def rings_sample() -> list[LayerData]:
    """Eight RINGS prostate tiles (4 with glands, 4 with tumour) at ≈ 2.72 µm/px, with their credit."""
    slide = open_slide(rings_sample_path())
    return [slide_layer_data(slide, name=f"prostate tiles ({RINGS_CREDIT})")]
