"""One chunk of a whole-slide run: read it with its margin, predict, post-process, write.

Shared by the local loop and the dask.distributed workers. The order of the writes is what
makes a run resumable: the seam file first, then the chunk's labels and their done-log entry
(``LabelStore.write_chunk``), so a chunk logged as done always has everything the stitch needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg.errors import GlandsegError
from napari_glandseg.inference.postprocess import probabilities_to_instances_keep_edges
from napari_glandseg.inference.predictor import Predictor
from napari_glandseg.inference.region import probabilities, resize_rgb
from napari_glandseg.inference.stitch import LOCAL_MAX, ChunkGeom, to_global, write_seam

#: Folder inside the label store for the run's own files (seam files, run record).
RUN_DIR = "glandseg_run"


@dataclass(frozen=True)
class RunPlan:
    """What every chunk task needs to know (small and picklable: sent to dask workers)."""

    store_path: str
    seam_dir: str
    factor: float  # slide level-0 px per store px
    model_mpp: float
    run_id: str = ""  # unique per segment_slide call (workers key their store handles on it)

    def level0_box(self, geom: ChunkGeom) -> tuple[float, float, float, float]:
        """The chunk's padded box in slide level-0 px (whole store pixels)."""
        py, px = geom.padded_origin
        ph, pw = geom.padded_shape
        f = self.factor
        return py * f, px * f, ph * f, pw * f


def needs_model(geom: ChunkGeom, tissue: np.ndarray, tissue_ds: float, factor: float) -> bool:
    """Whether the (dilated) tissue mask has any tissue within the chunk's core box.

    The core, not the padded box: tissue that lies only in the margin belongs to a neighbour's
    core, whose run labels it; a gland reaching into this core would put tissue here.
    """
    s = factor / tissue_ds  # tissue-mask px per store px
    y0, x0 = max(0, math.floor(geom.y0 * s)), max(0, math.floor(geom.x0 * s))
    y1, x1 = math.ceil((geom.y0 + geom.h) * s), math.ceil((geom.x0 + geom.w) * s)
    return bool(tissue[y0:y1, x0:x1].any())


def chunk_probabilities(slide: Any, predictor: Predictor, plan: RunPlan, geom: ChunkGeom) -> np.ndarray:
    """Blended probabilities of the chunk's padded box (read at the model's µm/px)."""
    ph, pw = geom.padded_shape
    rgb = slide.read_at_mpp(plan.level0_box(geom), predictor.card.mpp)
    if rgb.shape[:2] != (ph, pw):  # reader rounding: fit the grid exactly
        rgb = resize_rgb(rgb, ph, pw)
    return probabilities(rgb, predictor)


def chunk_instances(slide: Any, card: Any, geom: ChunkGeom, probs: np.ndarray) -> np.ndarray:
    """Local instance labels (1..65535, int32) of the chunk's padded box."""
    local = probabilities_to_instances_keep_edges(probs, mpp=card.mpp, params=card.postprocess)
    if local.max() > LOCAL_MAX:
        raise GlandsegError(
            f"{slide.path}: chunk ({geom.cy}, {geom.cx}) has more than {LOCAL_MAX} objects; "
            "use a smaller chunk size (chunk_px)"
        )
    return local


def finish_chunk(slide: Any, card: Any, plan: RunPlan, geom: ChunkGeom, store: Any,
                 probs: np.ndarray) -> dict[str, Any]:
    """Post-process a chunk's probabilities, write its seam file, then its labels (+ done log)."""
    local = chunk_instances(slide, card, geom, probs)
    m = geom.margin
    areas = write_seam(Path(plan.seam_dir), geom, local)
    core = to_global(local[m : m + geom.h, m : m + geom.w], geom.index)
    store.write_chunk(geom.cy, geom.cx, core)
    return {"cy": geom.cy, "cx": geom.cx, "tissue": True, "objects": len(areas)}


def write_empty(geom: ChunkGeom, store: Any) -> dict[str, Any]:
    store.write_chunk(geom.cy, geom.cx, np.zeros((geom.h, geom.w), np.int32))
    return {"cy": geom.cy, "cx": geom.cx, "tissue": False, "objects": 0}


def run_chunk(slide: Any, predictor: Predictor | None, plan: RunPlan, geom: ChunkGeom, store: Any,
              with_tissue: bool) -> dict[str, Any]:
    """Segment (or, without tissue, zero-fill) one chunk and write it; returns a summary."""
    if not with_tissue or predictor is None:
        return write_empty(geom, store)
    probs = chunk_probabilities(slide, predictor, plan, geom)
    return finish_chunk(slide, predictor.card, plan, geom, store, probs)
