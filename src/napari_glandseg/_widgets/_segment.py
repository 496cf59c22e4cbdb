"""The "Segment glands" dock widget: segment what is on screen, or the whole slide."""

from __future__ import annotations

import inspect
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_glandseg._widgets import _layer_meta as lm
from napari_glandseg._widgets._jobs import JobPanel
from napari_glandseg._widgets._models import LOAD_CHECKPOINT, ModelChoices
from napari_glandseg._widgets._slides import SlideRef, slide_ref, store_layer_kwargs
from napari_glandseg._widgets._view_geometry import (
    MAX_VIEW_MODEL_PX,
    ViewBox,
    place_on_image,
    visible_bbox0,
)

if TYPE_CHECKING:
    import napari

DEVICES = ("auto", "cpu", "cuda", "mps")
#: Refresh the whole-slide labels layer at most this often while chunks land (seconds).
REFRESH_EVERY_S = 1.0


class SegmentWidget(QWidget):
    """Pick a slide layer and a model; "Segment view" or "Segment slide"; progress + Cancel."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.models = ModelChoices()
        self.max_view_model_px = MAX_VIEW_MODEL_PX
        self.last_view: ViewBox | None = None
        self.result_layer: Labels | None = None

        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("The slide (image layer) to segment")
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("Model preset or checkpoint (.safetensors + .json)")
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.device_combo.setToolTip("auto = CUDA GPU, else Apple MPS, else CPU")
        self.mpp_info = QLabel("")
        self.mpp_info.setWordWrap(True)
        self.mpp_spin = QDoubleSpinBox()
        self.mpp_spin.setRange(0.0, 100.0)
        self.mpp_spin.setDecimals(4)
        self.mpp_spin.setSingleStep(0.05)
        self.mpp_spin.setSpecialValueText("from file")
        self.mpp_spin.setToolTip("Set the slide's µm/px when the file does not say (0 = use the file's)")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("next to the slide")
        self.out_edit.setToolTip("Folder for <slide>.glandseg.zarr (whole-slide results, autosaves)")
        out_button = QPushButton("…")
        out_button.clicked.connect(self._choose_out_dir)
        self.view_button = QPushButton("Segment view")
        self.view_button.setToolTip("Segment the part of the slide on screen (capped at ~4 Mpx at model µm/px)")
        self.slide_button = QPushButton("Segment slide")
        self.slide_button.setToolTip("Segment the whole slide into <slide>.glandseg.zarr; resumes an interrupted run")
        self.jobs = JobPanel(self)

        form = QFormLayout()
        form.addRow("Slide", self.layer_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("Device", self.device_combo)
        form.addRow("Slide µm/px", self.mpp_spin)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(out_button)
        form.addRow("Output folder", out_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.view_button)
        buttons.addWidget(self.slide_button)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.mpp_info)
        lay.addLayout(buttons)
        lay.addWidget(self.jobs)
        lay.addStretch(1)

        self._refill_models()
        self._refill_layers()
        self.model_combo.activated.connect(self._on_model_activated)
        self.model_combo.currentIndexChanged.connect(lambda *_: self._update_info())
        self.layer_combo.currentIndexChanged.connect(lambda *_: self._update_info())
        self.mpp_spin.valueChanged.connect(lambda *_: self._update_info())
        self.view_button.clicked.connect(self.segment_view)
        self.slide_button.clicked.connect(self.segment_slide)
        for ev in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            ev.connect(self._refill_layers)
        self._update_info()

    # ----------------------------------------------------------------- choices
    def image_layer(self) -> Image | None:
        """The chosen slide layer (None when the viewer has no image layer)."""
        name = self.layer_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def set_image_layer(self, layer: Image) -> None:
        self.layer_combo.setCurrentText(layer.name)

    def add_model(self, model: Any, label: str | None = None) -> str:
        """Offer an in-memory model (e.g. one just fine-tuned) and select it."""
        label = self.models.add_object(model, label)
        self._refill_models(select=label)
        return label

    def add_checkpoint(self, path: str | Path) -> str:
        """Offer a checkpoint file and select it."""
        label = self.models.add_checkpoint(path)
        self._refill_models(select=label)
        return label

    def model_label(self) -> str:
        return self.model_combo.currentText()

    def slide_mpp_override(self) -> float | None:
        v = float(self.mpp_spin.value())
        return v if v > 0 else None

    def _refill_layers(self, *_: Any) -> None:
        current = self.layer_combo.currentText()
        names = [ly.name for ly in self.viewer.layers if isinstance(ly, Image)]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        self._update_info()

    def _refill_models(self, select: str | None = None) -> None:
        current = select or self.model_combo.currentText()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItems(self.models.labels())
        if current and current != LOAD_CHECKPOINT:
            self.model_combo.setCurrentText(current)
        else:
            from napari_glandseg.model import DEFAULT_MODEL

            self.model_combo.setCurrentText(DEFAULT_MODEL)
        self._last_model = self.model_combo.currentText()
        self.model_combo.blockSignals(False)
        self._update_info()

    def _on_model_activated(self, index: int) -> None:
        if self.model_combo.itemText(index) != LOAD_CHECKPOINT:
            self._last_model = self.model_combo.itemText(index)
            return
        path, _ = QFileDialog.getOpenFileName(self, "Load checkpoint", "", "Checkpoints (*.safetensors *.json)")
        if not path:
            self.model_combo.setCurrentText(self._last_model)
            return
        try:
            self.add_checkpoint(path)
        except Exception as exc:
            show_error(f"cannot load checkpoint: {exc}")
            self.model_combo.setCurrentText(self._last_model)

    def _choose_out_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder")
        if folder:
            self.out_edit.setText(folder)

    def _update_info(self) -> None:
        parts = []
        try:
            card = self.models.card(self.model_label())
            parts.append(f"model {card.name}: {card.mpp:g} µm/px")
        except Exception:
            pass
        layer = self.image_layer()
        if layer is not None:
            ref = slide_ref(layer, self.slide_mpp_override())
            parts.append(f"slide: {ref.mpp:g} µm/px" if ref.mpp else "slide: µm/px unknown — set it below")
        self.mpp_info.setText(" · ".join(parts))

    # ------------------------------------------------------------ segment view
    def visible_bbox(self, layer: Image | None = None) -> ViewBox:
        """The level-0 bbox of ``layer`` on screen, clipped and capped (see _view_geometry)."""
        layer = layer or self.image_layer()
        if layer is None:
            raise ValueError("no slide: open a slide (File > Open) first")
        ref = slide_ref(layer, self.slide_mpp_override())
        card = self.models.card(self.model_label())
        px_per_model_px = card.mpp / ref.mpp if ref.mpp else 1.0
        camera = getattr(self.viewer, "scene", self.viewer).camera
        return visible_bbox0(
            camera.center, camera.zoom, self.viewer.canvas.size, layer.world_to_data, ref.shape,
            px_per_model_px=px_per_model_px, max_model_px=self.max_view_model_px,
        )

    def segment_view(self) -> Any:
        """Segment the visible region; the result lands where it was asked for, whatever happens meanwhile."""
        try:
            layer = self.image_layer()
            view = self.visible_bbox(layer)
            ref = slide_ref(layer, self.slide_mpp_override())
            if ref.mpp is None:
                raise ValueError(f"{ref.name}: the slide's µm/px is unknown; set 'Slide µm/px' first")
            label, device = self.model_label(), self.device_combo.currentText()
            card = self.models.card(label)
        except Exception as exc:
            show_error(f"Segment view: {exc}")
            return None
        if view.capped:
            show_info(
                f"the view is larger than {self.max_view_model_px / 1e6:.1f} Mpx at the model's "
                f"{card.mpp:g} µm/px: segmenting its centre {view.bbox[2]}×{view.bbox[3]} px; zoom in for the rest"
            )
        self.last_view = view
        # Everything the result needs is captured now: the user may pan, zoom or switch layers.
        placement = (tuple(layer.scale), tuple(layer.translate))
        models = self.models

        def run(progress, cancel: threading.Event):
            from napari_glandseg.inference import segment_region

            model = models.load(label, device)
            kwargs = _accepted(segment_region, progress=progress, cancel=cancel, device=device)
            result = segment_region(ref.open(), view.bbox, model=model, **kwargs)
            return result, _measure(result.labels, result_mpp(result, ref.mpp))

        return self.jobs.start(
            run, description=f"Segment view of {ref.name}",
            on_done=lambda out: self._add_view_result(out, ref, view, placement, card),
        )

    def _add_view_result(self, out, ref: SlideRef, view: ViewBox, placement, card) -> None:
        result, rows = out
        labels = np.asarray(result.labels)
        scale0 = _as_pair(result.scale)
        translate0 = _as_pair(result.translate)
        scale, translate = place_on_image(placement[0], placement[1], scale0, translate0)
        meta = lm.make_meta(
            kind="view", slide_path=ref.path, slide_name=ref.name, slide_mpp=ref.mpp, slide_shape=ref.shape,
            label_scale0=scale0[0], label_translate0=translate0, model=card.name, model_mpp=card.mpp,
            bbox0=view.bbox, store=str(self.store_path(ref)),
        )
        layer = self.viewer.add_labels(
            labels, name=f"{ref.name} glands", scale=scale, translate=translate,
            metadata={lm.KEY: meta, "bbox0": list(view.bbox), "model": card.name, "mpp": card.mpp},
            features=_features(rows),
        )
        self.result_layer = layer
        self.jobs.status.setText(f"{int(labels.max())} glands in {view.bbox[2]}×{view.bbox[3]} px")

    # ----------------------------------------------------------- segment slide
    def store_path(self, ref: SlideRef) -> Path:
        """Where the whole-slide result (and autosaves) of this slide go."""
        default = lm.default_store_path(ref.path or ref.name, ref.name)
        folder = self.out_edit.text().strip()
        return Path(folder) / default.name if folder else default

    def segment_slide(self) -> Any:
        """Segment the whole slide into the label store (resuming); show it as it fills in."""
        try:
            layer = self.image_layer()
            if layer is None:
                raise ValueError("no slide: open a slide (File > Open) first")
            ref = slide_ref(layer, self.slide_mpp_override())
            if ref.mpp is None:
                raise ValueError(f"{ref.name}: the slide's µm/px is unknown; set 'Slide µm/px' first")
            label, device = self.model_label(), self.device_combo.currentText()
            card = self.models.card(label)
            out = self.store_path(ref)
        except Exception as exc:
            show_error(f"Segment slide: {exc}")
            return None
        placement = (tuple(layer.scale), tuple(layer.translate))
        models = self.models
        state = {"layer": None, "t": 0.0}

        def run(progress, cancel: threading.Event):
            from napari_glandseg.inference import segment_slide

            model = models.load(label, device)
            kwargs = _accepted(segment_slide, progress=progress, cancel=cancel, device=device, resume=True)
            return segment_slide(ref.open(), out, model=model, **kwargs)

        def on_progress(done: int, total: int, message: str) -> None:
            # Show the store as soon as it exists, then refresh it as chunks land (throttled).
            now = time.monotonic()
            if state["layer"] is None and out.exists():
                state["layer"] = self._show_store(out, ref, placement, card)
            elif state["layer"] is not None and now - state["t"] > REFRESH_EVERY_S:
                state["layer"].refresh()
            state["t"] = now

        def on_done(store) -> None:
            if state["layer"] is None:
                state["layer"] = self._show_store(out, ref, placement, card, store=store)
            else:
                state["layer"].refresh()
            self.jobs.status.setText(f"whole slide segmented: {out}")

        return self.jobs.start(
            run, description=f"Segment slide {ref.name}", on_done=on_done, on_progress=on_progress
        )

    def _show_store(self, path: Path, ref: SlideRef, placement, card, store=None) -> Labels | None:
        try:
            kwargs = store_layer_kwargs(path, ref, placement, model=card.name, model_mpp=card.mpp, store=store)
        except Exception as exc:  # the store may be half-created on the first progress report
            show_warning(f"cannot show {path} yet: {exc}")
            return None
        layer = self.viewer.add_labels(**kwargs)
        self.result_layer = layer
        return layer


def result_mpp(result: Any, slide_mpp: float) -> float:
    """µm per label pixel of a RegionResult."""
    mpp = getattr(result, "mpp", None)
    return float(mpp) if mpp else slide_mpp * _as_pair(result.scale)[0]


def _as_pair(v: Any) -> tuple[float, float]:
    a = np.broadcast_to(np.asarray(v, float).ravel()[-2:], (2,))
    return float(a[0]), float(a[1])


def _accepted(fn: Any, **kwargs: Any) -> dict[str, Any]:
    """The keyword arguments ``fn`` takes (engines differ in which options they expose)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def _measure(labels: Any, mpp: float) -> list[dict] | None:
    """Per-gland measurements, or None when labels/measure is not available."""
    try:
        from napari_glandseg.labels.measure import measure_glands
    except ImportError:
        return None
    return measure_glands(np.asarray(labels), mpp)


def _features(rows: list[dict] | None) -> Any:
    """A napari Labels features table (``index`` = label value) from measurement rows."""
    import pandas as pd

    if not rows:
        return None
    df = pd.DataFrame(rows)
    if "label" in df:
        df.insert(0, "index", df["label"].astype(int))
    return df
