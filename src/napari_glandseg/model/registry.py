"""Presets by name, timm-style: ``list_models``, ``create_model``, ``preset_card``.

What a name means (preset, user model, checkpoint) is decided in ``model.resolve`` alone;
``load_model`` lives there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from napari_glandseg.model.card import ModelCard
from napari_glandseg.model.network import DualSwinUNet, build_network

log = logging.getLogger(__name__)

_PRESETS: dict[str, Callable[[], dict[str, Any]]] = {}
DEFAULT_MODEL = "glandseg_small"


def register_preset(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Register a preset: a function returning the architecture arguments and card fields."""
    _PRESETS[fn.__name__] = fn
    return fn


@register_preset
def glandseg_small() -> dict[str, Any]:
    """The default (9.8 M parameters, CPU-friendly): Swin embed 48 (2-2-2-2) + patch-8 Swin embed 48;
    its bundled weights are the multi-organ (colon + prostate) model."""
    return {
        "arch_args": {
            "enc_a": {"patch_size": 4, "embed_dim": 48, "depths": [2, 2, 2, 2], "num_heads": [3, 6, 12, 24], "window_size": 8},
            "enc_b": {"patch_size": 8, "embed_dim": 48, "depths": [2, 2, 2], "num_heads": [3, 6, 12], "window_size": 8},
            "stem_channels": [16, 32],
            "fusion_heads": 8,
            "img_px": 256,
        },
        "card": {"mpp": 1.24, "tile_px": 384, "overlap_px": 64},
    }


@register_preset
def glandseg_colon() -> dict[str, Any]:
    """glandseg_small's architecture; its bundled weights were trained on colon (GlaS) alone — the
    better choice on colon (GlaS testA object F1 0.848 against the multi-organ default's 0.802),
    not for prostate."""
    return glandseg_small()


@register_preset
def glandseg_unsupervised() -> dict[str, Any]:
    """glandseg_small's architecture; its bundled weights saw no labels at all: SMIT-pretrained
    encoders, then trained on gland proposals (``glandseg propose``) of unlabeled images — a
    start for tissue no labelled model fits, to correct and fine-tune."""
    return glandseg_small()


@register_preset
def glandseg_guided() -> dict[str, Any]:
    """Click-to-segment: glandseg_small's architecture on RGB + inclusion + exclusion maps + the
    previous result (refining clicks), predicting the one gland the guidance points at
    (background / gland)."""
    small = glandseg_small()
    return {
        "arch_args": {**small["arch_args"], "in_chans": 6, "num_classes": 2},
        "card": {**small["card"], "tile_px": 384, "overlap_px": 0, "classes": ("background", "gland")},
    }


@register_preset
def glandseg_base() -> dict[str, Any]:
    """Paper scale (for a GPU): Swin-B (patch 4) + Swin-T-width patch-8 path."""
    return {
        "arch_args": {
            "enc_a": {"patch_size": 4, "embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32], "window_size": 8},
            "enc_b": {"patch_size": 8, "embed_dim": 96, "depths": [2, 2, 6], "num_heads": [3, 6, 12], "window_size": 8},
            "stem_channels": [32, 64],
            "fusion_heads": 16,
            "img_px": 512,
            "drop_path_rate": 0.2,
        },
        "card": {"mpp": 0.62, "tile_px": 512, "overlap_px": 64},
    }


@register_preset
def glandseg_tiny() -> dict[str, Any]:
    """For tests: a few hundred thousand parameters, 64-128 px inputs."""
    return {
        "arch_args": {
            "enc_a": {"patch_size": 4, "embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 4, 8], "window_size": 4},
            "enc_b": {"patch_size": 8, "embed_dim": 16, "depths": [1, 1, 1], "num_heads": [1, 2, 4], "window_size": 4},
            "stem_channels": [8, 8],
            "fusion_heads": 4,
            "img_px": 64,
        },
        "card": {"mpp": 1.24, "tile_px": 128, "overlap_px": 32},
    }


def list_models() -> list[str]:
    """Names of the registered presets."""
    return sorted(_PRESETS)


def create_model(name: str = DEFAULT_MODEL, **overrides: Any) -> DualSwinUNet:
    """A freshly initialised model of preset ``name``.

    ``overrides`` may set architecture arguments (``num_classes``, ``img_px``, ``drop_path_rate``,
    ``enc_a``…) or card fields (``mpp``, ``tile_px``, ``overlap_px``…).
    """
    card = preset_card(name, **overrides)
    model = build_network(card.arch_args)
    model.card = card
    return model


def preset_card(name: str, **overrides: Any) -> ModelCard:
    """The card of preset ``name`` (with ``create_model``'s overrides), without building the network."""
    if name not in _PRESETS:
        raise ValueError(f"unknown model preset {name!r}; available: {', '.join(list_models())}")
    preset = _PRESETS[name]()
    arch_args, card_fields = dict(preset["arch_args"]), dict(preset["card"])
    card_names = set(ModelCard.__dataclass_fields__)
    for key, value in overrides.items():
        (card_fields if key in card_names else arch_args)[key] = value
    num_classes = arch_args.get("num_classes", 3)
    card_fields.setdefault("classes", ("background", "gland", "border")[:num_classes])
    card_fields.setdefault("name", name)
    return ModelCard(arch_args=arch_args, **card_fields)


def bundled_weights_dir() -> Path:
    return Path(str(resources.files("napari_glandseg.model") / "weights"))
