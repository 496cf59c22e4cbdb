"""The "Segment glands" dock widget: segment what is on screen, or the whole slide.

A magicgui form (as cellpose-napari and stardist-napari build theirs): the slide combo box
follows the viewer's image layers, the model combo box lists presets, bundled and added
checkpoints. Every run reads the form once, into :class:`SegmentParams`; a new option is one
field in ``_fields()`` and one attribute there.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton, Widget
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog

from napari_glandseg._widgets._form import attach_job_panel, folder_edit
from napari_glandseg._widgets._models import LOAD_CHECKPOINT, ModelChoices
from napari_glandseg._widgets._palette import gland_style
from napari_glandseg._widgets._slides import SlideRef, gland_meta, slide_ref, store_layer_kwargs
from napari_glandseg._widgets._tools import features_table
from napari_glandseg.labels import layer_meta as lm
from napari_glandseg.labels.measure import measure_glands
from napari_glandseg.labels.uncertain import with_confidence
from napari_glandseg.model import DEFAULT_MODEL
from napari_glandseg.model.device import DEVICE_CHOICES
from napari_glandseg.model.precision import PRECISIONS
from napari_glandseg.model.tta import with_tta
from napari_glandseg.slide.placement import GridPlacement
from napari_glandseg.slide.view_geometry import (
    MAX_VIEW_MODEL_PX,
    ViewBox,
    visible_bbox0,
)

if TYPE_CHECKING:
    import napari

#: the Organ box's entry for a card's own post-processing (both organs at once)
ANY_ORGAN = "any (the model's default)"
#: Refresh the whole-slide labels layer at most this often while chunks land (seconds).
REFRESH_EVERY_S = 1.0


@dataclass(frozen=True)
class SegmentParams:
    """What the form says at click time (the user may change it while the run goes on)."""

    model: str
    device: str
    slide_mpp: float | None  # None: the file's µm/px
    out_dir: Path | None  # None: next to the slide
    tta: bool = False  # test-time augmentation (flips and quarter turns averaged)
    organ: str | None = None  # the card's post-processing profile (None: the card's default)
    precision: str = "auto"  # auto (from the CPU / GPU), fp32 or bf16

    def predictor(self, model: Any) -> Any:
        """A Predictor for ``model`` with this form's device, precision and organ."""
        from napari_glandseg.inference.region import get_predictor

        return get_predictor(with_tta(model, self.tta), self.device, precision=self.precision, organ=self.organ)


class SegmentWidget(Container):
    """Pick a slide layer and a model; "Segment view" or "Segment slide"; progress + Cancel."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.models = ModelChoices()
        self.max_view_model_px = MAX_VIEW_MODEL_PX
        self.last_view: ViewBox | None = None
        self.result_layer: Labels | None = None
        self._last_model = DEFAULT_MODEL
        self._organ_by_slide: dict[str, str] = {}  # the Organ chosen for each slide, this session

        self.image = ComboBox(name="image", label="Slide", choices=self._image_choices,
                              tooltip="The slide (image layer) to segment")
        self.model = ComboBox(name="model", label="Model", choices=self._model_choices,
                              tooltip="Model preset, your fine-tuned models, or a checkpoint (.safetensors + .json)")
        self.model.value = DEFAULT_MODEL
        self.models.follow(self.model)  # a model fine-tuned in this session appears here, selected
        self.organ = ComboBox(name="organ", label="Organ", choices=self._organ_choices,
                              tooltip="Post-processing tuned for this organ (prostate glands are large and "
                                      "branched, colon glands small and crowded); remembered per slide")
        self.device = ComboBox(name="device", label="Device", choices=DEVICE_CHOICES, value="auto",
                               tooltip="auto = CUDA GPU, else Apple MPS, else CPU")
        self.precision = ComboBox(name="precision", label="Precision", choices=PRECISIONS, value="auto",
                                  tooltip="auto: bf16 only where the CPU runs it natively and it times faster, "
                                          "else fp32 (mixed precision on a GPU)")
        self.slide_mpp = FloatSpinBox(
            name="slide_mpp", label="Slide µm/px", min=0.0, max=100.0, step=0.05, value=0.0,
            tooltip="Set the slide's µm/px when the file does not say (0 = use the file's)",
        )
        self.slide_mpp.native.setDecimals(4)
        self.slide_mpp.native.setSpecialValueText("from file")
        self.out_dir = folder_edit("Folder for <slide>.glandseg.zarr (whole-slide results, autosaves)")
        self.tta = CheckBox(name="tta", text="Test-time augmentation", value=False,
                            tooltip="Average the model over flips and quarter turns: smoother, 8× slower")
        self.info = Label()  # unnamed: no row label
        self.info.native.setWordWrap(True)
        self.view_button = PushButton(name="view_button", text="Segment view",
                                      tooltip="Segment the part of the slide on screen (capped at ~4 Mpx at model µm/px)")
        self.slide_button = PushButton(name="slide_button", text="Segment slide",
                                       tooltip="Segment the whole slide into <slide>.glandseg.zarr; resumes an interrupted run")
        self.propose_button = PushButton(
            name="propose_button", text="Propose glands (no labels)",
            tooltip="Gland proposals for the part of the slide on screen with no trained model (per-image "
                    "clustering and a morphology cue): a start for tissue no model has seen, to correct and fine-tune on")
        buttons = Container(widgets=[self.view_button, self.slide_button], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.extend([*self._fields(), self.info, buttons, self.propose_button])
        self.jobs = attach_job_panel(self)

        self.model.changed.connect(self._on_model_changed)
        for field in (self.image, self.slide_mpp):
            field.changed.connect(self._update_info)
        self.image.changed.connect(self._restore_organ)
        self.organ.changed.connect(self._remember_organ)
        self.view_button.changed.connect(self.segment_view)
        self.slide_button.changed.connect(self.segment_slide)
        self.propose_button.changed.connect(self.propose_view)
        # The slide combo box follows the layer list (docked or not).
        for ev in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed,
                   napari_viewer.layers.events.reordered):
            ev.connect(self.image.reset_choices)
        self._update_info()

    def _fields(self) -> list[Widget]:
        """The form's inputs, in display order (add an option here and in ``params``)."""
        return [self.image, self.model, self.organ, self.device, self.precision, self.slide_mpp, self.out_dir,
                self.tta]

    def params(self) -> SegmentParams:
        """The form's values now."""
        mpp = float(self.slide_mpp.value)
        organ = self.organ.value
        return SegmentParams(model=self.model_label(), device=str(self.device.value),
                             slide_mpp=mpp if mpp > 0 else None, out_dir=self.out_dir.value, tta=bool(self.tta.value),
                             organ=None if organ in (None, ANY_ORGAN) else str(organ),
                             precision=str(self.precision.value))

    # ----------------------------------------------------------------- choices
    def _image_choices(self, _: Any = None) -> list[tuple[str, Image]]:
        return [(ly.name, ly) for ly in self.viewer.layers if isinstance(ly, Image)]

    def _model_choices(self, _: Any = None) -> list[str]:
        return self.models.labels()

    def _organ_choices(self, _: Any = None) -> list[str]:
        try:
            card = self.models.card(self.model_label())
        except Exception:  # e.g. the "Load checkpoint…" entry
            return [ANY_ORGAN]
        return [ANY_ORGAN, *sorted(card.profiles)]

    def _slide_key(self) -> str | None:
        layer = self.image_layer()
        return None if layer is None else str(slide_ref(layer, None).path or layer.name)

    def _remember_organ(self, organ: Any) -> None:
        key = self._slide_key()
        if key is not None and organ is not None:
            self._organ_by_slide[key] = str(organ)

    def _restore_organ(self, *_: Any) -> None:
        """The organ last chosen for this slide, else the card's default."""
        self.organ.reset_choices()
        key = self._slide_key()
        wanted = self._organ_by_slide.get(key) if key else None
        if wanted is None:
            try:
                wanted = self.models.card(self.model_label()).organ
            except Exception:  # noqa: BLE001 - no card: the default entry
                wanted = None
        self.organ.value = wanted if wanted in self.organ.choices else ANY_ORGAN

    def image_layer(self) -> Image | None:
        """The chosen slide layer (None when the viewer has no image layer)."""
        return self.image.value

    def set_image_layer(self, layer: Image) -> None:
        self.image.value = layer

    def add_model(self, model: Any, label: str | None = None) -> str:
        """Offer an in-memory model (e.g. one just fine-tuned) and select it."""
        return self._select_model(self.models.add_object(model, label))

    def add_checkpoint(self, path: str | Path) -> str:
        """Offer a checkpoint file and select it."""
        return self._select_model(self.models.add_checkpoint(path))

    def _select_model(self, label: str) -> str:
        self.model.reset_choices()
        self.model.value = label
        return label

    def model_label(self) -> str:
        return str(self.model.value)

    def slide_mpp_override(self) -> float | None:
        return self.params().slide_mpp

    def _on_model_changed(self, label: str) -> None:
        if label != LOAD_CHECKPOINT:
            self._last_model = label
            self._restore_organ()
            self._update_info()
            return
        path, _ = QFileDialog.getOpenFileName(self.native, "Load checkpoint", "", "Checkpoints (*.safetensors *.json)")
        try:
            if path:
                self.add_checkpoint(path)
                return
        except Exception as exc:
            show_error(f"cannot load checkpoint: {exc}")
        self.model.value = self._last_model

    def _update_info(self, *_: Any) -> None:
        parts = []
        try:
            card = self.models.card(self.model_label())
            parts.append(f"model {card.name}: {card.mpp:g} µm/px")
        except Exception:  # e.g. the "Load checkpoint…" entry
            pass
        layer = self.image_layer()
        if layer is not None:
            ref = slide_ref(layer, self.slide_mpp_override())
            parts.append(f"slide: {ref.mpp:g} µm/px" if ref.mpp else "slide: µm/px unknown — set it below")
        self.info.value = " · ".join(parts)

    # ------------------------------------------------------------ segment view
    def visible_bbox(self, layer: Image | None = None, work_mpp: float | None = None) -> ViewBox:
        """The level-0 bbox of ``layer`` on screen, clipped and capped (see slide.view_geometry) at
        ``work_mpp`` µm/px (default: the selected model's)."""
        layer = layer or self.image_layer()
        if layer is None:
            raise ValueError("no slide: open a slide (File > Open) first")
        ref = slide_ref(layer, self.slide_mpp_override())
        work_mpp = work_mpp or self.models.card(self.model_label()).mpp
        px_per_model_px = work_mpp / ref.mpp if ref.mpp else 1.0
        camera = getattr(self.viewer, "scene", self.viewer).camera
        return visible_bbox0(
            camera.center, camera.zoom, self.viewer.canvas.size, layer.world_to_data, ref.shape,
            px_per_model_px=px_per_model_px, max_model_px=self.max_view_model_px,
        )

    def _slide(self, p: SegmentParams) -> tuple[Image, SlideRef]:
        layer = self.image_layer()
        if layer is None:
            raise ValueError("no slide: open a slide (File > Open) first")
        ref = slide_ref(layer, p.slide_mpp)
        if ref.mpp is None:
            raise ValueError(f"{ref.name}: the slide's µm/px is unknown; set 'Slide µm/px' first")
        return layer, ref

    def segment_view(self) -> Any:
        """Segment the visible region; the result lands where it was asked for, whatever happens meanwhile."""
        try:
            p = self.params()
            layer, ref = self._slide(p)
            view = self.visible_bbox(layer)
            card = self.models.card(p.model)
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
        display_ds = display_downsample(layer)
        models = self.models

        def run(progress, cancel: threading.Event):
            from napari_glandseg.inference import segment_region

            model = p.predictor(models.load(p.model, p.device))
            result = segment_region(ref.open(), view.bbox, model=model, progress=progress, cancel=cancel,
                                    device=p.device, display_downsample=display_ds)
            rows = measure_glands(np.asarray(result.labels), result_mpp(result, ref.mpp))
            return result, with_confidence(rows, result.confidence)

        return self.jobs.start(
            run, description=f"Segment view of {ref.name}",
            on_done=lambda out: self._add_view_result(out, ref, view, placement, card, p),
        )

    def propose_view(self) -> Any:
        """Unsupervised gland proposals for the visible region, as an ordinary gland layer."""
        from napari_glandseg.unsupervised.proposals import ProposalConfig

        try:
            p = self.params()
            layer, ref = self._slide(p)
            source = ProposalSource(mpp=ProposalConfig().work_mpp)
            view = self.visible_bbox(layer, source.mpp)  # capped at the proposals' µm/px, not the model's
        except Exception as exc:
            show_error(f"Propose glands: {exc}")
            return None
        if view.capped:
            show_info(f"the view is larger than {self.max_view_model_px / 1e6:.1f} Mpx at {source.mpp:g} µm/px: "
                      f"proposing for its centre {view.bbox[2]}×{view.bbox[3]} px; zoom in for the rest")
        self.last_view = view
        placement = (tuple(layer.scale), tuple(layer.translate))

        def run(progress, cancel: threading.Event):
            from napari_glandseg.unsupervised.proposals import propose_region

            result = propose_region(ref.open(), view.bbox, progress=progress, cancel=cancel)
            return result, measure_glands(np.asarray(result.labels), result_mpp(result, ref.mpp))

        return self.jobs.start(
            run, description=f"Propose glands on {ref.name}",
            on_done=lambda out: self._add_view_result(out, ref, view, placement, source, p),
        )

    def _add_view_result(self, out, ref: SlideRef, view: ViewBox, placement, card, p: SegmentParams) -> None:
        result, rows = out
        labels = np.asarray(result.labels)
        scale0 = _as_pair(result.scale)
        translate0 = _as_pair(result.translate)
        grid = GridPlacement(scale0[0], translate0)
        scale, translate = grid.on_image(placement[0], placement[1])
        meta = gland_meta(ref, "view", grid, model=card.name, model_mpp=card.mpp,
                          bbox0=tuple(int(v) for v in view.bbox), store=str(self.store_path(ref, p)))
        layer = self.viewer.add_labels(
            labels, name=f"{ref.name} glands", scale=scale, translate=translate, metadata=meta.layer_metadata(),
            features=features_table(rows), **gland_style(),
        )
        self.result_layer = layer
        self.jobs.status.setText(f"{int(labels.max())} glands in {view.bbox[2]}×{view.bbox[3]} px "
                                 f"({compute_text(result.info)})")

    # ----------------------------------------------------------- segment slide
    def store_path(self, ref: SlideRef, p: SegmentParams | None = None) -> Path:
        """Where the whole-slide result (and autosaves) of this slide go."""
        out_dir = (p or self.params()).out_dir
        default = lm.default_store_path(ref.path or ref.name, ref.name)
        return out_dir / default.name if out_dir else default

    def segment_slide(self) -> Any:
        """Segment the whole slide into the label store (resuming); show it as it fills in."""
        try:
            p = self.params()
            layer, ref = self._slide(p)
            card = self.models.card(p.model)
            out = self.store_path(ref, p)
        except Exception as exc:
            show_error(f"Segment slide: {exc}")
            return None
        placement = (tuple(layer.scale), tuple(layer.translate))
        models = self.models
        state = {"layer": None, "t": 0.0}

        def run(progress, cancel: threading.Event):
            from napari_glandseg.inference import SlideRunSettings, segment_slide

            model = p.predictor(models.load(p.model, p.device))
            run = segment_slide(ref.open(), out, model, SlideRunSettings(device=p.device, resume=True),
                                progress=progress, cancel=cancel)
            state["compute"] = model.info()
            return run.store

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
            self.jobs.status.setText(f"whole slide segmented: {out} ({compute_text(state.get('compute', {}))})")

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


@dataclass(frozen=True)
class ProposalSource:
    """What made a "Propose glands" layer, where a model card would be (its name and µm/px)."""

    mpp: float
    name: str = "unsupervised proposals (no labels)"


def compute_text(info: dict[str, Any]) -> str:
    """How a run ran, for the status line: "cpu, fp32, 2 threads, prostate post-processing"."""
    parts = [str(info.get(k)) for k in ("device", "precision") if info.get(k)]
    if info.get("threads"):
        parts.append(f"{info['threads']} thread{'s' if info['threads'] != 1 else ''}")
    if info.get("organ"):
        parts.append(f"{info['organ']} post-processing")
    return ", ".join(parts)


def display_downsample(layer: Image) -> float:
    """Level-0 pixels per pixel of the level napari shows now (1 for a single-level image):
    Segment view's outlines are drawn that fine (up to 4× the model's grid)."""
    if not getattr(layer, "multiscale", False):
        return 1.0
    shapes = layer.level_shapes
    return float(shapes[0][0] / shapes[int(layer.data_level)][0])


def result_mpp(result: Any, slide_mpp: float) -> float:
    """µm per label pixel of a RegionResult."""
    mpp = getattr(result, "mpp", None)
    return float(mpp) if mpp else slide_mpp * _as_pair(result.scale)[0]


def _as_pair(v: Any) -> tuple[float, float]:
    a = np.broadcast_to(np.asarray(v, float).ravel()[-2:], (2,))
    return float(a[0]), float(a[1])

