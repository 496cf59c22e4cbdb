"""Sub-commands of the ``glandseg`` CLI (see ``napari_glandseg.cli``)."""
