"""Segment one image (``segment_image``) or one box of a slide (``segment_region``).

Both resample to the model's µm/px, run overlapping tiles, blend, and turn the blended
probabilities into gland instances. A slide box is read with a context margin so that glands
at its edge are segmented with their surroundings, then cropped back to the box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from napari_glandseg.errors import GlandsegError, Progress
from napari_glandseg.inference.confidence import foreground as gland_or_border
from napari_glandseg.inference.confidence import gland_confidence
from napari_glandseg.inference.postprocess import probabilities_to_instances
from napari_glandseg.inference.predictor import Predictor
from napari_glandseg.inference.refine import refine_to_grid, refined_scale
from napari_glandseg.inference.tiling import predict_tiled
from napari_glandseg.labels._objects import compact_labels
from napari_glandseg.slide.on_tissue import drop_off_tissue, glass_is_background, set_background
from napari_glandseg.slide.placement import GridPlacement
from napari_glandseg.slide.resample import read_on_grid, resize_labels, resize_rgb, with_mpp

#: Relative µm/px difference below which an image is used as is (no resampling).
MPP_TOLERANCE = 0.01


@dataclass
class RegionResult:
    """Labels of a slide box at the model's µm/px, and where they sit on the slide.

    Label pixel (i, j) covers level-0 px [y0 + i*scale, y0 + (i+1)*scale) (same for x); in
    napari's pixel-centre convention (the slide layer has translate 0) its centre is at
    ``translate + (i, j) * scale`` with ``translate = y0 + 0.5*scale - 0.5`` (``placement``:
    the same as a ``slide.placement.GridPlacement``).
    """

    labels: np.ndarray
    scale: float
    translate: tuple[float, float]
    mpp: float
    bbox0: tuple[int, int, int, int]
    probs: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    confidence: dict[int, float] = field(default_factory=dict)  # per gland (``inference.confidence``)

    @property
    def placement(self) -> GridPlacement:
        """Where the labels sit on the slide (scale, translate, shape)."""
        return GridPlacement(self.scale, self.translate, self.labels.shape[:2])


def get_predictor(
    model: Any = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    predictor: Predictor | None = None,
    tta: bool = False,
    precision: str = "auto",
    threads: int | None = None,
    organ: str | None = None,
) -> Predictor:
    """A Predictor for ``model`` (a module, a preset name or checkpoint path, or None: the default);
    ``tta``: probabilities averaged over flips and quarter turns (8× the model time);
    ``precision`` auto|fp32|bf16, CPU ``threads`` and ``organ`` as :class:`Predictor` takes them."""
    if predictor is not None:
        return predictor
    if isinstance(model, Predictor):
        return model
    if model is None or isinstance(model, str | bytes) or hasattr(model, "__fspath__"):
        from napari_glandseg.model import load_model

        try:
            model = load_model(model, device=device)
        except ValueError as exc:
            raise GlandsegError(str(exc)) from exc
    from napari_glandseg.model.tta import with_tta

    return Predictor(with_tta(model, tta), device=device, batch_size=batch_size, precision=precision, threads=threads,
                     organ=organ)


def check_rgb(rgb: np.ndarray, what: str = "image") -> np.ndarray:
    """H×W×3 uint8 (RGBA loses alpha, grey is repeated); anything else is a GlandsegError."""
    a = np.asarray(rgb)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise GlandsegError(f"{what}: expected an H×W×3 RGB image, got shape {a.shape}")
    if a.dtype != np.uint8:
        raise GlandsegError(f"{what}: expected uint8 pixels (0-255), got {a.dtype}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise GlandsegError(f"{what}: the image is empty ({a.shape[0]}×{a.shape[1]})")
    return np.ascontiguousarray(a[..., :3])


def probabilities(
    rgb: np.ndarray, predictor: Predictor, *, progress: Progress | None = None, cancel: Any = None
) -> np.ndarray:
    """Blended C×H×W probabilities of an image already at the model's µm/px."""
    card = predictor.card
    return predict_tiled(
        rgb, predictor.predict, n_classes=predictor.n_classes, tile_px=card.tile_px,
        overlap_px=card.overlap_px, batch_size=predictor.batch_size, progress=progress, cancel=cancel,
    )


def segment_image(
    rgb: np.ndarray,
    model: Any = None,
    *,
    mpp: float | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    cancel: Any = None,
    batch_size: int | None = None,
    predictor: Predictor | None = None,
) -> np.ndarray:
    """Gland instance labels (int32, the input's H×W) of an RGB image at ``mpp`` µm/px.

    ``mpp`` None means the image is already at the model's µm/px.
    """
    rgb = check_rgb(rgb)
    pred = get_predictor(model, device, batch_size, predictor)
    card = pred.card
    if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
        raise GlandsegError(f"mpp must be a finite positive number of µm per pixel, got {mpp!r}")
    h, w = rgb.shape[:2]
    img = rgb
    if mpp is not None and abs(mpp / card.mpp - 1) > MPP_TOLERANCE:
        f = mpp / card.mpp
        img = resize_rgb(rgb, max(1, round(h * f)), max(1, round(w * f)))
    probs = probabilities(img, pred, progress=progress, cancel=cancel)
    labels = probabilities_to_instances(probs, mpp=card.mpp, params=card.postprocess)
    return resize_labels(labels, h, w)


def segment_region(
    slide: Any,
    bbox0: tuple[float, float, float, float],
    *,
    model: Any = None,
    device: str | torch.device | None = None,
    mpp: float | None = None,
    progress: Progress | None = None,
    cancel: Any = None,
    batch_size: int | None = None,
    return_probs: bool = False,
    predictor: Predictor | None = None,
    tissue_only: bool = True,
    display_downsample: float | None = None,
) -> RegionResult:
    """Segment the level-0 box ``bbox0 = (y, x, h, w)`` of ``slide`` at the model's µm/px.

    ``mpp`` overrides the slide's µm/px (needed when the file does not say it). ``tissue_only``
    makes glass background and drops glands wholly off the slide's tissue mask (glass, dust), as
    whole-slide runs do (``on_tissue``).
    ``display_downsample`` (level-0 px per pixel of the level on screen): when finer than the
    model's grid, the labels come on that grid (at most 4× finer), their outlines following the
    upsampled probabilities (``refine.refine_to_grid``) instead of model-pixel staircases.
    """
    slide = with_mpp(slide, mpp)
    y0, x0, bh, bw = (float(v) for v in bbox0)
    if bh <= 0 or bw <= 0:
        raise GlandsegError(f"{slide.path}: empty region {tuple(bbox0)} (y, x, h, w in level-0 px)")
    pred = get_predictor(model, device, batch_size, predictor)
    card = pred.card
    f = card.mpp / slide.mpp  # level-0 px per label px
    grid = GridPlacement.for_box((y0, x0, bh, bw), f)
    out_h, out_w = grid.shape
    m = card.overlap_px  # context margin in label px
    # the read box is whole label pixels around the box
    rgb = read_on_grid(slide, (y0 - m * f, x0 - m * f), (out_h + 2 * m, out_w + 2 * m), f, card.mpp)
    probs = probabilities(rgb, pred, progress=progress, cancel=cancel)
    off_slide_is_background(probs, slide.shape, (y0 - m * f, x0 - m * f), f)
    if tissue_only:
        glass_is_background(probs, slide, (y0 - m * f, x0 - m * f), f, rgb)
    labels = probabilities_to_instances(probs, mpp=card.mpp, params=card.postprocess)
    labels = labels[m : m + out_h, m : m + out_w]
    if tissue_only:
        labels = drop_off_tissue(labels, slide, (y0, x0), f)
    labels = compact_labels(labels)[0]  # ids 1..n (int32) in their order
    confidence = gland_confidence(labels, probs[:, m : m + out_h, m : m + out_w])
    fine = refined_scale(f, display_downsample, (bh, bw))
    if fine is not None:
        grid = GridPlacement.for_box((y0, x0, bh, bw), fine)
        foreground = gland_or_border(probs[:, m : m + out_h, m : m + out_w])[0]
        threshold = float(card.postprocess.get("gland_threshold", 0.5))
        labels = refine_to_grid(labels, foreground, grid.shape, threshold=threshold)
    return RegionResult(
        labels=labels,
        scale=grid.scale,
        translate=grid.translate,
        mpp=float(slide.mpp * grid.scale),
        bbox0=(int(round(y0)), int(round(x0)), int(round(bh)), int(round(bw))),
        probs=np.ascontiguousarray(probs[:, m : m + out_h, m : m + out_w]) if return_probs else None,
        info={"model": card.name, "slide_mpp": slide.mpp, **pred.info()},
        confidence=confidence,
    )


def off_slide_is_background(probs: np.ndarray, shape0: tuple[int, int], origin0: tuple[float, float],
                            scale: float) -> None:
    """Set the pixels of ``probs`` (C×H×W; pixel i covers level-0 ``origin0 + [i, i+1) * scale``)
    whose centres lie off the slide to certain background, in place.

    The context read around a box near the slide's edge is white fill, not tissue: a gland
    must not extend into it and pass the minimum area on pixels that do not exist.
    """
    _, h, w = probs.shape
    ys = origin0[0] + (np.arange(h) + 0.5) * scale
    xs = origin0[1] + (np.arange(w) + 0.5) * scale
    set_background(probs, ~(((ys >= 0) & (ys < shape0[0]))[:, None] & ((xs >= 0) & (xs < shape0[1]))[None, :]))

