"""Import GeoJSON in the Export widget: a small file with a huge polygon stays on the slide."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _layers import SYNTH_SHAPE

from napari_glandseg._widgets import ExportWidget

pytestmark = pytest.mark.gui


def test_a_huge_square_is_imported_on_a_grid_clipped_to_the_slide(make_napari_viewer, synth_slide, tmp_path):
    viewer = make_napari_viewer()
    [image] = viewer.open(synth_slide, plugin="napari-glandseg")
    ring = [[100, 50], [20_100, 50], [20_100, 20_050], [100, 20_050], [100, 50]]
    path = tmp_path / "huge.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {}}]}))
    viewer.layers.selection.active = image
    layer = ExportWidget(viewer).import_geojson(path)
    assert layer is not None
    h, w = SYNTH_SHAPE
    assert layer.data.shape == (h - (50 - 32), w - (100 - 32))  # was 20,064 × 20,064 px (1.6 GB)
    assert np.asarray(layer.data)[32:, 32:].all()
    assert layer.get_value(image.data_to_world((60, 110)), world=True) > 0
    assert layer.get_value(image.data_to_world((40, 90)), world=True) == 0
