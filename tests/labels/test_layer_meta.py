"""GlandLayerMeta: one typed owner of a gland layer's state, JSON-compatible with saved layers."""

from __future__ import annotations

import dataclasses
import json

import pytest

from napari_glandseg.labels import layer_meta as lm
from napari_glandseg.slide.placement import GridPlacement

#: ``metadata["glandseg"]`` as the previous version wrote it for a "Segment view" layer
#: (after a JSON round trip: lists, not tuples), with its flat copies beside it.
SAVED = {
    "kind": "view", "slide_path": "/data/s.svs", "slide_name": "s", "slide_mpp": 0.5,
    "slide_shape": [2048, 2560], "label_scale0": 2.5, "label_translate0": [100.75, 200.75],
    "model": "glandseg_small", "model_mpp": 1.24, "bbox0": [100, 200, 400, 500],
    "store": "/data/s.glandseg.zarr", "store_region": None,
    "reviewed": [{"store": "/data/s.glandseg.zarr", "region": [1, 2, 3, 4], "model": "glandseg_small"}],
    "uncertain_reviewed": [4, 2],
}


def test_a_layer_saved_by_the_previous_version_reads_and_writes_back_unchanged():
    metadata = json.loads(json.dumps({lm.KEY: SAVED, "bbox0": [100, 200, 400, 500], "mpp": 1.24}))
    meta = lm.read(metadata)
    assert meta.placement == GridPlacement(2.5, (100.75, 200.75))
    assert meta.bbox0 == (100, 200, 400, 500) and meta.uncertain_reviewed == (4, 2)
    assert meta.labels_mpp == pytest.approx(1.25)  # the slide's µm/px × the grid's scale, not the model's
    assert meta.to_metadata() == SAVED
    assert json.loads(json.dumps(meta.to_metadata())) == SAVED


def test_unknown_keys_survive_and_missing_ones_default():
    old = {"kind": "import", "slide_name": "s", "slide_shape": [10, 20], "label_scale0": 1.0,
           "label_translate0": [0.0, 0.0], "source_geojson": "/a.geojson", "someday": 3}
    meta = lm.GlandLayerMeta.from_metadata(old)
    assert meta.reviewed == () and meta.store is None and meta.source_geojson == "/a.geojson"
    back = meta.to_metadata()
    assert back["someday"] == 3 and back["source_geojson"] == "/a.geojson" and back["reviewed"] == []


def test_the_state_is_frozen_and_changes_are_written_back():
    metadata = {lm.KEY: dict(SAVED)}
    meta = lm.read(metadata)
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.kind = "edit"  # type: ignore[misc]
    lm.write(metadata, meta.reviewed_by_commit({"region": [0, 0, 8, 8]}))
    assert len(lm.read(metadata).reviewed) == 2 and len(meta.reviewed) == 1
    lm.set_uncertain_reviewed(metadata, [7])
    assert lm.uncertain_reviewed(metadata) == (7,) and metadata[lm.KEY]["uncertain_reviewed"] == [7]


def test_a_layer_the_plugin_did_not_make_keeps_next_uncertain_beside_no_gland_state():
    metadata: dict = {}
    assert lm.read(metadata) is None and lm.uncertain_reviewed(metadata) == ()
    lm.set_uncertain_reviewed(metadata, [3, 1])
    assert lm.uncertain_reviewed(metadata) == (3, 1) and lm.KEY not in metadata


def test_make_meta_is_the_types_json_form_and_kinds_are_checked():
    d = lm.make_meta(kind="store", slide_path=None, slide_name="s", slide_mpp=None, slide_shape=(40, 30),
                     label_scale0=2.0, label_translate0=(0.5, 0.5), model_mpp=1.0, store="/x.zarr")
    meta = lm.GlandLayerMeta.from_metadata(d)
    assert meta.labels_mpp == 1.0 and meta.store == "/x.zarr" and meta.placement.corner == (0.0, 0.0)
    with pytest.raises(ValueError, match="unknown gland layer kind"):
        lm.GlandLayerMeta(kind="nope", slide_name="s", slide_shape=(1, 1), placement=GridPlacement(1.0))


def test_the_writers_place_a_gland_layer_from_its_state_and_others_from_the_world():
    from napari_glandseg._writer import placement_from_attributes

    place = placement_from_attributes({"metadata": {lm.KEY: SAVED}})
    assert place.scale == 2.5 and place.offset == (100.0, 200.0) and place.mpp == pytest.approx(1.25)
    # a foreign layer in µm over a 0.5 µm/px slide: 2 µm per label px = 4 level-0 px
    other = placement_from_attributes({"metadata": {"slide_mpp": 0.5}, "scale": (2.0, 2.0), "translate": (10.0, 20.0)})
    assert other.scale == 4.0 and other.mpp == 2.0
    assert other.offset == pytest.approx((20.0 - 1.5, 40.0 - 1.5))
