"""Guided gland segmentation: a click or squiggle on a gland → its outline (compute side of the
plugin's click tool; no napari here)."""

from napari_glandseg.interactive.guidance import guidance_maps
from napari_glandseg.interactive.segment import GlandWindow, paste, segment_gland, segment_gland_on_slide

__all__ = ["GlandWindow", "guidance_maps", "paste", "segment_gland", "segment_gland_on_slide"]
