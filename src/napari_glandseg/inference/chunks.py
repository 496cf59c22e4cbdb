"""One chunk of a whole-slide run: blend its tiles, post-process its padded box, write its core.

Shared by the local loop and the dask.distributed workers. The order of the writes is what
makes a run resumable: the seam file first, then the chunk's labels and their done-log entry
(``LabelStore.write_chunk``), so a chunk logged as done always has everything the stitch needs.
The padded box (core + context margin) is wide enough that a gland touching the core is whole
in it, so neighbouring chunks label a shared gland alike (see ``tile_jobs`` for the tiles).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg.errors import GlandsegError
from napari_glandseg.inference.confidence import gland_confidence
from napari_glandseg.inference.postprocess import probabilities_to_instances_keep_edges
from napari_glandseg.inference.stitch import LOCAL_MAX, ChunkGeom, to_global, write_seam
from napari_glandseg.inference.tile_jobs import (
    ChunkJob,
    ChunkWork,
    TileBatcher,
    TileCache,
    consumers,
    tile_reader,
)
from napari_glandseg.inference.tiling import SlideTiles
from napari_glandseg.slide.on_tissue import GLASS, glass_is_background, seed_mask
from napari_glandseg.slide.resample import read_on_grid

#: Folder inside the label store for the run's own files (seam files, tile cache, run record).
RUN_DIR = "glandseg_run"
#: The slide's glass mask, in the run folder, read by every chunk task.
GLASS_MASK_FILE = "glass_mask.npz"


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """What every chunk task needs to know (small and picklable: sent to dask workers).

    Made by ``RunPlan.for_store``; the fields are keywords only."""

    store_path: str
    seam_dir: str
    factor: float  # slide level-0 px per store px
    model_mpp: float
    run_id: str = ""  # unique per segment_slide call (workers key their store handles on it)
    tile_px: int = 384
    overlap_px: int = 64
    tile_dir: str = ""  # cache of tiles several chunks blend ("" = none)
    glass_mask: str = ""  # the slide's glass mask (``slide.on_tissue.save_mask``): the same in every worker
    postprocess: dict | None = None  # the run's post-processing (the organ's profile); None: the model card's

    @classmethod
    def for_store(cls, store_path: str | Path, card: Any, factor: float) -> RunPlan:
        """The plan of one ``segment_slide`` call into ``store_path``: the run's files in its
        ``RUN_DIR``, the tiles and post-processing of ``card`` (the run's organ profile)."""
        run_dir = Path(store_path) / RUN_DIR
        return cls(
            store_path=str(store_path), seam_dir=str(run_dir / "seams"), factor=float(factor),
            model_mpp=float(card.mpp), run_id=uuid.uuid4().hex, tile_px=int(card.tile_px),
            overlap_px=int(card.overlap_px), tile_dir=str(run_dir / "tiles"),
            glass_mask=str(run_dir / GLASS_MASK_FILE), postprocess=dict(card.postprocess),
        )

    @property
    def layout(self) -> SlideTiles:
        return SlideTiles(self.tile_px, self.overlap_px)

    def cache(self) -> TileCache | None:
        return TileCache(self.tile_dir) if self.tile_dir else None


def new_job(plan: RunPlan, work: ChunkWork, n_classes: int, cache: TileCache | None) -> ChunkJob:
    return ChunkJob(work, plan.layout, n_classes, cache)


def new_batcher(slide: Any, predictor: Any, plan: RunPlan, cache: TileCache | None,
                on_batch: Any = None) -> TileBatcher:
    return TileBatcher(predictor, tile_reader(slide, plan.layout, plan.factor, predictor.card.mpp), cache, on_batch)


def chunk_instances(slide: Any, card: Any, geom: ChunkGeom, probs: np.ndarray, factor: float,
                    postprocess: dict | None = None) -> np.ndarray:
    """Local instance labels (1..65535, int32) of the chunk's padded box (``factor``: slide
    level-0 px per store px); glass beyond the tissue's edge is background (``on_tissue``)."""
    py, px = geom.padded_origin
    glass_is_background(probs, slide, (py * factor, px * factor), factor,
                        lambda: read_on_grid(slide, (py * factor, px * factor), probs.shape[1:], factor, card.mpp))
    local = probabilities_to_instances_keep_edges(probs, mpp=card.mpp, params=postprocess or card.postprocess)
    if local.max() > LOCAL_MAX:
        raise GlandsegError(
            f"{slide.path}: chunk ({geom.cy}, {geom.cx}) has more than {LOCAL_MAX} objects; "
            "use a smaller chunk size (chunk_px)"
        )
    return local


def core_ids(local: np.ndarray, geom: ChunkGeom) -> np.ndarray:
    """The local ids (> 0) of the glands with a pixel in the chunk's core (a bincount: no sort)."""
    m = geom.margin
    ids = np.nonzero(np.bincount(local[m : m + geom.h, m : m + geom.w].ravel()))[0]
    return ids[ids > 0]


def cut_objects(local: np.ndarray, ids: np.ndarray) -> int:
    """Glands of the core (``ids``: ``core_ids``) that reach the padded box's edge (not whole in
    the box: the one case where the stitch matches two chunks' different views instead of
    identical ones)."""
    on_edge = np.bincount(np.concatenate([local[0], local[-1], local[:, 0], local[:, -1]]), minlength=int(local.max()) + 1)
    return int(np.count_nonzero(on_edge[ids]))


def finish_chunk(slide: Any, card: Any, plan: RunPlan, geom: ChunkGeom, store: Any,
                 probs: np.ndarray) -> dict[str, Any]:
    """Post-process a chunk's probabilities, write its seam file, then its labels (+ done log)."""
    local = chunk_instances(slide, card, geom, probs, plan.factor, plan.postprocess)
    m = geom.margin
    ids = core_ids(local, geom)  # the seam keeps the confidence of these only
    areas = write_seam(Path(plan.seam_dir), geom, local, gland_confidence(local, probs, ids))
    store.write_chunk(geom.cy, geom.cx, to_global(local[m : m + geom.h, m : m + geom.w], geom.index))
    return {"cy": geom.cy, "cx": geom.cx, "tissue": True, "objects": len(areas), "cut_objects": cut_objects(local, ids)}


def write_empty(geom: ChunkGeom, store: Any) -> dict[str, Any]:
    store.write_chunk(geom.cy, geom.cx, np.zeros((geom.h, geom.w), np.int32))
    return {"cy": geom.cy, "cx": geom.cx, "tissue": False, "objects": 0}


def release_tiles(plan: RunPlan, work: ChunkWork, store: Any, runs: set[tuple[int, int]],
                  chunk_px: int, shape: tuple[int, int]) -> None:
    """Delete the cached tiles of a finished chunk that no unfinished chunk needs any more."""
    cache = plan.cache()
    if cache is None:
        return
    g = work.geom
    for key in work.shared:
        users = [c for c in consumers(plan.layout, key, chunk_px, g.margin, shape) if c in runs]
        if all(store.is_done(*c) for c in users):
            cache.discard(key)


def run_chunk(slide: Any, predictor: Any, plan: RunPlan, work: ChunkWork, store: Any) -> dict[str, Any]:
    """Segment (or, without tissue in its core, zero-fill) one chunk and write it; returns a summary."""
    if not work.runs_model or predictor is None:
        return write_empty(work.geom, store)
    if plan.glass_mask:
        seed_mask(slide, plan.glass_mask, GLASS)
    cache = plan.cache()
    job = new_job(plan, work, predictor.n_classes, cache)
    batcher = new_batcher(slide, predictor, plan, cache)
    try:
        batcher.add(job)
        batcher.flush()
    finally:
        batcher.close()
    out = finish_chunk(slide, predictor.card, plan, work.geom, store, job.probabilities())
    return {**out, **batcher.stats}
