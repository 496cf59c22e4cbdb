"""What a model name means, decided in one place: ``resolve(spec) -> ModelSource``.

A spec is looked up in this order:

1. ``None``: the bundled default (``DEFAULT_MODEL``);
2. a preset name: its bundled trained weights where they ship, else the untrained preset
   (``load`` warns);
3. a checkpoint: a path ending in a checkpoint suffix (``checkpoint.CHECKPOINT_SUFFIXES``;
   pickled ones, ``checkpoint.PICKLE_SUFFIXES``, are recognised and refused), or an existing file
   or model folder;
4. the name of a model in the user models folder (``model.user_models``).

The card is read at once (no weights), so a picker can show µm/px and a bad file is reported
before any work starts; ``load`` builds the network and reads the weights; ``fresh`` builds the
card's architecture untrained (what a training run from scratch starts from).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch

from napari_glandseg.errors import GlandsegError
from napari_glandseg.model.card import ModelCard
from napari_glandseg.model.checkpoint import (
    CHECKPOINT_SUFFIXES,
    PICKLE_SUFFIXES,
    checkpoint_paths,
    load_checkpoint,
    read_card,
    refuse_pickled,
)
from napari_glandseg.model.device import pick_device
from napari_glandseg.model.network import DualSwinUNet, build_network
from napari_glandseg.model.registry import DEFAULT_MODEL, bundled_weights_dir, create_model, list_models, preset_card
from napari_glandseg.model.user_models import find_user_model, models_dir

Kind = Literal["preset", "checkpoint", "user", "memory"]


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: small and picklable (dask workers load it themselves)."""

    kind: Kind
    name: str  # the preset's or user model's name; the card's name for a checkpoint or in-memory model
    spec: str  # what was asked for ("" for the default and for in-memory models)
    card: ModelCard
    weights: Path | None  # the safetensors file; None for an untrained preset or an in-memory model

    @classmethod
    def in_memory(cls, card: ModelCard) -> ModelSource:
        """The source of a model handed over as an object (nothing to load: the caller has it)."""
        return cls("memory", card.name, "", card, None)

    @property
    def trained(self) -> bool:
        """Whether the model has trained weights (an untrained preset has not)."""
        return self.weights is not None or self.kind == "memory"

    def sha256(self) -> str | None:
        """The weights file's SHA-256 (None without one); cached per file version."""
        if self.weights is None or not self.weights.exists():
            return None
        stat = self.weights.stat()
        return _file_sha256(str(self.weights), stat.st_mtime_ns, stat.st_size)

    def describe(self, *, with_hash: bool = False) -> dict[str, Any]:
        """What a run records about its model (JSON-ready)."""
        info: dict[str, Any] = {"name": self.card.name, "kind": self.kind,
                                "source": self.spec or ("in memory" if self.kind == "memory" else self.name),
                                "weights": str(self.weights) if self.weights is not None else None}
        if with_hash and (digest := self.sha256()) is not None:
            info["sha256"] = digest
        return info

    def load(self, device: str | torch.device | None = None) -> DualSwinUNet:
        """The model for inference (eval mode) on ``device`` (None/"auto": cuda → mps → cpu)."""
        if self.kind == "memory":
            raise GlandsegError(f"{self.name}: an in-memory model has no file to load it from")
        if self.weights is None:
            warnings.warn(f"no trained weights ship for preset {self.name!r}: the model is untrained", stacklevel=2)
            model = self.fresh()
        else:
            model = load_checkpoint(self.weights)
        return model.to(pick_device(device)).eval()

    def fresh(self, **overrides: Any) -> DualSwinUNet:
        """An untrained network of this source's architecture; ``overrides`` as ``create_model``
        takes them (architecture arguments or card fields)."""
        if self.kind == "preset":
            return create_model(self.name, **overrides)
        card_names = set(ModelCard.__dataclass_fields__)
        arch = {**self.card.arch_args, **{k: v for k, v in overrides.items() if k not in card_names}}
        card = self.card.replace(arch_args=arch, **{k: v for k, v in overrides.items() if k in card_names})
        model = build_network(card.arch_args)
        model.card = card
        return model


def resolve(spec: str | os.PathLike | ModelSource | None = None) -> ModelSource:
    """The source ``spec`` names (see the module docstring for the order); a GlandsegError
    naming where it looked when it names nothing."""
    if isinstance(spec, ModelSource):
        return spec
    if spec is None:
        return _preset(DEFAULT_MODEL, "")
    text = os.fspath(spec)
    if not isinstance(text, str):
        raise GlandsegError(f"a model is named by a preset, a checkpoint path or a user model name, not {spec!r}")
    if text in list_models():
        return _preset(text, text)
    path = Path(text)
    if _is_checkpoint_path(path):
        card = read_card(path)
        return ModelSource("checkpoint", card.name, text, card, checkpoint_paths(path)[0])
    user = find_user_model(text)
    if user is not None:
        return ModelSource("user", user.name, text, user.card, user.path)
    raise GlandsegError(
        f"{text!r} is neither a preset ({', '.join(list_models())}), a model in "
        f"{models_dir()} nor a checkpoint file"
    )


def weights_file(spec: str | os.PathLike) -> Path:
    """The weights file ``spec`` names, for copying its tensors into another network (a training
    run's ``init``): a checkpoint path needs no card here, a name is resolved as above."""
    text = os.fspath(spec)
    if text not in list_models() and _is_checkpoint_path(Path(text)):
        refuse_pickled(text)
        return checkpoint_paths(text)[0]
    source = resolve(text)
    if source.weights is None:
        raise GlandsegError(f"{text!r}: an untrained preset has no weights to start from")
    return source.weights


def load_model(name_or_path: str | os.PathLike | ModelSource | None = None, *,
               device: str | torch.device | None = None) -> DualSwinUNet:
    """``resolve(name_or_path).load(device)``: a model for inference (eval mode), timm-style."""
    return resolve(name_or_path).load(device)


def _is_checkpoint_path(path: Path) -> bool:
    """A checkpoint file, or its stem (``runs/x/best`` for ``best.safetensors`` + ``best.json``)."""
    return path.suffix in CHECKPOINT_SUFFIXES + PICKLE_SUFFIXES or path.exists() or \
        path.with_name(path.name + ".safetensors").exists()


def _preset(name: str, spec: str) -> ModelSource:
    weights = bundled_weights_dir() / f"{name}.safetensors"
    if weights.exists():
        return ModelSource("preset", name, spec, read_card(weights), weights)
    return ModelSource("preset", name, spec, preset_card(name), None)


@lru_cache(maxsize=16)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    del mtime_ns, size  # part of the cache key only: a rewritten file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["ModelSource", "load_model", "resolve", "weights_file"]
