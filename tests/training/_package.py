"""Half-reviewed training data for the "unreviewed pixels do not matter" tests: loss and
gradients of one fine-tuning batch, and a training package exported from a GlaS image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from napari_glandseg.train import supervised
from napari_glandseg.train.data import IGNORE, CropDataset, Sample, to_instances
from napari_glandseg.train.loop import batch_at
from napari_glandseg.train.losses import segmentation_loss, tumor_loss


def garbage_labels(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Random blobs with random ids: what an unreviewed region may hold."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 6, size=(max(1, shape[0] // 16), max(1, shape[1] // 16)))
    return np.asarray(Image.fromarray(small.astype(np.int32), mode="I").resize(shape[::-1], Image.NEAREST))


def half_reviewed(image: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, valid): the left half keeps the true labels and is valid, the right half is
    garbage and not valid."""
    h, w = labels.shape
    valid = np.zeros((h, w), bool)
    valid[:, : w // 2] = True
    mixed = np.where(valid, labels, garbage_labels((h, w), seed) + labels.max() * (seed > 0))
    return mixed.astype(np.int32), valid


def loss_and_grads(samples: list[Sample], crop_px: int = 128, batch: int = 3) -> dict:
    """One fine-tuning batch (supervised.py's crops, loss and model) → loss, grads, ignored share."""
    cfg = supervised.FinetuneConfig(data=["-"], model="glandseg_tiny", crop_px=crop_px, amp=False)
    torch.manual_seed(0)
    model = supervised.build_model(cfg)
    images, targets, tumor = batch_at(CropDataset(samples, crop_px, length=100, seed=0), 0, batch, 0, 1)
    out = model(model.normalize(images), return_all=True)
    loss, _ = segmentation_loss(out, targets, dice_weight=cfg.dice_weight, deep_weights=tuple(cfg.deep_weights))
    loss = loss + cfg.tumor_weight * tumor_loss(out, tumor)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {"loss": float(loss), "grads": grads, "ignored_fraction": float((targets == IGNORE).float().mean())}


def glas_image(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    path = sorted((folder / "images").glob("*.png"))[0]
    image = np.asarray(Image.open(path).convert("RGB"))
    return image, to_instances(np.asarray(Image.open(folder / "masks" / path.name)))


def _read(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    return np.asarray(Image.open(path))


def _write(path: Path, arr: np.ndarray) -> None:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, arr)
    else:
        Image.fromarray(arr).save(path)


def export_half_reviewed_package(folder: Path, out: Path, seed: int) -> Path:
    """Export the first GlaS image of ``folder`` (all reviewed) with the package API, then make
    the right half of every tile unreviewed (valid = 0) and fill its labels with garbage."""
    from napari_glandseg.labels.export import export_training_package
    from napari_glandseg.slide import open_slide

    path = sorted((folder / "images").glob("*.png"))[0]
    _, labels = glas_image(folder)
    h, w = labels.shape
    slide = open_slide(path, mpp=0.62)
    regions = [{"bounds": [0, 0, h, w], "time": "2025-01-01T00:00:00", "model": "test"}]
    export_training_package(out, slide, labels, regions, mpp=1.24, model_name="test")
    for valid_path in sorted((out / "valid").iterdir()):
        mask_path = next((out / "masks").glob(valid_path.stem + ".*"))
        valid, mask = _read(valid_path), _read(mask_path)
        cut = valid.shape[1] // 2
        valid = valid.copy()
        valid[:, cut:] = 0
        mask = mask.copy()
        mask[:, cut:] = garbage_labels((mask.shape[0], mask.shape[1] - cut), seed).astype(mask.dtype) * (seed + 1)
        _write(valid_path, valid)
        _write(mask_path, mask)
    return out
