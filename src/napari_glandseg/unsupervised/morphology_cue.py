"""The empirical morphology cue of Selective Proposal Mining: which clusters are gland sub-regions.

What it relies on (seen on GlaS train images, see ``benchmarks/propose.py`` for the numbers):

- **Epithelium** is the darkest cluster that forms *bands*: most of its pixels survive an
  opening by a disk of a few µm (``band_retention``). The darkest cluster that does not is the
  scattered nuclei of the stroma (lymphocytes, fibroblasts), which an opening wipes out.
- **Lumen** is what the epithelial band encloses: holes that appear when the band is closed by
  a few µm (it is often broken) and that are roundish (``lumen_solidity``). Stroma that a
  closing traps between several glands is star-shaped and stays out.
- **Other sub-regions** (goblet mucin, cytoplasm, the lumen's contents) are the clusters whose
  pixels lie mostly inside the glands found so far (``affinity``): they are grouped with the
  gland they touch; clusters that lie mostly outside (stroma, glass) are not.

All sizes are in µm and µm²: the cue works at any working µm/px.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import regionprops
from skimage.morphology import disk

from napari_glandseg.errors import GlandsegError


@dataclass(frozen=True)
class CueConfig:
    """Thresholds of the cue (µm, µm², fractions); chosen on GlaS train images only."""

    min_cluster_fraction: float = 0.05
    band_open_um: float = 2.5
    band_retention: float = 0.5
    min_band_um2: float = 75.0
    lumen_close_um: tuple[float, ...] = (2.5, 5.0, 8.5)
    min_lumen_um2: float = 30.0
    lumen_solidity: float = 0.6
    gland_margin_um: float = 3.7
    affinity: float = 0.5
    grow_um: float = 7.5
    smooth_um: float = 3.7

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            values = value if isinstance(value, tuple) else (value,)
            if not all(isinstance(v, int | float) and np.isfinite(v) and v >= 0 for v in values):
                raise GlandsegError(f"CueConfig.{name} must be finite and >= 0, got {value!r}")


def _disk(um: float, mpp: float) -> np.ndarray:
    return disk(max(0, round(um / mpp)))


def drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    """``mask`` without its connected components of fewer than ``min_px`` pixels."""
    lab, _ = ndi.label(mask)
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_px
    keep[0] = False
    return keep[lab]


def enclosed_lumen(band: np.ndarray, mpp: float, cfg: CueConfig) -> np.ndarray:
    """The band plus the roundish holes it encloses once closed by each of ``lumen_close_um``."""
    out = band.copy()
    min_px = cfg.min_lumen_um2 / (mpp * mpp)
    for um in cfg.lumen_close_um:
        closed = ndi.binary_closing(band, _disk(um, mpp), border_value=0) | band
        holes, _ = ndi.label(ndi.binary_fill_holes(closed) & ~closed)
        for rp in regionprops(holes):
            if rp.area >= min_px and rp.solidity >= cfg.lumen_solidity:
                out[rp.slice][rp.image] = True
    return ndi.binary_fill_holes(out)


def gland_mask(clusters: np.ndarray, rgb: np.ndarray, mpp: float, cfg: CueConfig | None = None
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """Boolean gland mask (H×W) from a cluster map and its image at ``mpp``, and what was chosen:
    ``{"epithelium": id, "sub_regions": [ids], "clusters": {id: {fraction, grey, band_retention}}}``."""
    cfg = cfg or CueConfig()
    if clusters.shape != rgb.shape[:2]:
        raise GlandsegError(f"cluster map {clusters.shape} and image {rgb.shape[:2]} differ in size")
    grey = rgb.mean(2)
    n = clusters.size
    ids = [int(k) for k in np.unique(clusters)]
    stats: dict[int, dict[str, float]] = {}
    opened: dict[int, np.ndarray] = {}
    for k in ids:
        member = clusters == k
        opened[k] = ndi.binary_opening(member, _disk(cfg.band_open_um, mpp))
        stats[k] = {"fraction": float(member.sum() / n), "grey": float(grey[member].mean()),
                    "band_retention": float(opened[k].sum() / max(member.sum(), 1))}
    big = sorted((k for k in ids if stats[k]["fraction"] >= cfg.min_cluster_fraction), key=lambda k: stats[k]["grey"])
    if not big:  # one cluster everywhere: nothing to tell apart
        return np.zeros(clusters.shape, bool), {"epithelium": None, "sub_regions": [], "clusters": stats}
    bands = [k for k in big if stats[k]["band_retention"] >= cfg.band_retention]
    epithelium = bands[0] if bands else big[0]
    band = drop_small(opened[epithelium], cfg.min_band_um2 / (mpp * mpp))
    glands = enclosed_lumen(band, mpp, cfg)
    glands = ndi.binary_dilation(glands, _disk(cfg.gland_margin_um, mpp))
    chosen = [epithelium]
    if glands.any():
        for k in big:
            if k != epithelium and glands[clusters == k].mean() >= cfg.affinity:
                chosen.append(k)
    reach = ndi.binary_dilation(glands, _disk(cfg.grow_um, mpp))
    glands |= np.isin(clusters, chosen) & reach
    smooth = _disk(cfg.smooth_um, mpp)
    glands = ndi.binary_fill_holes(ndi.binary_closing(glands, smooth) | glands)
    glands = ndi.binary_opening(glands, smooth)  # cuts one-pixel bridges and fringes
    return glands, {"epithelium": epithelium, "sub_regions": chosen[1:], "clusters": stats}
