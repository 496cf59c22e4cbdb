"""Deterministic stand-in models for the inference tests (importable by dask workers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from napari_glandseg.model.card import ModelCard


class ThresholdModel(torch.nn.Module):
    """"Gland" where the pixel is dark (grey < 0.5), with a thin nothing-else border class.

    Instant and exactly reproducible, so whole-slide runs can be compared pixel for pixel.
    """

    def __init__(self, mpp: float = 1.0, tile_px: int = 128, overlap_px: int = 16, min_area_um2: float = 20.0,
                 delay_s: float = 0.0):
        super().__init__()
        self.delay_s = delay_s  # a slow model, for tests that interrupt a run
        self.card = ModelCard(
            name="threshold-test", mpp=mpp, tile_px=tile_px, overlap_px=overlap_px,
            mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
            postprocess={"gland_threshold": 0.5, "border_threshold": 0.99,
                         "min_area_um2": min_area_um2, "fill_holes": True},
        )
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        return rgb.permute(0, 3, 1, 2).float() / 255.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay_s:
            import time

            time.sleep(self.delay_s)
        grey = x.float().mean(1, keepdim=True)
        gland = 40.0 * (0.5 - grey)
        return torch.cat([-gland, gland, torch.full_like(gland, -40.0)], 1) + 0 * self.anchor


class ConstantModel(ThresholdModel):
    """The same probabilities everywhere: blending must not change them (no seams)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        logits = torch.tensor([0.3, 1.1, -0.7], device=x.device).view(1, 3, 1, 1)
        return logits.expand(n, 3, h, w).clone() + 0 * self.anchor


class FlakyOOMModel(ThresholdModel):
    """Raises CUDA out-of-memory the first time it sees a batch larger than 2."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.raised = False
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 2 and not self.raised:
            self.raised = True
            raise torch.cuda.OutOfMemoryError("fake: CUDA out of memory")
        self.batch_sizes.append(int(x.shape[0]))
        return super().forward(x)


def make_threshold_model(**kw) -> ThresholdModel:
    """Factory a dask worker can call (the model spec of the distributed tests)."""
    return ThresholdModel(**kw).eval()


def disc_image(
    height: int, width: int, discs: list[tuple[int, int, int]], tissue: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Glass (near white) with a pink tissue box (y0, x0, y1, x1) and dark discs (cy, cx, r).

    Without ``tissue`` the whole image is pink.
    """
    img = np.full((height, width, 3), (200, 120, 180), np.uint8)
    if tissue is not None:
        y0, x0, y1, x1 = tissue
        glass = np.full_like(img, 246)
        glass[y0:y1, x0:x1] = img[y0:y1, x0:x1]
        img = glass
    yy, xx = np.mgrid[:height, :width]
    for cy, cx, r in discs:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (60, 45, 75)
    return img


def write_disc_slide(path: Path, img: np.ndarray, mpp: float) -> Path:
    """A lossless 2-level tiled pyramidal TIFF of ``img``."""
    from _pyramids import write_pyramid_tiff

    write_pyramid_tiff(path, img, n_levels=2, mpp=mpp, compression="zlib", tile=128)
    return path
