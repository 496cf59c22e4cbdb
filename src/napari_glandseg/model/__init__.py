"""The gland model: dual-path Swin U-Net, presets, checkpoints, device choice."""

from napari_glandseg.model.card import ModelCard
from napari_glandseg.model.checkpoint import load_checkpoint, read_card, save_checkpoint
from napari_glandseg.model.device import pick_device
from napari_glandseg.model.network import DualSwinUNet, EncoderSpec
from napari_glandseg.model.precision import resolve_precision
from napari_glandseg.model.registry import (
    DEFAULT_MODEL,
    create_model,
    list_models,
    preset_card,
    register_preset,
)
from napari_glandseg.model.resolve import ModelSource, load_model, resolve

__all__ = [
    "DEFAULT_MODEL",
    "DualSwinUNet",
    "EncoderSpec",
    "ModelCard",
    "ModelSource",
    "resolve_precision",
    "create_model",
    "list_models",
    "load_checkpoint",
    "load_model",
    "pick_device",
    "preset_card",
    "read_card",
    "register_preset",
    "resolve",
    "save_checkpoint",
]
