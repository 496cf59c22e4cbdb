"""Gland proposals with no labels: an image (or a slide box) → gland instance labels.

``propose_glands`` resamples the image to the working µm/px, clusters its pixels with a network
trained on it alone (``spm.cluster_image``), keeps the gland sub-regions by the morphology cue
(``morphology_cue.gland_mask``), splits touching glands at their necks (a watershed of the
distance to the background from one seed per gland core) and drops glands smaller than
``min_area_um2``. ``propose_region`` does the same on a box of a slide and places the labels on
the slide as ``inference.segment_region`` does, so the outputs are written the same way.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from napari_glandseg.errors import GlandsegError, Progress, check_mpp
from napari_glandseg.inference.postprocess import fill_label_holes, remove_small_objects, seeds_at_necks
from napari_glandseg.unsupervised.morphology_cue import CueConfig, _disk, gland_mask
from napari_glandseg.unsupervised.spm import ClusterConfig, cluster_image

#: The µm/px proposals are made at: that of the bundled models (nuclei a few px, glands tens).
WORK_MPP = 1.24
#: The largest working image (px) one call accepts: 4096² at 1.24 µm/px is 5 mm square.
MAX_WORK_PX = 4096 * 4096


@dataclass(frozen=True)
class ProposalConfig:
    """Everything a proposal run depends on; the defaults were chosen on GlaS train only."""

    work_mpp: float = WORK_MPP
    min_area_um2: float = 500.0
    split_um: float = 6.0
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    cue: CueConfig = field(default_factory=CueConfig)

    def __post_init__(self) -> None:
        check_mpp(self.work_mpp, "ProposalConfig.work_mpp")
        if not (math.isfinite(self.min_area_um2) and self.min_area_um2 >= 0):
            raise GlandsegError(f"ProposalConfig.min_area_um2 must be >= 0, got {self.min_area_um2!r}")
        if not (math.isfinite(self.split_um) and self.split_um >= 0):
            raise GlandsegError(f"ProposalConfig.split_um must be >= 0, got {self.split_um!r}")


@dataclass
class Proposals:
    """Gland instances (int32, the input's H×W) and how they were made."""

    labels: np.ndarray
    info: dict[str, Any]


def instances_from_mask(mask: np.ndarray, mpp: float, split_um: float, min_area_um2: float) -> np.ndarray:
    """int32 gland labels of a boolean mask: one seed per core left after eroding by ``split_um``,
    grown back over the mask by a watershed of the distance to the background; holes filled;
    glands under ``min_area_um2`` dropped; ids 1..n."""
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    seeds = seeds_at_necks(mask, _disk(split_um, mpp))  # a gland too thin to keep a core: one seed
    dist = ndi.distance_transform_edt(mask)
    labels = watershed(-dist, seeds, mask=mask).astype(np.int32)
    labels = fill_label_holes(labels)
    return remove_small_objects(labels, min_area_um2 / (mpp * mpp))


def _check_rgb(rgb: Any) -> np.ndarray:
    from napari_glandseg.inference.region import check_rgb

    return check_rgb(rgb)


def propose_glands(
    rgb: np.ndarray,
    mpp: float,
    config: ProposalConfig | None = None,
    *,
    progress: Progress | None = None,
    cancel: Any = None,
    threads: int | None = 1,
) -> Proposals:
    """Gland proposals of an RGB image at ``mpp`` µm/px, with no model and no labels.

    ``threads`` sets torch's CPU threads for the call (default one: the per-image network is
    small, and one thread is the fair unit of "seconds per image"); None leaves them as they are.
    """
    from napari_glandseg.slide.resample import resize_labels, resize_rgb

    cfg = config or ProposalConfig()
    rgb = _check_rgb(rgb)
    mpp = check_mpp(mpp, "mpp (the image's µm per pixel)")
    h, w = rgb.shape[:2]
    f = mpp / cfg.work_mpp
    wh, ww = max(1, round(h * f)), max(1, round(w * f))
    if wh * ww > MAX_WORK_PX:
        raise GlandsegError(f"the image is {w}×{h} px at {mpp:g} µm/px: {ww}×{wh} px at the working "
                            f"{cfg.work_mpp:g} µm/px, more than {MAX_WORK_PX} px; propose on smaller regions")
    if min(wh, ww) < 16:
        raise GlandsegError(f"the image is {w}×{h} px at {mpp:g} µm/px: too small to hold a gland "
                            f"({ww}×{wh} px at {cfg.work_mpp:g} µm/px)")
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        work = resize_rgb(rgb, wh, ww)
        clusters = cluster_image(work, cfg.cluster, progress=progress, cancel=cancel)
    finally:
        torch.set_num_threads(old_threads)
    mask, cue = gland_mask(clusters, work, cfg.work_mpp, cfg.cue)
    labels = instances_from_mask(mask, cfg.work_mpp, cfg.split_um, cfg.min_area_um2)
    info = {"work_mpp": cfg.work_mpp, "work_shape": [wh, ww], "glands": int(labels.max()),
            "epithelium_cluster": cue["epithelium"], "sub_region_clusters": cue["sub_regions"],
            "seconds": time.perf_counter() - t0}
    return Proposals(resize_labels(labels, h, w), info)


def propose_region(
    slide: Any,
    bbox0: tuple[float, float, float, float],
    config: ProposalConfig | None = None,
    *,
    mpp: float | None = None,
    progress: Progress | None = None,
    cancel: Any = None,
    threads: int | None = 1,
) -> Any:
    """Proposals for the level-0 box ``(y, x, h, w)`` of ``slide``, on the working-µm/px grid from
    the slide's origin (whole label px: the box is grown to them), as an
    ``inference.region.RegionResult`` (what ``labels.outputs.region_store`` writes)."""
    from napari_glandseg.inference.region import RegionResult
    from napari_glandseg.slide.placement import GridPlacement
    from napari_glandseg.slide.resample import with_mpp

    cfg = config or ProposalConfig()
    slide = with_mpp(slide, mpp)
    y, x, h, w = (float(v) for v in bbox0)
    h0, w0 = slide.shape
    if h <= 0 or w <= 0 or y < 0 or x < 0 or y >= h0 or x >= w0:
        raise GlandsegError(f"{slide.path}: region x={x:g}, y={y:g}, w={w:g}, h={h:g} (level-0 px) is empty "
                            f"or outside the slide ({w0} × {h0} px)")
    h, w = min(h, h0 - y), min(w, w0 - x)  # the part on the slide
    f = cfg.work_mpp / slide.mpp  # level-0 px per label px
    gy0, gx0 = math.floor(y / f), math.floor(x / f)
    gy1, gx1 = math.ceil((y + h) / f), math.ceil((x + w) / f)
    grid = GridPlacement.from_corner(f, (gy0 * f, gx0 * f), (gy1 - gy0, gx1 - gx0))
    rgb = slide.read_at_mpp(grid.box_to_level0((0, 0, gy1 - gy0, gx1 - gx0)), cfg.work_mpp)
    props = propose_glands(rgb, cfg.work_mpp, cfg, progress=progress, cancel=cancel, threads=threads)
    labels = props.labels
    if labels.shape != grid.shape:  # rounding in the reader: nearest pixel centres
        from napari_glandseg.slide.resample import resize_labels

        labels = resize_labels(labels, *grid.shape)
    return RegionResult(
        labels=labels, scale=grid.scale, translate=grid.translate, mpp=cfg.work_mpp,
        bbox0=(int(round(gy0 * f)), int(round(gx0 * f)), int(round((gy1 - gy0) * f)), int(round((gx1 - gx0) * f))),
        info={"model": "spm-proposals (no labels)", "slide_mpp": slide.mpp, **props.info},
    )
