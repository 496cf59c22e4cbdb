"""The npe2 reader in a real (offscreen) viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_glandseg._reader import napari_get_reader
from napari_glandseg._sample_data import prostate_sample
from napari_glandseg.slide import SAMPLE_MPP, sample_slide_path

pytestmark = pytest.mark.gui


def test_reader_opens_svs_as_multiscale_rgb_in_um(make_napari_viewer, shared_data):
    path = shared_data / "slides" / "cmu-1-small-region.svs"
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin="napari-glandseg")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.rgb and layer.multiscale
    assert len(layer.data) == 4
    np.testing.assert_allclose(layer.scale, [0.499, 0.499])
    assert layer.metadata["glandseg_slide"]["format"] == "aperio-svs"
    assert layer.metadata["path"] == str(path)
    assert layer.name == "cmu-1-small-region"


def test_broken_file_errors_and_viewer_survives(make_napari_viewer, tmp_path, shared_data):
    bad = tmp_path / "broken.svs"
    bad.write_text("definitely not a slide")
    viewer = make_napari_viewer()
    with pytest.raises(Exception, match="broken.svs") as info:
        viewer.open(bad, plugin="napari-glandseg")
    chain, exc = [], info.value
    while exc is not None:
        chain.append(type(exc).__name__)
        exc = exc.__cause__ or exc.__context__
    assert "SlideError" in chain
    assert len(viewer.layers) == 0
    viewer.open(shared_data / "slides" / "tcga-cr-7395-01a-01-ts1.svs", plugin="napari-glandseg")
    assert len(viewer.layers) == 1
    assert tuple(viewer.layers[0].scale) == (1.0, 1.0)  # no mpp: pixels


def test_reader_declines_other_paths(tmp_path):
    assert napari_get_reader(str(tmp_path / "table.csv")) is None
    assert napari_get_reader(["a.svs", "b.svs"]) is None
    assert callable(napari_get_reader(str(tmp_path / "x.svs")))


def test_sample_data_layer():
    [(data, meta, kind)] = prostate_sample()
    assert kind == "image" and meta["rgb"] and meta["multiscale"]
    assert meta["scale"] == (SAMPLE_MPP, SAMPLE_MPP)
    assert data[0].shape == (2638, 3236, 3)
    assert meta["metadata"]["path"] == str(sample_slide_path())
    assert data[-1].compute().mean() > 100


def test_rings_sample_layer_carries_its_resolution_and_credit():
    import tifffile

    from napari_glandseg._sample_data import rings_sample
    from napari_glandseg.slide.sample import RINGS_SAMPLE_MPP, rings_sample_path

    [(data, meta, kind)] = rings_sample()
    assert kind == "image" and meta["rgb"] and meta["multiscale"]
    assert meta["scale"] == (RINGS_SAMPLE_MPP, RINGS_SAMPLE_MPP), "µm/px read from the file's OME metadata"
    assert data[0].shape == (1120, 2208, 3)
    assert "CC BY 4.0" in meta["name"]
    with tifffile.TiffFile(rings_sample_path()) as tif:
        assert "doi:10.17632/h8bdwrtnr5.1" in tif.ome_metadata, "the attribution travels with the file"
    tissue = data[0][32:544, 32:544].compute()
    assert tissue.std() > 20 and data[0][:32].compute().min() > 240, "tiles on white gaps (JPEG-compressed)"
