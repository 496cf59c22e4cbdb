"""Per-image pixel clustering by backpropagation: the first step of Selective Proposal Mining.

A small network (3 conv layers) is trained on ONE image, from scratch, with the self-supervised
objective of "unsupervised image segmentation by backpropagation" (Kanezaki 2018; Kim et al.
2020), which MSSG's SPM builds on: each pixel's argmax over ``n_clusters`` responses is its
pseudo-label, the responses are pushed towards it (cross-entropy), and a spatial-continuity term
(L1 of the responses' horizontal and vertical differences) makes neighbours agree. The output's
batch-norm keeps every cluster alive, so the clusters settle on the image's own tissue classes
(lumen, epithelium, stroma, nuclei, glass) without any label.

Each step trains on a few random crops (the cost per step does not grow with the image); the
whole image is clustered once at the end. Seeded: the same image gives the same clusters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from napari_glandseg.errors import Cancelled, GlandsegError, Progress


@dataclass(frozen=True)
class ClusterConfig:
    """How the per-image network is built and trained (sizes in working px)."""

    n_clusters: int = 5
    channels: int = 24
    iterations: int = 60
    crop_px: int = 128
    crops_per_step: int = 2
    learning_rate: float = 0.02
    continuity_weight: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {"n_clusters": 2, "channels": 1, "iterations": 1, "crop_px": 8, "crops_per_step": 1}
        for name, low in checks.items():
            if int(getattr(self, name)) < low:
                raise GlandsegError(f"ClusterConfig.{name} must be at least {low}, got {getattr(self, name)}")
        if not (self.learning_rate > 0 and self.continuity_weight >= 0):
            raise GlandsegError("ClusterConfig: learning_rate must be > 0 and continuity_weight >= 0")


class ClusterNet(nn.Module):
    """conv3×3 → conv3×3 → conv1×1 (each with batch-norm): pixel features → cluster responses."""

    def __init__(self, in_channels: int, channels: int, n_clusters: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, padding_mode="reflect"),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, n_clusters, 1),
            nn.BatchNorm2d(n_clusters),  # keeps every cluster's response alive: no collapse to one
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def pixel_features(rgb: np.ndarray) -> np.ndarray:
    """C×H×W float32 features of an H×W×3 uint8 image: RGB and the haematoxylin / eosin optical
    densities (stain colour is what separates nuclei, cytoplasm and lumen), each standardised
    over the image so that a paler or darker scan clusters alike."""
    from skimage.color import rgb2hed

    rgb_f = rgb.astype(np.float32) / 255.0
    hed = rgb2hed(rgb).astype(np.float32)[..., :2]
    feats = np.concatenate([rgb_f, hed], axis=2).transpose(2, 0, 1)
    mean = feats.reshape(feats.shape[0], -1).mean(1)[:, None, None]
    std = feats.reshape(feats.shape[0], -1).std(1)[:, None, None]
    return np.ascontiguousarray((feats - mean) / np.maximum(std, 1e-6), dtype=np.float32)


def continuity_loss(resp: torch.Tensor) -> torch.Tensor:
    """Mean L1 difference of the responses between vertical and horizontal neighbours."""
    dy = (resp[:, :, 1:, :] - resp[:, :, :-1, :]).abs().mean()
    dx = (resp[:, :, :, 1:] - resp[:, :, :, :-1]).abs().mean()
    return dy + dx


def cluster_image(
    rgb: np.ndarray,
    config: ClusterConfig | None = None,
    *,
    progress: Progress | None = None,
    cancel=None,
) -> np.ndarray:
    """H×W int cluster ids (0..n_clusters-1, some may be unused) of an RGB image at working µm/px."""
    cfg = config or ClusterConfig()
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise GlandsegError(f"expected an H×W×3 uint8 image to cluster, got {rgb.shape} {rgb.dtype}")
    feats = torch.from_numpy(pixel_features(rgb))[None]
    h, w = rgb.shape[:2]
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # the network's initial weights
    net = ClusterNet(feats.shape[1], cfg.channels, cfg.n_clusters)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.learning_rate, momentum=0.9)
    ch, cw = min(cfg.crop_px, h), min(cfg.crop_px, w)
    net.train()
    for step in range(cfg.iterations):
        if cancel is not None and cancel.is_set():
            raise Cancelled("clustering cancelled")
        ys = torch.randint(0, h - ch + 1, (cfg.crops_per_step,), generator=gen).tolist()
        xs = torch.randint(0, w - cw + 1, (cfg.crops_per_step,), generator=gen).tolist()
        batch = torch.cat([feats[:, :, y : y + ch, x : x + cw] for y, x in zip(ys, xs, strict=True)])
        resp = net(batch)
        target = resp.argmax(1).detach()
        loss = F.cross_entropy(resp, target) + cfg.continuity_weight * continuity_loss(resp)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None:
            progress(step + 1, cfg.iterations, "clustering")
    with torch.no_grad():  # batch statistics of the whole image, as in training (no running stats)
        return net(feats)[0].argmax(0).numpy().astype(np.int32)
