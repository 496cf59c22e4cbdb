"""Least certain first: the order, the reviewed set, store boxes, and the confidence column."""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_glandseg._writer import write_measurements
from napari_glandseg.labels import layer_meta as lm
from napari_glandseg.labels.store import LabelStore
from napari_glandseg.labels.uncertain import (
    confidence_by_label,
    layer_candidates,
    next_uncertain,
    store_candidates,
    with_confidence,
)


def test_the_least_confident_unreviewed_gland_comes_next():
    labels = np.zeros((50, 50), np.int32)
    labels[2:6, 2:6], labels[10:20, 30:40], labels[40:45, 5:9] = 1, 2, 3
    cands = layer_candidates(labels, {1: 0.9, 2: 0.2, 3: 0.5})
    reviewed: list[int] = []
    order = []
    while (pick := next_uncertain(cands, reviewed)) is not None:
        order.append(pick.label)
        reviewed.append(pick.label)
    assert order == [2, 3, 1]
    assert next(c for c in cands if c.label == 2).box == (10, 30, 20, 40)
    assert layer_candidates(labels, {3: 0.1})[0].label == 3, "glands without a confidence are not candidates"


def test_store_boxes_are_shifted_into_an_edited_region_and_others_left_out():
    kept = {5: [0.3, 100, 200, 120, 230], 6: [0.1, 900, 900, 950, 950]}
    [c] = store_candidates(kept, region=(90, 190, 100, 100))
    assert c.label == 5 and c.box == (10, 10, 30, 40) and c.centre == (19.5, 24.5)
    assert {c.label for c in store_candidates(kept)} == {5, 6}


def test_a_store_keeps_confidences_and_boxes(tmp_path):
    store = LabelStore.create(tmp_path / "s.zarr", (64, 64), chunk_px=32, mpp=1.0)
    store.write_confidence({3: [0.25, 1, 2, 5, 6]})
    assert LabelStore.open(tmp_path / "s.zarr", read_only=True).read_confidence() == {3: [0.25, 1, 2, 5, 6]}
    assert LabelStore.create(tmp_path / "t.zarr", (8, 8)).read_confidence() == {}


def test_the_confidence_column_reaches_the_csv_and_geojson_of_a_layer(tmp_path):
    labels = np.zeros((40, 40), np.int32)
    labels[5:15, 5:15], labels[20:30, 20:35] = 1, 2
    features = pd.DataFrame({"index": [1, 2], "confidence": [0.8, 0.35]})
    assert confidence_by_label(features) == {1: 0.8, 2: 0.35}
    assert [r.get("confidence") for r in with_confidence([{"label": 1}, {"label": 7}], {1: 0.8})] == [0.8, None]
    meta = lm.make_meta(kind="view", slide_path=None, slide_name="s", slide_mpp=0.5, slide_shape=(80, 80),
                        label_scale0=2.0, label_translate0=(0.5, 0.5))
    attrs = {"metadata": {lm.KEY: meta}, "features": features}
    [csv_path] = write_measurements(str(tmp_path / "m.csv"), labels, attrs)
    table = pd.read_csv(csv_path)
    assert dict(zip(table["label"], table["confidence"], strict=True)) == {1: 0.8, 2: 0.35}
    from napari_glandseg._writer import write_geojson
    from napari_glandseg.labels.geojson import read_geojson

    [gj] = write_geojson(str(tmp_path / "g.geojson"), labels, attrs)
    got = {f["properties"]["label"]: f["properties"]["measurements"]["confidence"] for f in read_geojson(gj)["features"]}
    assert got == {1: 0.8, 2: 0.35}


def test_a_correction_keeps_the_stores_confidences_true(tmp_path):
    store = LabelStore.create(tmp_path / "s.zarr", (64, 64), chunk_px=32, mpp=1.0)
    store.levels[0][2:6, 2:6] = 1
    store.levels[0][20:30, 20:30] = 2
    store.levels[0][40:50, 0:64] = 3  # reaches beyond the corrected region
    store.write_confidence({1: [0.5, 2, 2, 6, 6], 2: [0.4, 20, 20, 30, 30], 3: [0.3, 40, 0, 50, 64]})
    fix = np.asarray(store.read_region(0, 0, 50, 40)).copy()
    fix[fix == 1] = 0  # gland 1 deleted
    fix[30:34, 20:30] = 2  # gland 2 grown
    fix[fix == 3] = 0  # gland 3 cut off inside the region: it goes on beyond
    store.write_region(0, 0, fix)
    kept = store.read_confidence()
    assert 1 not in kept, "a deleted gland is not a candidate any more"
    assert kept[2] == [0.4, 20, 20, 34, 30] and kept[3] == [0.3, 40, 0, 50, 64]
