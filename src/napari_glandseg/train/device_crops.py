"""Training crops made on the training device: the samples kept there as tensors, each batch cut,
scaled, cut by glass (``cut_edges``), turned, stain-jittered and blurred there, its targets made there.

On a GPU the CPU-side loader (``data.CropDataset``: numpy, PIL, scipy in worker processes) is what
bounds a small model's training: the last H200 run trained at 95–127 tiles/s while the forward ran
at 644. Here the only host work per batch is drawing its random numbers. Batches are a pure
function of (seed, step, rank), as ``batch_stream``'s are, so a resumed run continues exactly.

The same crop placement, augmentations and targets as ``data.CropDataset`` (``device_targets``
is tested against ``make_targets``), drawn from another random stream, with two differences:
pixels nobody reviewed take the label of the nearest reviewed pixel of the whole image
(``make_targets`` looks within the crop), and the scale jitter resamples with
``torch.nn.functional.interpolate``, not PIL.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from skimage.color.colorconv import hed_from_rgb, rgb_from_hed

from napari_glandseg.train.data import (
    IGNORE,
    SEPARATION,
    GlassCut,
    Sample,
    check_cut_share,
    crop_corner,
    reviewed_labels,
    weighted_index,
)

#: skimage's floor for optical densities (``separate_stains``, ``combine_stains``)
_LOG_FLOOR = math.log(1e-6)


def device_targets(labels: torch.Tensor, valid: torch.Tensor, border_px: int = 2, separation_px: int = 0) -> torch.Tensor:
    """``make_targets`` for a batch on any device: N×H×W instance labels and validity → N×H×W
    uint8 classes (0 background, 1 gland, 2 border, + ``SEPARATION`` near a second gland, IGNORE)."""
    lab = labels.float().unsqueeze(1)  # ids stay exact in float32 below 2**24
    fg = labels > 0

    def window_max(x: torch.Tensor, radius: int) -> torch.Tensor:
        return F.max_pool2d(x, 2 * radius + 1, stride=1, padding=radius).squeeze(1)

    target = fg.to(torch.uint8)
    hi, lo = window_max(lab, border_px), -window_max(-lab, border_px)
    target[fg & ((lo != labels) | (hi != labels))] = 2
    if separation_px > 0:
        none = float(2**24)  # no gland: above every label, so the minimum finds glands only
        lowest = -window_max(-torch.where(fg.unsqueeze(1), lab, torch.full_like(lab, none)), separation_px)
        highest = window_max(lab, separation_px)
        target[(lowest != none) & (lowest != highest)] += SEPARATION
    target[~valid] = IGNORE
    return target


def hed_jitter_batch(images: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``data.hed_jitter`` for N×H×W×3 uint8 images with per-image N×3 ``alpha`` and ``beta``."""
    to_hed = torch.as_tensor(hed_from_rgb, dtype=torch.float32, device=images.device)
    to_rgb = torch.as_tensor(rgb_from_hed, dtype=torch.float32, device=images.device)
    rgb = (images.float() / 255.0).clamp_min(1e-6)
    hed = ((torch.log(rgb) / _LOG_FLOOR) @ to_hed).clamp_min(0)
    hed = hed * alpha[:, None, None, :] + beta[:, None, None, :]
    out = torch.exp((hed * _LOG_FLOOR) @ to_rgb).clamp(0, 1)
    return (out * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """An H×W×3 uint8 image blurred in its plane (scipy's truncation at 4 σ, mirrored edges)."""
    radius = max(1, int(4.0 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=image.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
    planes = image.permute(2, 0, 1).unsqueeze(0).float()
    planes = F.conv2d(_mirrored(planes, radius, -1), kernel, groups=3)
    planes = F.conv2d(_mirrored(planes, radius, -2), kernel.transpose(2, 3), groups=3)
    return planes.squeeze(0).permute(1, 2, 0).clamp(0, 255).to(torch.uint8)


def _mirrored(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """``x`` padded by ``radius`` along ``dim`` with its edge mirrored, edge pixel included (scipy's
    "reflect"; torch's "reflect" leaves the edge pixel out)."""
    size = x.shape[dim]
    head = x.narrow(dim, 0, min(radius, size)).flip(dim)
    tail = x.narrow(dim, size - min(radius, size), min(radius, size)).flip(dim)
    return torch.cat([head, x, tail], dim)


class DeviceCrops:
    """Random augmented crops of ``samples`` made on ``device`` (see the module's docstring)."""

    def __init__(self, samples: list[Sample], crop_px: int, device: torch.device | str, *, seed: int = 0,
                 augment: bool = True, border_px: int = 2, scale_jitter: float = 0.2, pad_background: bool = False,
                 separation_px: int = 0, cut_edges: float = 0.0):
        if not samples:
            raise ValueError("no training samples")
        self.cut_edges = check_cut_share(cut_edges)
        self.crop_px, self.device, self.seed = crop_px, torch.device(device), seed
        self.border_px, self.scale_jitter, self.separation_px = border_px, scale_jitter, separation_px
        self.pad_background, self.augment = pad_background, augment
        self.weights = np.array([s.weight for s in samples], dtype=float)
        self.tumor = [s.tumor for s in samples]
        self.shapes = [s.labels.shape for s in samples]
        # the largest window a crop reads, and how far it may hang over an edge (``data._random_crop``)
        self.max_src = max(8, math.ceil(crop_px * math.exp(scale_jitter))) + 1
        self.margin = self.max_src // 2 + 1
        self.images, self.labels, self.valid = [], [], []
        for s in samples:
            labels = reviewed_labels(s.labels, s.valid).astype(np.int32)
            pad = ((self.margin, self.margin + self.max_src), (self.margin, self.margin + self.max_src))
            self.images.append(self._put(np.pad(s.image, pad + ((0, 0),), constant_values=255)))
            # beyond the edge: background, or (ignored) the nearest label, as make_targets fills
            # the ignored pixels of a CPU crop, so that a gland cut by the edge has no border there
            self.labels.append(self._put(np.pad(labels, pad) if pad_background else np.pad(labels, pad, mode="edge")))
            self.valid.append(self._put(np.pad(s.valid, pad, constant_values=pad_background)))

    def _put(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def batch(self, step: int, batch: int, rank: int = 0, world: int = 1):
        """(images N×H×W×3 uint8, targets N×H×W int64, tumor N int64), all on the device: the
        batch ``rank`` trains on at ``step``."""
        rng = np.random.default_rng([self.seed, step, rank, world])
        images, labels, valid, tumor, jitter, blur = [], [], [], [], [], []
        for _ in range(batch):
            i = weighted_index(self.weights, rng)
            scale = float(np.exp(rng.uniform(-self.scale_jitter, self.scale_jitter))) if self.augment else 1.0
            size = max(8, round(self.crop_px / scale))
            y, x = crop_corner(self.shapes[i], size, rng, self.pad_background)
            window = (slice(self.margin + y, self.margin + y + size), slice(self.margin + x, self.margin + x + size))
            image, lab, ok = self._resized(self.images[i][window], self.labels[i][window], self.valid[i][window])
            if self.cut_edges and rng.random() < self.cut_edges:  # no draw when off, as the CPU loader
                image, lab, ok = self._cut(image, lab, ok, GlassCut.draw(tuple(lab.shape), rng))
            if self.augment:
                k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
                image, lab, ok = (_turn(a, k, flip) for a in (image, lab, ok))
                jitter.append((rng.random() < 0.8, rng.uniform(0.95, 1.05, 3), rng.uniform(-0.02, 0.02, 3)))
                blur.append(rng.uniform(0.3, 1.2) if rng.random() < 0.2 else 0.0)
            else:
                jitter.append((False, np.ones(3), np.zeros(3)))
                blur.append(0.0)
            images.append(image)
            labels.append(lab)
            valid.append(ok)
            tumor.append(self.tumor[i])
        images = self._stain_and_blur(torch.stack(images), jitter, blur)
        targets = device_targets(torch.stack(labels), torch.stack(valid), self.border_px, self.separation_px)
        return images, targets.long(), torch.tensor(tumor, dtype=torch.long, device=self.device)

    def stream(self, start_step: int, batch: int, rank: int = 0, world: int = 1) -> Iterator[tuple]:
        """Batches from ``start_step`` on, as ``common.batch_stream`` gives them."""
        step = start_step
        while True:
            yield self.batch(step, batch, rank, world)
            step += 1

    def _resized(self, image: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor):
        if image.shape[0] == self.crop_px:
            return image, labels, valid
        out = (self.crop_px, self.crop_px)
        planes = image.permute(2, 0, 1).unsqueeze(0).float()
        shrink = image.shape[0] > self.crop_px
        image = F.interpolate(planes, size=out, mode="bilinear", align_corners=False, antialias=shrink)
        image = image.squeeze(0).permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)
        nearest = [F.interpolate(a[None, None].float(), size=out, mode="nearest-exact")[0, 0] for a in (labels, valid)]
        return image, nearest[0].to(torch.int32), nearest[1] > 0

    def _cut(self, image: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, cut: GlassCut):
        """``data.cut_by_glass`` on the device, for a cut drawn on the host."""
        h, w = labels.shape
        rows = torch.arange(h, device=self.device, dtype=torch.float64)[:, None]
        glass = cut.beyond(rows, torch.arange(w, device=self.device, dtype=torch.float64)[None])
        tone = torch.tensor(cut.tone, dtype=image.dtype, device=self.device)
        return torch.where(glass[..., None], tone, image), torch.where(glass, 0, labels), valid | glass

    def _stain_and_blur(self, images: torch.Tensor, jitter: list, blur: list[float]) -> torch.Tensor:
        if any(j[0] for j in jitter):  # decided on the host: no wait on the device
            chosen = torch.tensor([j[0] for j in jitter], device=self.device)
            alpha = torch.tensor(np.array([j[1] for j in jitter]), dtype=torch.float32, device=self.device)
            beta = torch.tensor(np.array([j[2] for j in jitter]), dtype=torch.float32, device=self.device)
            images = torch.where(chosen[:, None, None, None], hed_jitter_batch(images, alpha, beta), images)
        for n, sigma in enumerate(blur):
            if sigma:
                images[n] = gaussian_blur(images[n], sigma)
        return images


def _turn(a: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    a = torch.rot90(a, k, dims=(0, 1))
    return torch.flip(a, dims=(1,)) if flip else a
