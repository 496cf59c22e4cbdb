"""Model choices for the widgets: presets, the user's fine-tuned models (by name), checkpoint
files, and in-memory models.

Reading a model's µm/px must not load its weights (the GUI thread would freeze), so the card is
read from the checkpoint's JSON or the preset table; the weights load in the worker, once.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from psygnal import Signal

LOAD_CHECKPOINT = "Load checkpoint…"


class _UserModelEvents:
    """``added(name)``: a model was saved into the user models folder (by a fine-tune)."""

    added = Signal(str)


#: Every ModelChoices that follows a combo box refreshes it (and selects the new model) on this.
USER_MODELS = _UserModelEvents()


class ModelChoices:
    """Named model sources and a cache of loaded models (thread-safe: workers load them)."""

    def __init__(self) -> None:
        self._objects: dict[str, Any] = {}  # label -> in-memory model
        self._paths: dict[str, Path] = {}  # label -> checkpoint path
        self._loaded: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._combo: Any = None

    def labels(self) -> list[str]:
        """Segmentation presets, the user's models, added checkpoints and models, the file-dialog entry."""
        from napari_glandseg.model import list_models, preset_card

        # Presets that take more than RGB (the click-guided model) cannot segment a slide.
        presets = [n for n in list_models() if preset_card(n).arch_args.get("in_chans", 3) == 3]
        return [*presets, *(m.name for m in _user_models()), *self._paths, *self._objects, LOAD_CHECKPOINT]

    def follow(self, combo: Any) -> None:
        """Refresh ``combo`` (whose choices are ``labels()``) when a user model is added, and select it."""
        self._combo = combo
        USER_MODELS.added.connect(self._user_model_added)  # a weak reference: dies with this object

    def _user_model_added(self, name: str) -> None:
        try:
            self._combo.reset_choices()
            if name in self._combo.choices:
                self._combo.value = name
        except RuntimeError:  # the widget was closed (its Qt object deleted)
            pass

    def add_object(self, model: Any, label: str | None = None) -> str:
        """Offer an in-memory model (needs ``.card``); returns its label in the picker."""
        if getattr(model, "card", None) is None:
            raise ValueError("a model needs a .card (ModelCard) with its µm/px and tile size")
        label = label or f"{model.card.name} (in memory)"
        self._objects[label] = model
        return label

    def add_checkpoint(self, path: str | Path) -> str:
        """Offer a checkpoint file; its card is read now so a broken file is reported at once."""
        from napari_glandseg.model import read_card

        path = Path(path)
        card = read_card(path)  # raises with the file named when it is not a checkpoint (or pickled)
        label = f"{card.name} ({path.name})"
        self._paths[label] = path
        return label

    def card(self, label: str) -> Any:
        """The ModelCard of a choice, without loading weights."""
        if label in self._objects:
            return self._objects[label].card
        return self.source(label).card

    def source(self, label: str) -> Any:
        """The ``model.resolve.ModelSource`` of a preset, user model or added checkpoint (its card
        read, not its weights); a GlandsegError naming the presets for anything else."""
        from napari_glandseg.model import resolve

        return resolve(self._paths.get(label, label))

    def load(self, label: str, device: str = "auto") -> Any:
        """The model for ``label`` on ``device`` (cached; call from a worker thread)."""
        if label in self._objects:
            model = self._objects[label]
            if device != "auto":
                from napari_glandseg.model import pick_device

                model = model.to(pick_device(device))
            return model
        key = (label, device)
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = self.source(label).load(device)
            return self._loaded[key]


def _user_models() -> list[Any]:
    from napari_glandseg.model.user_models import list_user_models

    return list_user_models()
