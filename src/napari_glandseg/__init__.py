"""napari-glandseg: gland segmentation for H&E whole-slide images."""

__version__ = "0.1.0"
