"""QuPath GeoJSON of gland labels: exact pixel-edge polygons, valid geometry, exact round trip."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_glandseg.errors import GlandsegError
from napari_glandseg.labels.geojson import (
    features_to_labels,
    labels_to_features,
    mask_to_polygons,
    read_geojson,
    write_geojson,
)
from napari_glandseg.labels.measure import measure_glands
from napari_glandseg.labels.metrics import to_instances


def synthetic_labels() -> np.ndarray:
    """Glands with the hard cases: holes, touching glands, image border, 1-px parts, diagonals."""
    lab = np.zeros((40, 48), dtype=np.int32)
    lab[2:14, 2:14] = 1  # a gland with two holes, one of them touching the other diagonally
    lab[5:7, 5:7] = 0
    lab[7:9, 7:9] = 0
    lab[4:10, 14:20] = 2  # touches gland 1 along an edge
    lab[0:6, 30:48] = 3  # touches the top and right borders
    lab[20, 2:20] = 4  # one pixel wide line
    lab[21:26, 19] = 4  # ... with a one-pixel-wide arm
    lab[30, 30] = 5  # a single pixel
    lab[31, 31] = 5  # ... and a second part touching it only at a corner: MultiPolygon
    lab[34:40, 0:6] = 6  # bottom-left corner; its notch reaches the outside through a diagonal
    lab[36, 3] = 0
    lab[37, 4] = 0
    lab[37, 3] = 0
    lab[35, 4] = 0
    lab[35, 5] = 0
    lab[20:29, 30:39] = 7  # a ring with an island of gland 8 in its hole, touching at a corner
    lab[22:27, 32:37] = 0
    lab[22, 32] = 7
    lab[23:26, 33:36] = 8
    lab[12:18, 40:46] = 9  # a checkerboard patch: many corner-only contacts
    lab[12:18, 40:46][np.indices((6, 6)).sum(0) % 2 == 1] = 0
    lab[30:33, 10:13] = 10000  # a large label id
    return lab


@pytest.fixture(scope="module")
def glas_labels(shared_data: Path) -> np.ndarray:
    """Instances of a real GlaS training mask (connected components of the binary mask)."""
    mask = np.array(Image.open(shared_data / "glas" / "train" / "masks" / "train_1.png"))
    labels = to_instances(mask)
    assert labels.max() > 5
    return labels


def polygons_of(feature: dict) -> list:
    """The list of polygons (lists of rings) of a Polygon or MultiPolygon feature."""
    geometry = feature["geometry"]
    return [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]


def signed_area(ring: list) -> float:
    """Shoelace area of a closed [x, y] ring; > 0 counter-clockwise in x-right / y-up terms."""
    xy = np.asarray(ring, dtype=np.float64)
    return 0.5 * float(np.sum(xy[:-1, 0] * xy[1:, 1] - xy[1:, 0] * xy[:-1, 1]))


def assert_pixel_edge_polygon(polygon: list, scale: float, offset: tuple[float, float]) -> None:
    """Closed simple rectilinear rings on the pixel grid, no collinear vertices, CCW outside, CW holes."""
    for index, ring in enumerate(polygon):
        xy = np.asarray(ring, dtype=np.float64)
        assert len(ring) >= 5 and ring[0] == ring[-1]
        assert len({tuple(p) for p in ring[:-1]}) == len(ring) - 1, "a ring visits a vertex twice"
        grid = (xy - (offset[1], offset[0])) / scale
        np.testing.assert_allclose(grid, np.round(grid), atol=1e-9)
        step = np.diff(xy, axis=0)
        assert np.all((step[:, 0] == 0) != (step[:, 1] == 0)), "edges must be horizontal or vertical"
        turns = np.vstack([step, step[:1]])
        assert np.all((turns[1:, 0] == 0) != (turns[:-1, 0] == 0)), "collinear vertex kept"
        assert (signed_area(ring) > 0) == (index == 0)
    unit_edges = [edge for ring in polygon for edge in unit_grid_edges(ring, scale, offset)]
    assert len(unit_edges) == len(set(unit_edges)), "rings overlap along an edge"


def unit_grid_edges(ring: list, scale: float, offset: tuple[float, float]) -> list[tuple]:
    """The pixel-long, undirected grid edges a rectilinear ring runs along."""
    grid = np.round((np.asarray(ring, dtype=np.float64) - (offset[1], offset[0])) / scale).astype(int)
    edges = []
    for (x0, y0), (x1, y1) in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        steps = max(abs(x1 - x0), abs(y1 - y0))
        dx, dy = (x1 - x0) // steps, (y1 - y0) // steps
        for k in range(steps):
            a, b = (x0 + k * dx, y0 + k * dy), (x0 + (k + 1) * dx, y0 + (k + 1) * dy)
            edges.append((min(a, b), max(a, b)))
    return edges


def test_pixel_corner_coordinates_with_scale_and_offset():
    lab = np.zeros((5, 6), dtype=np.int32)
    lab[2, 3] = 4
    fc = labels_to_features(lab, scale=2, offset=(10, 30))
    (feature,) = fc["features"]
    ring = feature["geometry"]["coordinates"][0]
    assert feature["geometry"]["type"] == "Polygon"
    # label pixel (row 2, col 3) is x in [30 + 3*2, 30 + 4*2], y in [10 + 2*2, 10 + 3*2]
    assert sorted(map(tuple, ring[:-1])) == [(36, 14), (36, 16), (38, 14), (38, 16)]
    assert signed_area(ring) == 4


@pytest.mark.parametrize(("scale", "offset"), [(1.0, (0.0, 0.0)), (2.0, (10.0, 30.0)), (0.5, (-3.25, 7.5))])
def test_round_trip_synthetic_is_exact(scale, offset):
    lab = synthetic_labels()
    fc = labels_to_features(lab, scale=scale, offset=offset)
    assert [f["properties"]["label"] for f in fc["features"]] == sorted(set(np.unique(lab)) - {0})
    back = features_to_labels(fc, lab.shape, scale=scale, offset=offset)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, lab)
    for feature in fc["features"]:
        area = sum(signed_area(ring) for polygon in polygons_of(feature) for ring in polygon)
        assert area == pytest.approx((lab == feature["properties"]["label"]).sum() * scale**2)
        for polygon in polygons_of(feature):
            assert_pixel_edge_polygon(polygon, scale, offset)


def test_round_trip_real_glas_mask_is_exact(glas_labels):
    fc = labels_to_features(glas_labels)
    assert len(fc["features"]) == len(np.unique(glas_labels)) - 1
    np.testing.assert_array_equal(features_to_labels(fc, glas_labels.shape), glas_labels)
    for feature in fc["features"]:
        for polygon in polygons_of(feature):
            assert_pixel_edge_polygon(polygon, 1.0, (0.0, 0.0))


def test_round_trip_through_a_file(tmp_path, glas_labels):
    path = tmp_path / "not" / "there" / "glands.geojson"
    fc = labels_to_features(glas_labels, scale=2, offset=(10, 30))
    assert write_geojson(path, fc) == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["glands.geojson"]  # no temporary left
    again = read_geojson(path)
    assert again == json.loads(json.dumps(fc))
    np.testing.assert_array_equal(features_to_labels(again, glas_labels.shape, scale=2, offset=(10, 30)), glas_labels)


def test_polygons_are_valid_for_shapely():
    shapely_geometry = pytest.importorskip("shapely.geometry")
    lab = synthetic_labels()
    for feature in labels_to_features(lab, scale=2, offset=(10, 30))["features"]:
        shape = shapely_geometry.shape(feature["geometry"])
        assert shape.is_valid, feature["properties"]["name"]
        assert shape.area == 4 * (lab == feature["properties"]["label"]).sum()


def test_holes_become_interior_rings():
    lab = synthetic_labels()
    features = {f["properties"]["label"]: f for f in labels_to_features(lab)["features"]}
    (gland1,) = polygons_of(features[1])
    assert len(gland1) == 3  # exterior + two holes touching at a corner
    (gland6,) = polygons_of(features[6])
    assert len(gland6) == 2  # the notch open to the outside only through a diagonal is a hole
    (gland7,) = polygons_of(features[7])
    assert len(gland7) == 2 and features[8]["geometry"]["type"] == "Polygon"


def test_two_part_label_is_a_multipolygon():
    lab = synthetic_labels()
    features = {f["properties"]["label"]: f for f in labels_to_features(lab)["features"]}
    assert features[5]["geometry"]["type"] == "MultiPolygon"
    assert len(features[5]["geometry"]["coordinates"]) == 2
    assert features[9]["geometry"]["type"] == "MultiPolygon"
    assert len(features[9]["geometry"]["coordinates"]) == 18  # checkerboard: parts meet at corners only
    assert features[4]["geometry"]["type"] == "Polygon"


def test_qupath_properties():
    lab = synthetic_labels()
    rows = measure_glands(lab, 0.5)
    fc = labels_to_features(lab, object_type="detection", measurements=rows, color=(10, 20, 30))
    json.dumps(fc, allow_nan=False)  # plain JSON, no numpy values
    assert fc["type"] == "FeatureCollection"
    by_label = {row["label"]: row for row in rows}
    for feature in fc["features"]:
        assert feature["type"] == "Feature"
        uuid.UUID(feature["id"])
        props = feature["properties"]
        label = props["label"]
        assert type(label) is int
        assert props["objectType"] == "detection"
        assert props["classification"] == {"name": "Gland", "color": [10, 20, 30]}
        assert props["name"] == f"Gland {label}"
        expected = {k: v for k, v in by_label[label].items() if k != "label"}
        assert props["measurements"] == expected
    assert len({f["id"] for f in fc["features"]}) == len(fc["features"])


def test_annotation_is_the_default_and_other_object_types_are_refused():
    lab = synthetic_labels()
    feature = labels_to_features(lab)["features"][0]
    assert feature["properties"]["objectType"] == "annotation"
    assert "measurements" not in feature["properties"]
    with pytest.raises(ValueError, match="object_type"):
        labels_to_features(lab, object_type="cell")


def test_empty_labels_give_an_empty_collection():
    fc = labels_to_features(np.zeros((8, 8), dtype=np.uint16))
    assert fc == {"type": "FeatureCollection", "features": []}
    assert mask_to_polygons(np.zeros((3, 3), dtype=bool)) == []
    assert not features_to_labels(fc, (8, 8)).any()


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.int64])
def test_label_dtypes(dtype):
    lab = synthetic_labels()
    fc = labels_to_features(lab.astype(dtype))
    np.testing.assert_array_equal(features_to_labels(fc, lab.shape), lab)


def square(x0: float, y0: float, x1: float, y1: float) -> list:
    """A closed counter-clockwise rectangle ring."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def feature(coordinates: list, kind: str = "Polygon", **properties) -> dict:
    """A GeoJSON Feature."""
    return {"type": "Feature", "geometry": {"type": kind, "coordinates": coordinates}, "properties": properties}


def test_rasterise_uses_pixel_centres_and_clips():
    fc = {
        "type": "FeatureCollection",
        "features": [
            feature([square(1.2, 0.4, 4.7, 2.4)]),  # centres x 1.5..4.5, y 0.5..1.5
            feature([square(-5, 4, 2, 100)]),  # partly outside: clipped
            feature([square(50, 50, 60, 60)]),  # entirely outside: ignored
        ],
    }
    out = features_to_labels(fc, (6, 8))
    expected = np.zeros((6, 8), dtype=np.int32)
    expected[0:2, 1:5] = 1
    expected[4:6, 0:2] = 2
    np.testing.assert_array_equal(out, expected)


def test_rasterise_labels_from_properties_and_overlap_order():
    fc = {
        "type": "FeatureCollection",
        "features": [
            feature([square(0, 0, 4, 4)], label=7),
            feature([square(2, 2, 6, 6)], label=3),  # overlaps and overwrites the first
            feature([square(0, 6, 2, 8)], label=9),  # a duplicate label: index 3, but 3 is taken → 8
            feature([square(4, 6, 6, 8)], label=9),  # the other duplicate: index 4
            feature([square(6, 0, 8, 2)], label="x"),  # not an int: index 5
            feature([square(6, 4, 8, 6)], label=0),  # not positive: index 6
        ],
    }
    out = features_to_labels(fc, (8, 8))
    assert out[0, 0] == 7 and out[2, 2] == 3 and out[5, 5] == 3 and out[1, 3] == 7
    assert out[6, 0] == 8 and out[7, 1] == 8
    assert out[6, 4] == 4
    assert out[0, 6] == 5 and out[4, 6] == 6
    assert set(np.unique(out)) == {0, 3, 4, 5, 6, 7, 8}


def test_rasterise_index_never_reuses_a_label_of_another_feature():
    fc = {
        "type": "FeatureCollection",
        "features": [
            feature([square(0, 0, 2, 2)]),  # index 1, but 1 is the label of the next feature
            feature([square(4, 4, 6, 6)], label=1),
        ],
    }
    out = features_to_labels(fc, (6, 6))
    assert out[5, 5] == 1 and out[0, 0] not in (0, 1)


def test_read_accepts_feature_list_single_feature_and_bare_geometry(tmp_path):
    ring = square(0, 0, 3, 3)
    one = feature([ring], label=2)
    for name, data in [("list.geojson", [one, one]), ("one.geojson", one), ("bare.json", one["geometry"])]:
        path = tmp_path / name
        path.write_text(json.dumps(data))
        fc = read_geojson(path)
        assert fc["type"] == "FeatureCollection"
        assert all(f["geometry"] == one["geometry"] for f in fc["features"])
    assert len(read_geojson(tmp_path / "list.geojson")["features"]) == 2


def test_read_skips_non_polygons_with_a_warning(tmp_path):
    path = tmp_path / "mixed.geojson"
    fc = {
        "type": "FeatureCollection",
        "features": [
            feature([1.0, 2.0], "Point"),
            feature([square(0, 0, 2, 2)], label=4),
            feature([[0, 0], [3, 3]], "LineString"),
            {"type": "Feature", "geometry": None, "properties": {}},
        ],
    }
    path.write_text(json.dumps(fc))
    with pytest.warns(UserWarning) as record:
        out = read_geojson(path)
    messages = [str(w.message) for w in record]
    assert any("Point" in m and "mixed.geojson" in m for m in messages)
    assert any("LineString" in m for m in messages)
    assert [f["properties"]["label"] for f in out["features"]] == [4]


def write(tmp_path: Path, name: str, text: str) -> Path:
    """A file with ``text``."""
    path = tmp_path / name
    path.write_text(text)
    return path


def test_error_missing_file(tmp_path):
    with pytest.raises(GlandsegError, match="nowhere.geojson.*not found"):
        read_geojson(tmp_path / "nowhere.geojson")


def test_error_truncated_json_says_where(tmp_path):
    text = json.dumps(labels_to_features(synthetic_labels()), indent=1)
    path = write(tmp_path, "cut.geojson", text[: len(text) // 2])
    with pytest.raises(GlandsegError, match=r"cut\.geojson.*not valid JSON at line \d+, column \d+"):
        read_geojson(path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"features": []}', "no 'type'"),
        ('{"type": "Topology", "objects": {}}', "unknown type 'Topology'"),
        ("42", "not an object"),
        ('{"type": "FeatureCollection", "features": 3}', "'features' list"),
        ('[{"type": "Polygon", "coordinates": []}]', "feature 0 is not a GeoJSON Feature"),
        ('{"type": "Polygon", "coordinates": ' + "[" * 200_000 + "]" * 200_000 + "}", "nested too deeply"),
    ],
)
def test_error_not_geojson(tmp_path, content, problem):
    path = write(tmp_path, "wrong.geojson", content)
    with pytest.raises(GlandsegError, match="wrong.geojson") as info:
        read_geojson(path)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("ring", "problem"),
    [
        ([[0, 0], [1, 0], [0, 0]], "3 positions"),
        ([[0, 0], [1, "a"], [1, 1], [0, 0]], "not a pair of finite numbers"),
        ([[0, 0], [1], [1, 1], [0, 0]], "not a pair of finite numbers"),
        ("ring", "no positions"),
    ],
)
def test_error_bad_ring_names_the_feature(tmp_path, ring, problem):
    fc = {"type": "FeatureCollection", "features": [feature([square(0, 0, 1, 1)]), feature([ring])]}
    path = write(tmp_path, "bad_ring.geojson", json.dumps(fc))
    with pytest.raises(GlandsegError, match="bad_ring.geojson: feature 1") as info:
        read_geojson(path)
    assert problem in str(info.value)


def test_write_is_atomic_on_failure(tmp_path):
    path = tmp_path / "out.geojson"
    write_geojson(path, labels_to_features(synthetic_labels()))
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_geojson(path, {"type": "FeatureCollection", "features": [float("nan")]})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.geojson"]
