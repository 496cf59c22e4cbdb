"""Checkpoints: ``NAME.safetensors`` (weights) + ``NAME.json`` (model card). Never unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from napari_glandseg._atomic import atomic_path, write_text_atomic
from napari_glandseg.errors import GlandsegError
from napari_glandseg.model.card import ModelCard
from napari_glandseg.model.network import DualSwinUNet

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl")


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, card) paths for a checkpoint given by its stem, weights or card path."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def save_checkpoint(
    model: DualSwinUNet, path: str | Path, *, card: ModelCard | None = None, half: bool = False
) -> tuple[Path, Path]:
    """Write weights and card atomically; ``half`` stores fp16 weights (half the size)."""
    weights_path, card_path = checkpoint_paths(path)
    card = card or model.card
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        state[k] = (v.half() if half and v.is_floating_point() else v).contiguous()
    with atomic_path(weights_path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "glandseg_card": card.name})
    write_text_atomic(card_path, card.to_json() + "\n")
    return weights_path, card_path


def read_card(path: str | Path) -> ModelCard:
    _, card_path = checkpoint_paths(path)
    if not card_path.exists():
        raise GlandsegError(f"{card_path}: model card not found (a checkpoint is NAME.safetensors + NAME.json)")
    try:
        return ModelCard.from_json(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise GlandsegError(f"{card_path}: not a valid model card: {exc}") from exc


def load_checkpoint(path: str | Path, *, strict: bool = True) -> DualSwinUNet:
    """Build the model its card describes and load the safetensors weights into it."""
    from napari_glandseg.model.registry import build_network

    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise GlandsegError(
            f"{path}: pickled checkpoints can run arbitrary code and are not loaded; convert it "
            "once, in a trusted environment, with training/convert_checkpoint.py (which uses "
            "torch.load(weights_only=True)) to NAME.safetensors + NAME.json"
        )
    weights_path, _ = checkpoint_paths(path)
    card = read_card(path)
    if not weights_path.exists():
        raise GlandsegError(f"{weights_path}: weights file not found")
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise GlandsegError(f"{weights_path}: not a readable safetensors file: {exc}") from exc
    model = build_network(card.arch_args)
    model.card = card
    load_state(model, state, source=weights_path, strict=strict)
    return model


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: Path | str, strict: bool = True) -> None:
    """Copy ``state`` into ``model``, naming the keys that do not fit."""
    own = model.state_dict()
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    problems = []
    if mismatched:
        problems.append("shape mismatch: " + "; ".join(mismatched[:10]))
    if strict and missing:
        problems.append(f"missing keys: {missing[:10]}{' …' if len(missing) > 10 else ''}")
    if strict and unexpected:
        problems.append(f"unexpected keys: {unexpected[:10]}{' …' if len(unexpected) > 10 else ''}")
    if problems:
        raise GlandsegError(f"{source}: weights do not fit the model: " + " | ".join(problems))
    fitted = {k: v.to(own[k].dtype) for k, v in state.items() if k in own}
    model.load_state_dict(fitted, strict=False)
