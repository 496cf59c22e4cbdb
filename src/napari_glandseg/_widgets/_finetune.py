""""Fine-tune on my corrections": the reviewed regions of a gland layer → a new model in the user
models folder, listed (and selected) in Segment at once. A part of the Export widget.

The job runs ``finetune_on_corrections`` (the engine of ``glandseg finetune``) in a worker:
progress with the time left, Cancel (polled every training step), before → after on the
held-back part of the reviewed area.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton
from napari.layers import Labels
from napari.utils.notifications import show_error, show_warning

from napari_glandseg._widgets._form import attach_job_panel
from napari_glandseg._widgets._models import LOAD_CHECKPOINT, USER_MODELS, ModelChoices
from napari_glandseg._widgets._training import finetune_reviewed, layer_base_model, reviewed_store
from napari_glandseg.labels import layer_meta as lm
from napari_glandseg.model import DEFAULT_MODEL

if TYPE_CHECKING:
    import napari

#: The base-model entry that means "the model that made the gland layer".
LAYER_MODEL = "the layer's model"
DEFAULT_MINUTES = 5.0


class FinetunePanel(Container):
    """Base model, time budget, optional extra data, the button, and the before → after line."""

    def __init__(self, viewer: napari.viewer.Viewer, glands: Callable[[], Labels | None]) -> None:
        super().__init__(labels=True)
        self.viewer, self._glands = viewer, glands
        self.models = ModelChoices()
        self.base = ComboBox(name="base", label="Base model", choices=self._base_choices, value=LAYER_MODEL,
                             tooltip="The model to fine-tune; by default the one that made the gland layer")
        self.minutes = FloatSpinBox(name="minutes", label="Time budget (min)", min=0.1, max=600.0, step=1.0,
                                    value=DEFAULT_MINUTES, tooltip="The whole run, scoring included")
        self.extra = FileEdit(name="extra", label="More data", mode="d", nullable=True,
                              tooltip="Optional: an exported training package, or a folder with images/ and masks/")
        self.extra.line_edit.native.setPlaceholderText("optional: package or images/ + masks/")
        self.extra.choose_btn.text = "…"
        self.extra_mpp = FloatSpinBox(name="extra_mpp", label="its µm/px", min=0.0, max=100.0, step=0.05, value=0.0,
                                      tooltip="µm/px of the images in 'More data' (a package says its own)")
        self.extra_mpp.native.setDecimals(4)
        self.extra_mpp.native.setSpecialValueText("-")
        self.button = PushButton(name="finetune_button", text="Fine-tune on my corrections",
                                 tooltip="Train a new model on the reviewed regions (part held back to score it), "
                                 "replaying the base model's own data so it keeps what it knew")
        self.result = Label()  # unnamed: no row label
        self.result.native.setWordWrap(True)
        self.margins = (0, 0, 0, 0)
        self.extend([self.base, self.minutes, self.extra, self.extra_mpp, self.button, self.result])
        self.jobs = attach_job_panel(self)
        self.button.changed.connect(self.start)
        USER_MODELS.added.connect(self._refresh_base)  # weakly held: dies with the panel
        #: Engine settings beyond the form (``CorrectionSettings`` fields), e.g. for a tiny test model.
        self.settings: dict[str, Any] = {}
        self.last_result: Any = None

    def _base_choices(self, _: Any = None) -> list[str]:
        return [LAYER_MODEL, *(c for c in self.models.labels() if c != LOAD_CHECKPOINT)]

    def _refresh_base(self, _: str = "") -> None:
        try:
            self.base.reset_choices()
        except RuntimeError:  # the panel was closed
            pass

    def base_model(self, meta: lm.GlandLayerMeta) -> str:
        """The base model's label: the chosen one, or the layer's (default model if unknown)."""
        if self.base.value != LAYER_MODEL:
            return str(self.base.value)
        return layer_base_model(meta, self._base_choices()[1:], DEFAULT_MODEL)

    def start(self) -> Any:
        """Check the layer and start the fine-tune job (returns the worker, or None)."""
        from napari_glandseg.model.user_models import models_dir, new_model_dir

        layer = self._glands()
        meta = lm.read(layer.metadata) if layer is not None else None
        try:
            if meta is None or not meta.store:
                raise ValueError("select a gland layer from this plugin (Segment, then correct and Commit)")
            reviewed_store(meta)  # quick: no reviewed regions is an error before anything starts
            base = self.base_model(meta)
            card = self.models.card(base)
            out = new_model_dir(base, models_dir())
        except Exception as exc:
            show_error(f"Fine-tune: {exc}")
            return None
        if self.base.value == LAYER_MODEL and meta.model != base:
            show_warning(f"the layer's model {meta.model!r} cannot be loaded by name: fine-tuning {base}")
        minutes, extra, extra_mpp = float(self.minutes.value), self.extra.value, float(self.extra_mpp.value) or None
        settings = dict(self.settings)
        self.result.value = ""

        def run(progress, cancel):
            return finetune_reviewed(meta, base, out, model_mpp=card.mpp, minutes=minutes, extra=extra,
                                     extra_mpp=extra_mpp, settings=settings, progress=progress, cancel=cancel)

        return self.jobs.start(run, description=f"Fine-tune {base} on {layer.name}",
                               on_done=lambda result: self._done(result, out.name))

    def _done(self, result: Any, name: str) -> None:
        self.last_result = result
        self.result.value = result_text(result, name)
        self.jobs.status.setText(f"saved: {result.model_path}")
        for warning in result.warnings:
            show_warning(f"Fine-tune: {warning}")
        if not getattr(result, "worse", False):  # a model worse than its base is listed later, never selected
            USER_MODELS.added.emit(name)  # Segment lists it and selects it


def result_text(result: Any, name: str) -> str:
    """``name``: before → after on the held-back corrections (and on held-out replay images)."""
    b, a = result.before, result.after
    text = (f"{name}: held-back corrections ({a['images']} part(s)): object F1 {b['object_f1']:.2f} → "
            f"{a['object_f1']:.2f}, Dice {b['pixel_dice']:.2f} → {a['pixel_dice']:.2f}")
    if result.replay_before and result.replay_after:
        text += (f"; base data kept: object F1 {result.replay_before['object_f1']:.2f} → "
                 f"{result.replay_after['object_f1']:.2f}")
    calibration = result.card.provenance.get("postprocess_calibration")
    if calibration and calibration["chosen"] != calibration["base"]:
        from napari_glandseg.train.corrections_scoring import describe_postprocess

        text += f"; post-processing now: {describe_postprocess(calibration['chosen'])}"
    return text
