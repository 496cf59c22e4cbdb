"""Glands as QuPath-compatible GeoJSON: label image → features → label image, exactly.

Coordinates are level-0 slide pixels in GeoJSON order ``[x, y]`` with the pixel-CORNER
convention (see :mod:`napari_glandseg.labels.polygons`, which traces and rasterises).
``properties`` follow QuPath: ``objectType``, ``classification`` {name, color}, ``name``,
``measurements`` {name: number}; ``properties.label`` keeps the gland's label id.
"""

from __future__ import annotations

import json
import math
import os
import uuid
import warnings
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg._atomic import atomic_path, json_default
from napari_glandseg.errors import GlandsegError
from napari_glandseg.labels._objects import check_labels, gland_objects
from napari_glandseg.labels.polygons import PolygonCoords, Ring, fill_polygon, mask_to_polygons

OBJECT_TYPES = ("annotation", "detection")
DEFAULT_COLOR = (200, 0, 120)
POLYGON_TYPES = ("Polygon", "MultiPolygon")
GEOMETRY_TYPES = (
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
)



# --------------------------------------------------------------------------- labels → GeoJSON


def labels_to_features(
    labels: np.ndarray,
    *,
    scale: float = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
    object_type: str = "annotation",
    measurements: list[dict] | None = None,
    classification: str | None = "Gland",
    color: tuple[int, int, int] = DEFAULT_COLOR,
    clip_to: tuple[float, float] | None = None,
) -> dict:
    """A GeoJSON FeatureCollection with one QuPath object per gland (label > 0), in label order.

    ``scale`` is slide pixels per label pixel and ``offset`` the (y, x) slide position of the
    label grid's top-left corner. ``object_type`` is QuPath's "annotation" or "detection".
    ``measurements`` are rows with a ``"label"`` key (as :func:`measure.measure_glands` returns);
    each feature gets its row's finite numbers as ``properties.measurements``.
    ``clip_to`` (height, width) clips coordinates to the slide: the last label pixels of a grid
    that does not divide the slide reach up to one label pixel past its edge.
    """
    labels = check_labels(labels)
    scale = _check_scale(scale)
    oy, ox = (float(v) for v in offset)
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"object_type must be one of {OBJECT_TYPES}, got {object_type!r}")
    color = _check_color(color)
    by_label = _measurements_by_label(measurements)
    features = []
    for label, box in gland_objects(labels):
        mask = labels[box] == label
        polygons = mask_to_polygons(mask, scale=scale, offset=(oy + box[0].start * scale, ox + box[1].start * scale))
        if clip_to is not None:
            polygons = _clip(polygons, clip_to)
        properties = _feature_properties(label, object_type, classification, color, by_label.get(label))
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid4()),
                "geometry": _geometry(polygons),
                "properties": properties,
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _geometry(polygons: list[PolygonCoords]) -> dict:
    """A Polygon for one part, a MultiPolygon for several."""
    if len(polygons) == 1:
        return {"type": "Polygon", "coordinates": polygons[0]}
    return {"type": "MultiPolygon", "coordinates": polygons}


def _feature_properties(
    label: int, object_type: str, classification: str | None, color: list[int], row: dict | None
) -> dict:
    """QuPath's feature properties: objectType, classification, name, plus our label and measurements."""
    properties: dict[str, Any] = {"objectType": object_type}
    if classification is not None:
        properties["classification"] = {"name": str(classification), "color": color}
    properties["name"] = f"Gland {label}"
    properties["label"] = label
    if row is not None:
        properties["measurements"] = {
            str(key): _plain_number(value)
            for key, value in row.items()
            if key != "label" and _is_number(value) and math.isfinite(value)
        }
    return properties


def _measurements_by_label(rows: list[dict] | None) -> dict[int, dict]:
    """Index measurement rows by their integer ``label``."""
    if rows is None:
        return {}
    by_label = {}
    for row in rows:
        if "label" not in row:
            raise ValueError("every measurement row needs a 'label' key")
        by_label[int(row["label"])] = row
    return by_label


# --------------------------------------------------------------------------- files


def _clip(polygons: list[PolygonCoords], clip_to: tuple[float, float]) -> list[PolygonCoords]:
    """Clamp coordinates to [0, width] × [0, height] (moves only edges lying past the bound)."""
    h, w = (float(v) for v in clip_to)
    return [
        [[[min(max(x, 0.0), w), min(max(y, 0.0), h)] for x, y in ring] for ring in polygon] for polygon in polygons
    ]


def write_geojson(path: str | os.PathLike, fc: dict) -> Path:
    """Write a FeatureCollection to ``path`` atomically (parent folders are created)."""
    path = Path(path)
    text = json.dumps(fc, default=json_default, allow_nan=False)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
    return path


def read_geojson(path: str | os.PathLike) -> dict:
    """Read glands from a GeoJSON file as a FeatureCollection dict.

    Accepts a FeatureCollection, one Feature, a list of Features (QuPath writes each of these)
    or a bare geometry. Features whose geometry is not a (Multi)Polygon are skipped with a
    warning; a GeometryCollection keeps its polygon members. Raises :class:`GlandsegError`
    naming the file for a missing file, bad JSON, non-GeoJSON content or malformed polygons.
    """
    path = Path(path)
    data = _load_json(path)
    raw = _raw_features(path, data)
    features = []
    for index, feature in enumerate(raw):
        feature = _normalise_feature(path, index, feature)
        if feature is not None:
            features.append(feature)
    return {"type": "FeatureCollection", "features": features}


def _load_json(path: Path) -> Any:
    """Parse a JSON file; every failure becomes a GlandsegError that names the file."""
    if not path.is_file():
        problem = "is a folder, not a GeoJSON file" if path.is_dir() else "file not found"
        raise GlandsegError(f"{path}: {problem}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise GlandsegError(f"{path}: not a GeoJSON text file (not UTF-8 at byte {e.start})") from e
    except OSError as e:
        raise GlandsegError(f"{path}: cannot be read ({e.strerror or e})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise GlandsegError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    except RecursionError:
        raise GlandsegError(f"{path}: not GeoJSON: its lists or objects are nested too deeply to read") from None


def _raw_features(path: Path, data: Any) -> list:
    """The list of feature-like items in parsed GeoJSON of any accepted top-level form."""
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise GlandsegError(f"{path}: not GeoJSON (the top level is a {type(data).__name__}, not an object)")
    kind = data.get("type")
    if kind is None:
        raise GlandsegError(f"{path}: not GeoJSON (no 'type' at the top level)")
    if kind == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise GlandsegError(f"{path}: FeatureCollection without a 'features' list")
        return features
    if kind == "Feature":
        return [data]
    if kind in GEOMETRY_TYPES:
        return [{"type": "Feature", "geometry": data, "properties": {}}]
    raise GlandsegError(f"{path}: not GeoJSON (unknown type {kind!r})")


def _normalise_feature(path: Path, index: int, feature: Any) -> dict | None:
    """A checked copy of one feature, or None (with a warning) when it holds no polygon."""
    where = f"{path}: feature {index}"
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        found = feature.get("type") if isinstance(feature, dict) else type(feature).__name__
        raise GlandsegError(f"{where} is not a GeoJSON Feature (found {found!r})")
    properties = feature.get("properties") or {}
    if not isinstance(properties, dict):
        raise GlandsegError(f"{where}: 'properties' is not an object")
    geometry = _polygon_geometry(where, feature.get("geometry"))
    if geometry is None:
        return None
    out: dict[str, Any] = {"type": "Feature"}
    if "id" in feature:
        out["id"] = feature["id"]
    out.update(geometry=geometry, properties=properties)
    return out


def _polygon_geometry(where: str, geometry: Any) -> dict | None:
    """The (Multi)Polygon of a feature, checked; None with a warning for anything else."""
    if geometry is None:
        warnings.warn(f"{where} has no geometry; skipped", UserWarning, stacklevel=4)
        return None
    if not isinstance(geometry, dict):
        raise GlandsegError(f"{where}: geometry is not an object")
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        return _collection_polygons(where, geometry)
    if kind not in POLYGON_TYPES:
        warnings.warn(f"{where} is a {kind}, not a (Multi)Polygon gland; skipped", UserWarning, stacklevel=4)
        return None
    polygons = _check_polygons(where, kind, geometry.get("coordinates"))
    if not polygons:
        warnings.warn(f"{where} is an empty {kind}; skipped", UserWarning, stacklevel=4)
        return None
    return _geometry(polygons)


def _collection_polygons(where: str, geometry: dict) -> dict | None:
    """The polygon members of a GeometryCollection merged into one (Multi)Polygon."""
    members = geometry.get("geometries")
    if not isinstance(members, list):
        raise GlandsegError(f"{where}: GeometryCollection without a 'geometries' list")
    polygons: list[PolygonCoords] = []
    for member in members:
        kind = member.get("type") if isinstance(member, dict) else None
        if kind in POLYGON_TYPES:
            polygons.extend(_check_polygons(where, kind, member.get("coordinates")))
    if not polygons:
        warnings.warn(f"{where} is a GeometryCollection without polygons; skipped", UserWarning, stacklevel=5)
        return None
    return _geometry(polygons)


def _check_polygons(where: str, kind: str, coordinates: Any) -> list[PolygonCoords]:
    """Validate (Multi)Polygon coordinates; returns a list of polygons (lists of closed rings)."""
    if not isinstance(coordinates, list):
        raise GlandsegError(f"{where}: {kind} 'coordinates' is not a list")
    polygons = [coordinates] if kind == "Polygon" else coordinates
    checked = []
    for p, polygon in enumerate(polygons):
        if not isinstance(polygon, list):
            raise GlandsegError(f"{where}: polygon {p} of the {kind} is not a list of rings")
        if polygon:
            checked.append([_check_ring(f"{where}: ring {r} of polygon {p}", ring) for r, ring in enumerate(polygon)])
    return checked


def _check_ring(where: str, ring: Any) -> Ring:
    """A ring of at least 4 numeric [x, y] positions; an unclosed ring is closed."""
    if not isinstance(ring, list) or len(ring) < 4:
        count = len(ring) if isinstance(ring, list) else "no"
        raise GlandsegError(f"{where} has {count} positions; a ring needs at least 4")
    for position in ring:
        if not (
            isinstance(position, list)
            and len(position) >= 2
            and all(_is_number(v) and math.isfinite(v) for v in position[:2])
        ):
            raise GlandsegError(f"{where}: position {position!r} is not a pair of finite numbers")
    if ring[0][:2] != ring[-1][:2]:
        ring = [*ring, ring[0]]
    return ring


# --------------------------------------------------------------------------- GeoJSON → labels


def features_to_labels(
    fc: dict,
    shape: tuple[int, int],
    *,
    scale: float = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Rasterise the (Multi)Polygon features of a FeatureCollection into an int32 label image.

    Label pixel (r, c) is inside a polygon when its centre, at slide position
    ``offset + ((r, c) + 0.5) * scale``, is inside (even-odd over the rings: holes stay 0).
    Feature k (1-based) gets ``properties.label`` when that is a positive integer used by no
    other feature, else k (or, if k is some other feature's label, the next free number).
    Later features overwrite earlier ones; parts outside ``shape`` are clipped.
    """
    height, width = (int(n) for n in shape)
    scale = _check_scale(scale)
    oy, ox = (float(v) for v in offset)
    out = np.zeros((height, width), dtype=np.int32)
    features = fc.get("features", []) if isinstance(fc, dict) else []
    ids = _feature_ids(features)
    for feature, label in zip(features, ids, strict=True):
        for polygon in feature_polygons(feature):
            rings = [(np.asarray(ring, dtype=np.float64)[:, :2] - (ox, oy)) / scale for ring in polygon]
            fill_polygon(out, rings, label)
    return out


def feature_polygons(feature: Any) -> list[PolygonCoords]:
    """The polygons of a feature's (Multi)Polygon geometry; [] for anything else."""
    geometry = feature.get("geometry") if isinstance(feature, dict) else None
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    if kind == "Polygon":
        return [geometry["coordinates"]] if geometry["coordinates"] else []
    if kind == "MultiPolygon":
        return [p for p in geometry["coordinates"] if p]
    if kind == "GeometryCollection":
        return [p for member in geometry.get("geometries", []) for p in feature_polygons({"geometry": member})]
    return []


def _feature_ids(features: list) -> list[int]:
    """The label of each feature: its unique positive ``properties.label``, else its 1-based index."""
    wanted = []
    for feature in features:
        props = feature.get("properties") if isinstance(feature, dict) else None
        value = props.get("label") if isinstance(props, dict) else None
        ok = _is_number(value) and float(value).is_integer() and 0 < value <= np.iinfo(np.int32).max
        wanted.append(int(value) if ok else None)
    counts: dict[int, int] = {}
    for value in wanted:
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
    taken = {value for value, n in counts.items() if n == 1}
    ids, used = [], set(taken)
    next_free = max(taken, default=0) + 1
    for k, value in enumerate(wanted, start=1):
        if value is not None and value in taken:
            ids.append(value)
        elif k not in used:
            ids.append(k)
            used.add(k)
        else:
            while next_free in used:
                next_free += 1
            ids.append(next_free)
            used.add(next_free)
    return ids


# --------------------------------------------------------------------------- small checks


def _check_scale(scale: float) -> float:
    """``scale`` as a float > 0."""
    if not (_is_number(scale) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    return float(scale)


def _check_color(color: tuple[int, int, int]) -> list[int]:
    """An RGB triple of ints in 0..255, as a list (QuPath's classification colour)."""
    values = list(color)
    if len(values) != 3 or not all(_is_number(v) and float(v).is_integer() and 0 <= v <= 255 for v in values):
        raise ValueError(f"color must be three integers 0..255, got {color!r}")
    return [int(v) for v in values]


def _is_number(value: Any) -> bool:
    """True for ints and floats (numpy ones too), False for bool and everything else."""
    return isinstance(value, Real) and not isinstance(value, bool | np.bool_)


def _plain_number(value: Real) -> int | float:
    """A numpy or Python number as a plain int / float."""
    return int(value) if isinstance(value, int | np.integer) else float(value)


