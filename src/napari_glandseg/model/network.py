"""The dual-path Swin Transformer U-Net (after Zhang et al. 2024, Cancers 16:3897).

Two Swin encoders look at the same tile with patch sizes 4 and 8. Their deepest tokens are
fused by bidirectional cross-attention; the patch-4 path gives the skips at strides 4-32 (the
patch-8 path's stride 8 and 16 features are concatenated in), a small convolutional stem gives
full- and half-resolution detail, and a U-Net decoder of UNETR-style up-blocks brings it back to
the input size. Deep-supervision heads sit on the coarser decoder stages; a tumor/benign head
on the fused tokens serves tumor-guided self-distillation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from napari_glandseg.model.card import ModelCard


@dataclass(frozen=True)
class EncoderSpec:
    """One Swin path: patch size, width, depth and heads per stage, window size."""

    patch_size: int
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int = 8

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(self.patch_size * 2**i for i in range(len(self.depths)))

    def validate(self, label: str) -> None:
        if self.patch_size not in (2, 4, 8, 16):
            raise ValueError(f"{label}: patch_size must be 2, 4, 8 or 16, got {self.patch_size}")
        if len(self.depths) != len(self.num_heads) or not self.depths:
            raise ValueError(f"{label}: depths and num_heads need the same (non-zero) length")
        for dim, heads in zip(self.dims, self.num_heads, strict=True):
            if dim % heads:
                raise ValueError(f"{label}: stage width {dim} is not divisible by {heads} heads")
        if self.window_size < 2:
            raise ValueError(f"{label}: window_size must be >= 2, got {self.window_size}")


def _gn(ch: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: batch-size independent, so DDP and single-process training
    # give the same gradients for the same global batch, and tiny inference batches behave.
    return nn.GroupNorm(min(8, ch), ch)


class ConvBlock(nn.Sequential):
    """Two 3×3 conv → GroupNorm → GELU layers."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), _gn(cout), nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), _gn(cout), nn.GELU(),
        )


class UpBlock(nn.Module):
    """UNETR-style up-block: 2× transposed conv, concatenate the skip, conv block."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv = ConvBlock(cout + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class CrossAttentionFusion(nn.Module):
    """Bidirectional cross-attention between the two paths' deepest token sets."""

    def __init__(self, dim_a: int, dim_b: int, heads: int):
        super().__init__()
        if dim_a % heads:
            raise ValueError(f"fusion width {dim_a} is not divisible by {heads} heads")
        self.proj_b = nn.Linear(dim_b, dim_a)
        self.norm_a, self.norm_b = nn.LayerNorm(dim_a), nn.LayerNorm(dim_a)
        self.a_from_b = nn.MultiheadAttention(dim_a, heads, batch_first=True)
        self.b_from_a = nn.MultiheadAttention(dim_a, heads, batch_first=True)
        self.mix = nn.Sequential(nn.LayerNorm(2 * dim_a), nn.Linear(2 * dim_a, dim_a), nn.GELU())

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: N×C×H×W at the same stride (b resized if needed) → fused N×C×H×W."""
        n, c, h, w = a.shape
        if b.shape[-2:] != (h, w):
            b = F.interpolate(b, size=(h, w), mode="bilinear", align_corners=False)
        ta = a.flatten(2).transpose(1, 2)
        tb = self.proj_b(b.flatten(2).transpose(1, 2))
        qa, qb = self.norm_a(ta), self.norm_b(tb)
        ta = ta + self.a_from_b(qa, qb, qb, need_weights=False)[0]
        tb = tb + self.b_from_a(qb, qa, qa, need_weights=False)[0]
        fused = ta + self.mix(torch.cat([ta, tb], dim=-1))
        return fused.transpose(1, 2).reshape(n, c, h, w)


def _swin(spec: EncoderSpec, img_px: int, drop_path_rate: float, in_chans: int) -> SwinTransformer:
    return SwinTransformer(
        img_size=img_px,
        in_chans=in_chans,
        patch_size=spec.patch_size,
        embed_dim=spec.embed_dim,
        depths=spec.depths,
        num_heads=spec.num_heads,
        window_size=spec.window_size,
        strict_img_size=False,  # any multiple of 32: the engine runs larger tiles than training
        drop_path_rate=drop_path_rate,
        num_classes=0,
    )


class DualSwinUNet(nn.Module):
    """Dual-path Swin U-Net returning per-pixel class logits at the input resolution."""

    card: ModelCard  # set by create_model / load_checkpoint

    def __init__(
        self,
        enc_a: EncoderSpec,
        enc_b: EncoderSpec,
        *,
        num_classes: int = 3,
        stem_channels: Sequence[int] = (16, 32),
        fusion_heads: int = 8,
        img_px: int = 256,
        drop_path_rate: float = 0.0,
        num_tumor_classes: int = 2,
        in_chans: int = 3,
        distance_head: bool = False,
    ):
        super().__init__()
        enc_a.validate("encoder A")
        enc_b.validate("encoder B")
        if enc_a.patch_size != 4 or len(enc_a.depths) != 4:
            raise ValueError("encoder A must have patch_size 4 and 4 stages (strides 4, 8, 16, 32)")
        if enc_b.strides[-1] != enc_a.strides[-1]:
            raise ValueError(
                f"encoder B's deepest stride {enc_b.strides[-1]} must equal encoder A's "
                f"{enc_a.strides[-1]} (patch 8 with 3 stages, patch 4 with 4)"
            )
        if img_px % 32 or (img_px // 4) % enc_a.window_size or (img_px // enc_b.patch_size) % enc_b.window_size:
            raise ValueError(
                f"img_px {img_px} must be a multiple of 32 whose patch grids ({img_px // 4}, "
                f"{img_px // enc_b.patch_size}) are divisible by the window sizes "
                f"({enc_a.window_size}, {enc_b.window_size})"
            )
        if in_chans < 3:
            raise ValueError(f"in_chans must be >= 3 (RGB first, then guidance maps), got {in_chans}")
        self.enc_a, self.enc_b, self.in_chans = enc_a, enc_b, in_chans
        self.swin_a = _swin(enc_a, img_px, drop_path_rate, in_chans)
        self.swin_b = _swin(enc_b, img_px, drop_path_rate, in_chans)
        da, db = enc_a.dims, enc_b.dims
        s1, s2 = stem_channels
        self.stem1 = ConvBlock(in_chans, s1)  # full resolution: crisp gland borders
        self.stem2 = nn.Sequential(nn.MaxPool2d(2), ConvBlock(s1, s2))  # stride 2
        # Encoder B's features join the skips at the strides both paths have.
        b_at = {s: c for s, c in zip(enc_b.strides, db, strict=True)}
        self.skip_mix = nn.ModuleList(
            nn.Conv2d(da[i] + b_at.get(enc_a.strides[i], 0), da[i], 1) for i in range(3)
        )
        self.fusion = CrossAttentionFusion(da[3], db[-1], fusion_heads)
        self.up3 = UpBlock(da[3], da[2], da[2])  # → stride 16
        self.up2 = UpBlock(da[2], da[1], da[1])  # → stride 8
        self.up1 = UpBlock(da[1], da[0], da[0])  # → stride 4
        self.up0 = UpBlock(da[0], s2, s2)  # → stride 2
        self.upf = UpBlock(s2, s1, s1)  # → stride 1
        self.head = nn.Conv2d(s1, num_classes, 1)
        # distance_head: one more output channel after the classes, each gland's normalised distance
        # to its own edge (model.outputs), from whose cores touching glands are seeded apart; a module
        # of its own, so that a head grown onto a trained model can learn at its own rate
        self.distance = nn.Conv2d(s1, 1, 1) if distance_head else None
        self.deep_heads = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in (da[2], da[1], da[0]))
        self.tumor_head = nn.Sequential(nn.LayerNorm(da[3]), nn.Linear(da[3], num_tumor_classes))
        self.num_classes, self.distance_head = num_classes, distance_head

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Both paths' NCHW features, shallow to deep."""
        fa = self.swin_a.forward_intermediates(x, intermediates_only=True)
        fb = self.swin_b.forward_intermediates(x, intermediates_only=True)
        return list(fa), list(fb)

    def forward(self, x: torch.Tensor, return_all: bool = False):
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected N×{self.in_chans}×H×W input, got shape {tuple(x.shape)}")
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"H and W must be multiples of 32, got {tuple(x.shape[-2:])}")
        fa, fb = self.encode(x)
        b_by_stride = dict(zip(self.enc_b.strides, fb, strict=True))
        skips = []
        for i in range(3):
            extra = b_by_stride.get(self.enc_a.strides[i])
            feats = fa[i] if extra is None else torch.cat([fa[i], extra], dim=1)
            skips.append(self.skip_mix[i](feats))
        deep = self.fusion(fa[3], fb[-1])
        h1 = self.stem1(x)
        h2 = self.stem2(h1)
        d16 = self.up3(deep, skips[2])
        d8 = self.up2(d16, skips[1])
        d4 = self.up1(d8, skips[0])
        d2 = self.up0(d4, h2)
        top = self.upf(d2, h1)
        logits = self.head(top) if self.distance is None else torch.cat([self.head(top), self.distance(top)], 1)
        if not return_all:
            return logits
        return {
            "logits": logits,
            "deep": [head(f) for head, f in zip(self.deep_heads, (d16, d8, d4), strict=True)],
            "tumor": self.tumor_head(deep.flatten(2).mean(-1)),
            "tokens": deep.flatten(2).transpose(1, 2),
        }

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        """uint8 N×H×W×3 (slide convention) → normalised float N×3×H×W (model convention)."""
        if rgb.ndim != 4 or rgb.shape[-1] != 3:
            raise ValueError(f"expected N×H×W×3 uint8 tiles, got shape {tuple(rgb.shape)}")
        card = self.card
        mean = torch.tensor(card.mean, device=rgb.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(card.std, device=rgb.device).view(1, 3, 1, 1) * 255.0
        x = rgb.permute(0, 3, 1, 2).float()
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def build_network(arch_args: dict[str, Any]) -> DualSwinUNet:
    """Build the network from card-style (JSON) architecture arguments."""
    args = dict(arch_args)
    try:
        enc_a = EncoderSpec(**_tuples(args.pop("enc_a")))
        enc_b = EncoderSpec(**_tuples(args.pop("enc_b")))
        return DualSwinUNet(enc_a, enc_b, **args)
    except TypeError as exc:
        raise ValueError(f"bad architecture arguments {arch_args}: {exc}") from exc


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
