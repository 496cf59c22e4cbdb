"""SMIT self-distillation parts shared by pretrain.py and distill.py.

After Jiang et al. (SMIT, "self-distilled masked image transformer") as used by Zhang et al.
2024: a student sees a masked view, reconstructs the masked pixels (L_MIP) and matches an EMA
teacher that sees the unmasked views, on the patch tokens at masked positions (L_MPD) and on the
pooled image token of the other view (L_ITD).

Design choices, and why:
- Tokens are the fused deepest tokens of the dual-path encoder (stride 32): what the tumor head
  and the decoder's bottleneck see. The encoder is run up to the fusion only (no decoder), so
  every parameter of the wrapped module gets a gradient (DDP without find_unused_parameters).
- Masking is done at the patch-embedding level: masked patch-4 (path A) and patch-8 (path B)
  embeddings are replaced by a learnable mask token per path, so no masked pixel reaches the
  encoder. A path-B token is masked when any of its pixels is (no leak when mask_px = 4).
- Masks are drawn in blocks of ``mask_px`` (SimMIM found 32 px blocks best for Swin: smaller
  blocks are trivially inpainted from neighbours). A deep token counts in L_MPD in proportion
  to how much of it is masked.
- Every loss is a mean of per-sample terms and the centers are all-reduced, so DDP with equal
  per-rank batches reproduces single-process training on the global batch.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from napari_glandseg.train.common import autocast


def random_mask(n: int, h: int, w: int, mask_px: int, ratio: float, rng: np.random.Generator) -> torch.Tensor:
    """N×H×W bool pixel mask: exactly round(ratio × cells) random ``mask_px`` blocks per sample."""
    if h % mask_px or w % mask_px:
        raise ValueError(f"crop {h}×{w} is not a multiple of mask_px {mask_px}")
    gh, gw = h // mask_px, w // mask_px
    k = int(round(ratio * gh * gw))
    grid = np.zeros((n, gh * gw), bool)
    for i in range(n):
        grid[i, rng.permutation(gh * gw)[:k]] = True
    grid = grid.reshape(n, gh, gw).repeat(mask_px, 1).repeat(mask_px, 2)
    return torch.from_numpy(grid)


def _grid_mask(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """Pixel mask → token mask at ``stride`` (a token is masked if any of its pixels is)."""
    return F.max_pool2d(mask[:, None].float(), stride)[:, 0] > 0


class TokenEncoder(nn.Module):
    """Both Swin paths + cross-attention fusion of a DualSwinUNet (shared parameters), with
    optional learnable mask tokens at the patch embeddings."""

    def __init__(self, net: nn.Module, with_mask_tokens: bool = True):
        super().__init__()
        self.swin_a, self.swin_b, self.fusion = net.swin_a, net.swin_b, net.fusion
        self.patch_b = net.enc_b.patch_size
        if with_mask_tokens:
            self.mask_token_a = nn.Parameter(torch.zeros(net.enc_a.embed_dim))
            self.mask_token_b = nn.Parameter(torch.zeros(net.enc_b.embed_dim))
            nn.init.trunc_normal_(self.mask_token_a, std=0.02)
            nn.init.trunc_normal_(self.mask_token_b, std=0.02)

    def _path(self, swin: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, token, stride: int):
        t = swin.patch_embed(x)  # N×h×w×C (timm Swin keeps NHWC between stages)
        if mask is not None:
            m = _grid_mask(mask, stride)[..., None]
            t = torch.where(m, token.to(t.dtype), t)
        for stage in swin.layers:  # what forward_intermediates does, with the tokens swapped in
            t = stage(t)
        return t.permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x N×3×H×W (normalised), mask N×H×W bool or None → fused tokens N×C×H/32×W/32."""
        a = self._path(self.swin_a, x, mask, getattr(self, "mask_token_a", None), 4)
        b = self._path(self.swin_b, x, mask, getattr(self, "mask_token_b", None), self.patch_b)
        return self.fusion(a, b)


class ProjectionHead(nn.Module):
    """DINO-style head: MLP → L2-normalised bottleneck → cosine logits against K prototypes."""

    def __init__(self, dim: int, out_dim: int, hidden: int = 512, bottleneck: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.prototypes = nn.Parameter(torch.randn(out_dim, bottleneck) * 0.02)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # Cosine logits in [-1, 1] (DINO's weight-normed last layer with g = 1): the temperature
        # alone sets the sharpness, which keeps the teacher/student temperatures meaningful.
        z = F.normalize(self.mlp(z.float()), dim=-1)
        return F.linear(z, F.normalize(self.prototypes, dim=-1))


class SMITStudent(nn.Module):
    """Encoder + patch-token head + image-token head (+ SimMIM-style pixel head for L_MIP)."""

    def __init__(self, net: nn.Module, *, out_dim: int, hidden: int, bottleneck: int,
                 with_reconstruction: bool = True, with_tumor: bool = False):
        super().__init__()
        self.encoder = TokenEncoder(net, with_mask_tokens=with_reconstruction)
        dim = net.enc_a.dims[-1]
        self.patch_head = ProjectionHead(dim, out_dim, hidden, bottleneck)
        self.image_head = ProjectionHead(dim, out_dim, hidden, bottleneck)
        if with_reconstruction:
            # Light head (SimMIM): one 1×1 conv to 32²·3 values per deep token, pixel-shuffled.
            self.recon = nn.Sequential(nn.Conv2d(dim, 32 * 32 * 3, 1), nn.PixelShuffle(32))
        if with_tumor:
            self.tumor_head = net.tumor_head  # shared with the network: it is saved with it

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        fused = self.encoder(x, mask)
        tokens = fused.flatten(2).transpose(1, 2)  # N×L×C
        pooled = tokens.mean(1)
        out = {"patch": self.patch_head(tokens), "image": self.image_head(pooled)}
        if hasattr(self, "recon"):
            out["recon"] = self.recon(fused.float())
        if hasattr(self, "tumor_head"):
            out["tumor"] = self.tumor_head(pooled)  # exactly what DualSwinUNet's forward computes
        return out


def make_teacher(student: SMITStudent) -> SMITStudent:
    """A frozen deep copy; it follows the student by EMA (or stays fixed)."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


def ema_momentum(step: int, total: int, base: float) -> float:
    """Cosine schedule from ``base`` to 1 (DINO): the teacher freezes as training converges."""
    return 1 - (1 - base) * (math.cos(math.pi * min(step, total) / max(1, total)) + 1) / 2


def distribution_ce(teacher: torch.Tensor, student: torch.Tensor, center: torch.Tensor,
                    t_temp: float, s_temp: float) -> torch.Tensor:
    """Cross-entropy H(softmax((t − c)/τ_t), softmax(s/τ_s)) over the last dimension."""
    p_t = F.softmax((teacher.float() - center) / t_temp, dim=-1)
    return -(p_t * F.log_softmax(student.float() / s_temp, dim=-1)).sum(-1)


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float) -> None:
    """EMA of the teacher's mean output (over the global batch: all-reduced under DDP)."""
    mean = teacher_logits.float().reshape(-1, teacher_logits.shape[-1]).mean(0)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(mean)
        mean /= dist.get_world_size()
    center.mul_(momentum).add_(mean, alpha=1 - momentum)


def token_weights(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Fraction of each deep token's pixels that are masked → N×L."""
    return F.adaptive_avg_pool2d(mask[:, None].float(), grid).flatten(1)


def masked_patch_ce(t_patch, s_patch, weights, center, t_temp, s_temp) -> torch.Tensor:
    """Per-sample L_MPD: weighted mean CE over the masked tokens (0 where nothing is masked)."""
    ce = distribution_ce(t_patch, s_patch, center, t_temp, s_temp)
    return (ce * weights).sum(1) / weights.sum(1).clamp_min(1e-6)


def masked_l1(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample L_MIP: mean |recon − target| over the masked pixels."""
    m = mask[:, None].float()
    err = (recon.float() - target.float()).abs() * m
    return err.flatten(1).sum(1) / (m.flatten(1).sum(1) * target.shape[1]).clamp_min(1.0)


def smit_losses(student: nn.Module, teacher: SMITStudent, v1: torch.Tensor, v2: torch.Tensor,
                m1: torch.Tensor, m2: torch.Tensor, centers: dict[str, torch.Tensor], *,
                t_temp: float, s_temp: float, amp: bool) -> tuple[dict[str, torch.Tensor], dict]:
    """Per-sample L_MIP, L_MPD, L_ITD for two normalised views and their masks.

    Both views go through the networks as one batch of 2N. Returns (per-sample terms, teacher
    outputs for the center update).
    """
    n = v1.shape[0]
    x, mask = torch.cat([v1, v2]), torch.cat([m1, m2])
    with autocast(x.device, amp):
        with torch.no_grad():
            t_out = teacher(x)
        s_out = student(x, mask)
    grid = (x.shape[-2] // 32, x.shape[-1] // 32)
    mpd = masked_patch_ce(t_out["patch"], s_out["patch"], token_weights(mask, grid), centers["patch"], t_temp, s_temp)
    # Cross-view: the student's image token of view 1 matches the teacher's of view 2 and back.
    t_img = torch.cat([t_out["image"][n:], t_out["image"][:n]])
    itd = distribution_ce(t_img, s_out["image"], centers["image"], t_temp, s_temp)
    mip = masked_l1(s_out["recon"], x, mask)

    def per_sample(v: torch.Tensor) -> torch.Tensor:
        return (v[:n] + v[n:]) / 2

    return {"mip": per_sample(mip), "mpd": per_sample(mpd), "itd": per_sample(itd)}, t_out
