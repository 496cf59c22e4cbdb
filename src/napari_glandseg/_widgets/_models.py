"""Model choices for the widgets: presets, checkpoint files, and in-memory models.

Reading a model's µm/px must not load its weights (the GUI thread would freeze), so the card is
read from the checkpoint's JSON or the preset table; the weights load in the worker, once.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

LOAD_CHECKPOINT = "Load checkpoint…"


class ModelChoices:
    """Named model sources and a cache of loaded models (thread-safe: workers load them)."""

    def __init__(self) -> None:
        self._objects: dict[str, Any] = {}  # label -> in-memory model
        self._paths: dict[str, Path] = {}  # label -> checkpoint path
        self._loaded: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def labels(self) -> list[str]:
        """Preset names, then added checkpoints and models, then the file-dialog entry."""
        from napari_glandseg.model import list_models

        return [*list_models(), *self._paths, *self._objects, LOAD_CHECKPOINT]

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
        card = read_card(path)  # raises with the file named when it is not a checkpoint
        label = f"{card.name} ({path.name})"
        self._paths[label] = path
        return label

    def card(self, label: str) -> Any:
        """The ModelCard of a choice, without loading weights."""
        from napari_glandseg.model import read_card
        from napari_glandseg.model.card import ModelCard

        if label in self._objects:
            return self._objects[label].card
        if label in self._paths:
            return read_card(self._paths[label])
        from napari_glandseg.model import registry

        bundled = registry.bundled_weights_dir() / f"{label}.json"
        if bundled.exists():
            return read_card(bundled)
        preset_card = getattr(registry, "preset_card", None)
        if preset_card is not None:
            return preset_card(label)
        presets = getattr(registry, "_PRESETS", {})  # until model/ exposes preset_card()
        if label not in presets:
            raise ValueError(f"unknown model {label!r}")
        fields = dict(presets[label]()["card"])
        fields.setdefault("name", label)
        return ModelCard(**fields)

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
                from napari_glandseg.model import load_model

                source = self._paths.get(label, label)
                self._loaded[key] = load_model(source, device=device)
            return self._loaded[key]
