"""Checkpoints: ``NAME.safetensors`` (weights) + ``NAME.json`` (model card). Never unpickled.

A card and a weights file come from anywhere: before the network is built, its shapes are
worked out on torch's "meta" device (nothing allocated) and checked against the weights file's
header, and the memory its buffers would take is bounded; only then is anything allocated.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from napari_glandseg._atomic import atomic_path, open_regular, read_bounded, write_text_atomic
from napari_glandseg.errors import GlandsegError
from napari_glandseg.model.card import ModelCard
from napari_glandseg.model.network import DualSwinUNet, build_network

#: What a checkpoint file is called: NAME.safetensors (weights) + NAME.json (card).
CHECKPOINT_SUFFIXES = (".safetensors", ".json")
#: Pickled checkpoints: recognised as checkpoint files, refused (they can run code).
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl")
MAX_CARD_BYTES = 1 << 20
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit
MAX_BUFFER_BYTES = 2 << 30  # the non-weight tensors (attention masks, indices) a network may hold
FOLDER_WEIGHTS = "model.safetensors"  # a model folder (what ``glandseg finetune`` writes)


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, card) paths for a checkpoint given by its stem, weights or card path, or by a
    model folder holding ``model.safetensors`` + ``model.json``."""
    path = Path(path)
    if path.suffix not in CHECKPOINT_SUFFIXES and path.is_dir():
        path = path / FOLDER_WEIGHTS
    stem = path.with_suffix("") if path.suffix in CHECKPOINT_SUFFIXES else path
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
    try:
        with atomic_path(weights_path) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "glandseg_card": card.name})
    except SafetensorError as exc:  # the Rust writer's I/O errors (a full disk, a size limit)
        raise GlandsegError(f"{weights_path}: cannot write the weights ({str(exc).split(': ', 1)[-1]})") from exc
    write_text_atomic(card_path, card.to_json() + "\n")
    return weights_path, card_path


def refuse_pickled(path: str | Path) -> None:
    """A pickled checkpoint is never loaded: say how to convert it."""
    if Path(path).suffix in PICKLE_SUFFIXES:
        raise GlandsegError(
            f"{path}: pickled checkpoints can run arbitrary code and are not loaded; convert it "
            "once, in a trusted environment, with training/convert_checkpoint.py (which uses "
            "torch.load(weights_only=True)) to NAME.safetensors + NAME.json"
        )


def read_card(path: str | Path) -> ModelCard:
    """The model card of a checkpoint (its JSON only; the weights are not read)."""
    refuse_pickled(path)
    _, card_path = checkpoint_paths(path)
    if not card_path.exists():
        raise GlandsegError(f"{card_path}: model card not found (a checkpoint is NAME.safetensors + NAME.json)")
    raw = read_bounded(card_path, MAX_CARD_BYTES, "a model card (a JSON file)")
    try:
        return ModelCard.from_json(raw.decode("utf-8"))
    except RecursionError as exc:
        raise GlandsegError(f"{card_path}: not a valid model card: nested too deep") from exc
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise GlandsegError(f"{card_path}: not a valid model card: {str(exc)[:500]}") from exc


def load_checkpoint(path: str | Path, *, strict: bool = True) -> DualSwinUNet:
    """Build the model its card describes and load the safetensors weights into it."""
    path = Path(path)
    refuse_pickled(path)
    weights_path, _ = checkpoint_paths(path)
    card = read_card(path)
    if not weights_path.exists():
        raise GlandsegError(f"{weights_path}: weights file not found")
    check_fits(card, weights_header(weights_path), source=weights_path, strict=strict)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise GlandsegError(f"{weights_path}: not a readable safetensors file: {exc}") from exc
    model = build_network(card.arch_args)
    model.card = card
    load_state(model, state, source=weights_path, strict=strict)
    return model


def _check_values(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], source: Path | str) -> None:
    """Weights of floating-point tensors must be floating point and finite: a NaN or an int8 cast
    would load and score 0, silently."""
    floats = [k for k in state if k in own and own[k].is_floating_point()]
    for kind, bad in (("not floating point", [k for k in floats if not state[k].is_floating_point()]),
                      ("not finite (NaN or inf)", [k for k in floats if state[k].is_floating_point()
                                                   and not bool(torch.isfinite(state[k]).all())])):
        if bad:
            raise GlandsegError(f"{source}: weights {kind}: {', '.join(bad[:5])}{' …' if len(bad) > 5 else ''} "
                                f"({len(bad)} of {len(state)} tensors); the file is damaged")


def weights_header(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensor shapes a safetensors file declares (its JSON header only; nothing else read)."""
    try:
        with open_regular(path) as f:
            head = f.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            raw = f.read(n) if 0 < n <= MAX_HEADER_BYTES else b""
        header = json.loads(raw.decode("utf-8")) if len(raw) == n else None
        shapes = {k: tuple(int(d) for d in v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (OSError, GlandsegError) as exc:
        raise GlandsegError(f"{path}: cannot read the weights ({getattr(exc, 'strerror', None) or exc})") from exc
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise GlandsegError(f"{path}: not a readable safetensors file (bad header)") from exc
    return shapes


def check_fits(card: ModelCard, header: dict[str, tuple[int, ...]], *, source: Path, strict: bool = True) -> None:
    """Build the card's network on the meta device (no memory) and check it against the weights'
    shapes and the buffer budget, before anything real is allocated."""
    try:
        with torch.device("meta"):
            meta = build_network(card.arch_args)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise GlandsegError(f"{source}: the card's architecture cannot be built: {str(exc)[:300]}") from exc
    buffers = sum(b.numel() * b.element_size() for b in meta.buffers())
    if buffers > MAX_BUFFER_BYTES:
        raise GlandsegError(f"{source}: the card describes a network whose buffers need {buffers / 2**30:.1f} GiB "
                            f"(more than {MAX_BUFFER_BYTES / 2**30:.0f} GiB); the card is corrupt")
    problems = _mismatch({k: tuple(v.shape) for k, v in meta.state_dict().items()}, header, strict)
    if problems:
        raise GlandsegError(f"{source}: weights do not fit the model card: {problems}")


def _mismatch(own: dict[str, Any], theirs: dict[str, Any], strict: bool) -> str:
    """What does not fit between the model's shapes and a checkpoint's ('' when all fits)."""
    mismatched = [f"{k}: checkpoint {tuple(v)} vs model {tuple(own[k])}"
                  for k, v in theirs.items() if k in own and tuple(own[k]) != tuple(v)]
    missing = sorted(set(own) - set(theirs))
    unexpected = sorted(set(theirs) - set(own))
    problems = []
    if mismatched:
        problems.append("shape mismatch: " + "; ".join(mismatched[:10]))
    if strict and missing:
        problems.append(f"missing keys: {missing[:10]}{' …' if len(missing) > 10 else ''}")
    if strict and unexpected:
        problems.append(f"unexpected keys: {unexpected[:10]}{' …' if len(unexpected) > 10 else ''}")
    return " | ".join(problems)


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: Path | str, strict: bool = True) -> None:
    """Copy ``state`` into ``model``, naming the keys that do not fit."""
    own = model.state_dict()
    problems = _mismatch({k: v.shape for k, v in own.items()}, {k: v.shape for k, v in state.items()}, strict)
    if problems:
        raise GlandsegError(f"{source}: weights do not fit the model: " + problems)
    _check_values(state, own, source)
    fitted = {k: v.to(own[k].dtype) for k, v in state.items() if k in own}
    model.load_state_dict(fitted, strict=False)
