"""The "Export glands" dock widget: training package, QuPath GeoJSON out/in, OME files, CSV."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton
from napari.layers import Image, Labels
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QFileDialog

from napari_glandseg import _writer
from napari_glandseg._widgets._finetune import FinetunePanel
from napari_glandseg._widgets._form import attach_job_panel, folder_edit
from napari_glandseg._widgets._palette import gland_style
from napari_glandseg._widgets._slides import gland_meta, slide_ref
from napari_glandseg._widgets._training import export_reviewed, reviewed_store
from napari_glandseg.labels import layer_meta as lm
from napari_glandseg.labels.geojson import OBJECT_TYPES, features_to_labels, read_geojson
from napari_glandseg.labels.import_grid import import_grid
from napari_glandseg.slide.placement import GridPlacement

if TYPE_CHECKING:
    import napari

#: File name suffix per export kind (the writer functions pick the format).
SUFFIXES = {"geojson": ".geojson", "ome_zarr": ".ome.zarr", "ome_tiff": ".ome.tif", "csv": ".csv"}


def layer_attributes(layer: Labels) -> dict[str, Any]:
    """The npe2 writer ``attributes`` of a layer (what napari's save passes)."""
    return {"name": layer.name, "scale": tuple(layer.scale), "translate": tuple(layer.translate),
            "metadata": layer.metadata}


class ExportWidget(Container):
    """Exports of a gland layer (a magicgui form); writes are atomic (labels/ writes to a temp name).

    The "Glands" combo box lists the viewer's labels layers and follows the active layer.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.glands = ComboBox(name="glands", label="Glands", choices=self._labels_choices,
                               tooltip="The gland labels layer to export (follows the selected layer)")
        self.out_dir = folder_edit("Where exports go")
        self.object_type = ComboBox(name="object_type", label="GeoJSON objects", choices=OBJECT_TYPES,
                                    value="annotation",
                                    tooltip="QuPath object type: annotations are editable, detections are light-weight")
        actions = {
            "training": ("Export for retraining", "Reviewed regions → image tiles + masks + manifest.json at the model's µm/px", self.export_training),
            "geojson": ("Export GeoJSON", "QuPath GeoJSON polygons in slide pixels, with measurements", lambda: self.export("geojson")),
            "import": ("Import GeoJSON…", "QuPath GeoJSON → a labels layer on the slide (on the selected gland layer's grid, if any)", self._import_dialog),
            "ome_zarr": ("OME-Zarr labels", "Labels as OME-Zarr (NGFF) at their µm/px", lambda: self.export("ome_zarr")),
            "ome_tiff": ("OME-TIFF mask", "Pyramidal OME-TIFF label mask", lambda: self.export("ome_tiff")),
            "csv": ("Measurements CSV", "One row per gland: area µm², perimeter µm, shape, centroid", lambda: self.export("csv")),
        }
        self.buttons: dict[str, PushButton] = {}
        for key, (text, tip, slot) in actions.items():
            self.buttons[key] = PushButton(text=text, tooltip=tip)
            self.buttons[key].changed.connect(lambda *_, s=slot: s())
        pairs = list(self.buttons.values())
        rows = [Container(widgets=pairs[i : i + 2], layout="horizontal", labels=False) for i in range(0, len(pairs), 2)]
        for row in rows:
            row.margins = (0, 0, 0, 0)
        self.extend([self.glands, self.out_dir, self.object_type, *rows])
        self.jobs = attach_job_panel(self)
        self.finetune = FinetunePanel(napari_viewer, glands=lambda: self.glands.value)
        self.native.layout().addWidget(self.finetune.native)  # below Export's own progress bar

        layers = napari_viewer.layers
        for ev in (layers.events.inserted, layers.events.removed, layers.events.reordered):
            ev.connect(self.glands.reset_choices)
        layers.selection.events.active.connect(self._follow_active)
        self._follow_active()

    def _labels_choices(self, _: Any = None) -> list[tuple[str, Labels]]:
        return [(ly.name, ly) for ly in self.viewer.layers if isinstance(ly, Labels)]

    def _follow_active(self, *_: Any) -> None:
        active = self.viewer.layers.selection.active
        if isinstance(active, Labels):
            if active not in self.glands.choices:
                self.glands.reset_choices()
            self.glands.value = active

    def _layer(self) -> Labels | None:
        layer = self.glands.value
        if not isinstance(layer, Labels):
            show_error("select a gland labels layer to export")
            return None
        return layer

    def target_dir(self, layer: Labels) -> Path:
        """The chosen folder, else the slide's folder, else the current directory."""
        if self.out_dir.value is not None:
            return Path(self.out_dir.value)
        meta = lm.read(layer.metadata)
        return Path(meta.slide_path).parent if meta is not None and meta.slide_path else Path.cwd()

    # ----------------------------------------------------------------- exports
    def export(self, kind: str, path: str | Path | None = None) -> Any:
        """Write the chosen gland layer as ``kind`` (geojson, ome_zarr, ome_tiff, csv) in a worker."""
        layer = self._layer()
        if layer is None:
            return None
        target = Path(path) if path else self.target_dir(layer) / (_safe(layer.name) + SUFFIXES[kind])
        data = layer.data if layer.multiscale else np.array(layer.data, copy=True)
        attrs = layer_attributes(layer)
        obj_type = str(self.object_type.value)
        writers = {
            "geojson": lambda: _writer.write_geojson(str(target), data, attrs, object_type=obj_type),
            "ome_zarr": lambda: _writer.write_ome_zarr(str(target), data, attrs),
            "ome_tiff": lambda: _writer.write_ome_tiff(str(target), data, attrs),
            "csv": lambda: _writer.write_measurements(str(target), data, attrs),
        }
        return self.jobs.start(
            lambda progress, cancel: writers[kind](), description=f"Export {kind} of {layer.name}",
            on_done=lambda paths: self.jobs.status.setText("written: " + ", ".join(paths)),
        )

    def export_training(self, out_dir: str | Path | None = None) -> Any:
        """Export the reviewed regions of the chosen gland layer's store as a training package."""
        layer = self._layer()
        meta = lm.read(layer.metadata) if layer is not None else None
        if layer is None:
            return None
        if meta is None or not meta.store:
            show_error(f"{layer.name}: not a gland layer from this plugin (no label store)")
            return None
        try:
            reviewed_store(meta)
        except Exception as exc:
            show_error(f"Export for retraining: {exc}")
            return None
        target = Path(out_dir) if out_dir else self.target_dir(layer) / f"{meta.slide_name}.training"
        return self.jobs.start(
            lambda progress, cancel: export_reviewed(meta, target), description="Export for retraining",
            on_done=lambda p: self.jobs.status.setText(f"training package: {p}"),
        )

    # ------------------------------------------------------------------ import
    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.native, "Import QuPath GeoJSON", "", "GeoJSON (*.geojson *.json)")
        if path:
            self.import_geojson(path)

    def import_geojson(self, path: str | Path, *, like: Labels | None = None, image: Image | None = None) -> Labels | None:
        """Read QuPath GeoJSON into a labels layer placed on the slide.

        With ``like`` (default: the active gland layer) the glands are rasterised on that
        layer's pixel grid; otherwise on a level-0-aligned grid around the polygons.
        """
        path = Path(path)
        if like is None and isinstance(self.viewer.layers.selection.active, Labels):
            like = self.viewer.layers.selection.active
        if image is None:
            image = next((ly for ly in self.viewer.layers if isinstance(ly, Image)), None)
        try:
            fc = read_geojson(path)
            like_meta = lm.read(like.metadata) if like is not None else None
            if like_meta is not None and not like.multiscale:
                base = like_meta  # the glands go on that layer's grid, for its slide and store
                grid = like_meta.placement.with_shape(like.data.shape[-2:])
            else:
                if image is None:
                    raise ValueError("open the slide first: the glands are placed on it")
                ref = slide_ref(image)
                shape, t, s = import_grid(fc, ref.shape)  # on the slide, bounded in size
                grid = GridPlacement(s, t, shape)
                base = gland_meta(ref, "import", grid, store=str(lm.default_store_path(ref.path or ref.name, ref.name)))
            # napari places pixel centres; GeoJSON coordinates are pixel corners.
            labels = features_to_labels(fc, grid.shape, scale=grid.scale, offset=grid.corner)
        except Exception as exc:
            show_error(f"cannot import {path}: {exc}")
            return None
        meta = replace(base, kind="import", placement=GridPlacement(grid.scale, grid.translate),
                       source_geojson=str(path), reviewed=(), uncertain_reviewed=())
        if image is not None:
            scale, translate = grid.on_image(image.scale, image.translate)
        else:
            scale, translate = tuple(like.scale), tuple(like.translate)
        return self.viewer.add_labels(np.asarray(labels, np.int32), name=f"{path.stem} (imported)",
                                      scale=scale, translate=translate, metadata=meta.layer_metadata(), **gland_style())


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("_") or "glands"
