"""npe2 writers for gland labels layers: QuPath GeoJSON, OME-TIFF, OME-Zarr, measurements CSV.

Each takes napari's single-layer writer arguments ``(path, data, attributes)`` and returns the
paths written. The labels/ functions do the (atomic) writing; this module only works out where
the labels sit on the slide: from ``metadata["glandseg"]`` when the plugin made the layer,
else from the layer's world ``scale``/``translate`` (µm when the slide's µm/px is known).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_glandseg.labels.layer_meta import read
from napari_glandseg.slide.placement import GridPlacement


@dataclass(frozen=True)
class Placement:
    """Labels on the slide: ``grid`` (see :class:`GridPlacement`) and µm per label pixel, when known."""

    grid: GridPlacement
    mpp: float | None

    @property
    def scale(self) -> float:
        """Level-0 px per label px."""
        return self.grid.scale

    @property
    def offset(self) -> tuple[float, float]:
        """Level-0 corner of label pixel (0, 0): pixel ``i`` covers ``[offset + i*scale, offset + (i+1)*scale)``
        (the corner convention GeoJSON/QuPath want)."""
        return self.grid.corner


def placement_from_attributes(attributes: dict[str, Any]) -> Placement:
    """Where a labels layer sits in level-0 slide px: its gland state when the plugin made it,
    else its world ``scale``/``translate`` (µm when the slide's µm/px is known)."""
    metadata = attributes.get("metadata") or {}
    meta = read(metadata)
    if meta is not None:
        return Placement(meta.placement, meta.labels_mpp)
    scale = np.asarray(attributes.get("scale", (1.0, 1.0)), float)[-2:]
    translate = np.asarray(attributes.get("translate", (0.0, 0.0)), float)[-2:]
    slide_mpp = metadata.get("slide_mpp") or (metadata.get("glandseg_slide") or {}).get("mpp")
    if slide_mpp:
        # World units are µm: the slide image layer has µm/px as its scale.
        grid = GridPlacement.from_layer(scale, translate, (float(slide_mpp),) * 2)
        return Placement(grid, float(scale[0]))
    mpp = metadata.get("mpp")
    return Placement(GridPlacement.from_layer(scale, translate), None if mpp is None else float(mpp))


def labels_array(data: Any) -> np.ndarray:
    """Level 0 of (possibly multiscale) labels data as an integer numpy array."""
    if isinstance(data, (list, tuple)):
        data = data[0]
    arr = np.asarray(data)
    if arr.ndim != 2:
        arr = np.squeeze(arr)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"expected 2-D integer labels (Y×X), got shape {arr.shape} dtype {arr.dtype}")
    return arr


def _need_mpp(place: Placement, path: str) -> float:
    if place.mpp is None:
        raise ValueError(f"{path}: the labels' µm/px is unknown (set the slide's µm/px in Segment glands)")
    return place.mpp


def measurement_rows(labels: np.ndarray, place: Placement, attributes: dict[str, Any] | None = None) -> list[dict]:
    """Per-gland measurements with centroids in level-0 slide px, and each gland's confidence
    where the layer has one."""
    from napari_glandseg.labels.measure import measure_glands
    from napari_glandseg.labels.uncertain import with_confidence

    mpp = place.mpp if place.mpp is not None else 1.0
    rows = measure_glands(labels, mpp, scale=place.scale, offset=place.offset)
    return with_confidence(rows, layer_confidence(attributes or {}))


def layer_confidence(attributes: dict[str, Any]) -> dict[int, float]:
    """{label: confidence} of a layer: its features table, else the whole-slide store it shows."""
    from napari_glandseg.labels.uncertain import confidence_by_label

    found = confidence_by_label(attributes.get("features"))
    meta = read(attributes.get("metadata") or {})
    if found or meta is None or meta.kind != "store" or not meta.store:
        return found
    from napari_glandseg.labels.store import LabelStore

    return {k: v[0] for k, v in LabelStore.open(meta.store, read_only=True).read_confidence().items()}


def write_geojson(path: str, data: Any, attributes: dict[str, Any], *, object_type: str = "annotation") -> list[str]:
    """QuPath GeoJSON polygons in level-0 px (with per-gland measurements as properties)."""
    from napari_glandseg.labels import geojson

    labels = labels_array(data)
    place = placement_from_attributes(attributes)
    rows = measurement_rows(labels, place, attributes) if place.mpp is not None else None
    fc = geojson.labels_to_features(
        labels, scale=place.scale, offset=place.offset, object_type=object_type, measurements=rows
    )
    geojson.write_geojson(path, fc)
    return [os.fspath(path)]


def write_ome_tiff(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """A pyramidal OME-TIFF label mask at the labels' µm/px."""
    from napari_glandseg.labels.export import write_ome_tiff_mask

    place = placement_from_attributes(attributes)
    write_ome_tiff_mask(path, labels_array(data), _need_mpp(place, path))
    return [os.fspath(path)]


def write_ome_zarr(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """OME-Zarr labels at the labels' µm/px."""
    from napari_glandseg.labels.export import write_ome_zarr_labels

    place = placement_from_attributes(attributes)
    write_ome_zarr_labels(path, labels_array(data), _need_mpp(place, path))
    return [os.fspath(path)]


def write_measurements(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """One CSV row per gland: area (µm²), perimeter (µm), shape, centroid (level-0 px)."""
    from napari_glandseg.labels.export import write_measurements_csv

    place = placement_from_attributes(attributes)
    _need_mpp(place, path)
    write_measurements_csv(path, measurement_rows(labels_array(data), place, attributes))
    return [os.fspath(path)]
