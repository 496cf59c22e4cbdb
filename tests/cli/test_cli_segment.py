"""``glandseg segment`` end to end on a real SVS with a tiny untrained model."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from napari_glandseg.cli import main

COLUMNS = {"label", "area_um2", "perimeter_um", "eccentricity", "solidity", "centroid_y", "centroid_x"}


def _check_geojson(path, bounds_xy):
    fc = json.loads(path.read_text())
    assert fc["type"] == "FeatureCollection"
    x0, y0, x1, y1 = bounds_xy
    for feat in fc["features"]:
        assert feat["type"] == "Feature"
        geom = feat["geometry"]
        assert geom["type"] in ("Polygon", "MultiPolygon")
        polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
        for poly in polys:
            for ring in poly:
                assert ring[0] == ring[-1] and len(ring) >= 4  # closed rings (GeoJSON / QuPath)
                xy = np.asarray(ring)
                assert (xy[:, 0] >= x0 - 1).all() and (xy[:, 0] <= x1 + 1).all()
                assert (xy[:, 1] >= y0 - 1).all() and (xy[:, 1] <= y1 + 1).all()
        assert feat["properties"].get("objectType", "annotation") == "annotation"
    return fc


def _check_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and COLUMNS <= set(rows[0])
    labels = [int(r["label"]) for r in rows]
    assert len(set(labels)) == len(labels)
    return rows


def test_segment_whole_slide(cmu_svs, tiny_checkpoint, tmp_path, capsys):
    from napari_glandseg.labels.store import LabelStore

    rc = main(["segment", str(cmu_svs), "--out", str(tmp_path), "--model", str(tiny_checkpoint),
               "--device", "cpu", "--chunk-px", "512"])
    assert rc == 0
    out = tmp_path / "cmu-1-small-region"
    assert "glands ->" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "glandseg_tiny" and summary["model_mpp"] == 1.24
    assert summary["downsample"] == pytest.approx(1.24 / 0.499)
    store = LabelStore.open(out / "labels.ome.zarr")
    assert store.levels[0].shape == (int(np.ceil(2967 / summary["downsample"])), int(np.ceil(2220 / summary["downsample"])))
    assert len(store.levels) >= 2
    rows = _check_csv(out / "measurements.csv")
    fc = _check_geojson(out / "glands.geojson", (0, 0, 2220, 2967))
    assert summary["glands"] == len(rows) == len(fc["features"]) > 0
    lab = np.asarray(store.levels[0][:])
    assert set(int(r["label"]) for r in rows) == set(np.unique(lab[lab > 0]).tolist())
    kept = store.read_confidence()
    assert {int(r["label"]): float(r["confidence"]) for r in rows} == pytest.approx({k: v[0] for k, v in kept.items()}, abs=1e-6)
    assert all("confidence" in f["properties"]["measurements"] for f in fc["features"]), "a QuPath measurement too"
    # a second run resumes: nothing to do, same result
    assert main(["segment", str(cmu_svs), "--out", str(tmp_path), "--model", str(tiny_checkpoint),
                 "--device", "cpu", "--chunk-px", "512", "--no-geojson"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["run"]["sessions"][-1]["chunks_run"] == 0 and again["glands"] == summary["glands"]
    assert again["run"]["chunks_run"] == again["run"]["chunks"] and len(again["run"]["sessions"]) == 2


def test_segment_region(cmu_svs, tiny_checkpoint, tmp_path):
    rc = main(["segment", str(cmu_svs), "--out", str(tmp_path), "--model", str(tiny_checkpoint),
               "--device", "cpu", "--region", "500,700,800,600"])
    assert rc == 0
    out = tmp_path / "cmu-1-small-region"
    summary = json.loads((out / "summary.json").read_text())
    y, x, h, w = summary["region"]["bbox0"]
    assert y <= 700 < y + h and x <= 500 < x + w and h >= 600 and w >= 800
    rows = _check_csv(out / "measurements.csv")
    _check_geojson(out / "glands.geojson", (x, y, x + w, y + h))
    assert (out / "labels.ome.zarr").exists()
    assert rows and all(0 <= float(r["confidence"]) <= 1 for r in rows), "a region's glands have a confidence too"


@pytest.mark.parametrize("argv, message", [
    (["segment", "/no/such/slide.svs", "--out", "{tmp}"], "no such file"),
    (["segment", "{cmu}", "--out", "{tmp}", "--region", "1,2,3"], "X,Y,W,H"),
    (["segment", "{cmu}", "--out", "{tmp}", "--model", "/no/model.pt"], "pickle"),
])
def test_bad_inputs_exit_2_with_a_message(cmu_svs, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, cmu=cmu_svs) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
