"""Whole-slide segmentation into a resumable label pyramid: ``segment_slide``, ``segment_many``.

Design (memory bounded, resumable, distributable):

* The label store's level 0 is the model's µm/px grid over the slide (store px ``j`` covers
  slide level-0 px ``[j*f, (j+1)*f)``, ``f = model mpp / slide mpp``); store chunks are the
  work units.
* Tissue is found first on a low level. The model runs only on tiles whose core meets it
  (tiles of one slide-wide grid, ``inference.tile_jobs``); glass tiles are certain background,
  and chunks with no tissue tile are written as zeros, so the time grows with the tissue area.
* A chunk blends every tile meeting its padded box (core + a context margin wide enough for
  whole glands), in full batches through reused buffers, post-processes the box on its own and
  writes its core. A tile that several chunks blend runs once (a cache folder in the run dir).
  The result does not depend on the chunk size. The blended probabilities of a few chunks are
  the largest arrays held: never the slide's.
* Glands crossing chunk borders: see ``inference.stitch`` (global ids per chunk, seam bands
  compared after all chunks are done, a lookup table applied chunk by chunk).
* Every chunk's seam file and data are written before its done-log entry; a rerun skips done
  chunks, and the stitch is recomputed from the seam files (idempotent).
* With a dask ``client`` the chunks run as tasks (``inference.distributed_run``); the stitch and
  the pyramid run here.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg._atomic import write_json_atomic
from napari_glandseg._lock import locked
from napari_glandseg.errors import Cancelled, GlandsegError, Progress
from napari_glandseg.inference.chunks import (
    GLASS_MASK_FILE,
    RUN_DIR,
    RunPlan,
    finish_chunk,
    new_batcher,
    new_job,
    release_tiles,
    write_empty,
)
from napari_glandseg.inference.distributed_run import cluster_client
from napari_glandseg.inference.region import get_predictor
from napari_glandseg.inference.slide_run_types import DEFAULT_CHUNK_PX, SlideRun, SlideRunSettings
from napari_glandseg.inference.stitch import (
    ChunkGeom,
    apply_chunk_lut,
    build_lut,
    chunk_grid,
    chunk_luts,
    final_confidence,
)
from napari_glandseg.inference.tile_jobs import ChunkWork, plan_work, tissue_tiles
from napari_glandseg.inference.tiling import SlideTiles
from napari_glandseg.slide.identity import check_same_slide, slide_identity
from napari_glandseg.slide.on_tissue import GLASS, save_mask
from napari_glandseg.slide.placement import GridPlacement
from napari_glandseg.slide.resample import with_mpp

log = logging.getLogger(__name__)

#: Context margin (model px) around a chunk's core: a gland (or touching cluster) that reaches
#: the core is whole in the padded box up to this far past it (~320 µm at 1.24 µm/px).
CONTEXT_PX = 256
#: Chunks whose tiles are blending at once in the local loop (each holds C×box² floats).
MAX_ACTIVE = 2
RECORD = "run.json"


@locked("out_path", "segment_slide")
def segment_slide(
    slide: Any,
    out_path: str | os.PathLike,
    model: Any = None,
    settings: SlideRunSettings | None = None,
    *,
    client: Any = None,
    progress: Progress | None = None,
    cancel: Any = None,
    tile_progress: Progress | None = None,
) -> SlideRun:
    """Segment every chunk with tissue of ``slide`` into the label store at ``out_path``; returns
    what was done (``SlideRun``: the store, the model's source, counts and timings).

    ``model``: a module or Predictor, a model spec (``model.resolve``: None for the default, a
    preset, checkpoint or user model name, a ``ModelSource``) or, with a cluster, a zero-argument
    factory. ``settings``: ``SlideRunSettings`` (device, batch size, chunk size, workers, µm/px,
    resume, glass skipping, organ). With a dask ``client`` the chunks run on its workers.
    ``progress(done, total, message)`` counts chunks; ``tile_progress(done, total, "tiles")``
    follows the model tiles (local runs). ``cancel.is_set()`` stops after the chunk in hand
    (``Cancelled``; a rerun resumes). A second writer on ``out_path`` gets ``FolderLocked``.
    """
    s = settings or SlideRunSettings()
    workers = s.workers if client is None and s.workers and s.workers > 1 else None
    with cluster_client(workers) as own_client:
        return _segment(slide, Path(out_path), model, s, client or own_client, progress, cancel, tile_progress)


def _segment(slide: Any, out_path: Path, model: Any, s: SlideRunSettings, client: Any,
             progress: Progress | None, cancel: Any, tile_progress: Progress | None) -> SlideRun:
    from napari_glandseg.labels.store import LabelStore

    t_start = time.perf_counter()
    slide = with_mpp(slide, s.mpp)
    predictor, model_ref, card, source = _model_for_run(model, s, client)
    f = card.mpp / slide.mpp
    h0, w0 = slide.shape
    shape = GridPlacement.whole_slide((h0, w0), f).shape  # the store's level 0, from corner 0
    chunk = s.chunk_px
    margin = max(int(card.overlap_px), CONTEXT_PX)
    record = {
        "slide": str(slide.path), "slide_shape": [h0, w0], "slide_mpp": slide.mpp,
        "model": card.name, "model_mpp": card.mpp, "downsample": f, "shape": list(shape),
        "chunk_px": chunk, "margin_px": margin, "postprocess": card.postprocess, "organ": card.organ,
        "slide_id": slide_identity(slide),
        "tiles": [card.tile_px, card.overlap_px, "slide-grid"],
        "batch_size": predictor.batch_size if predictor is not None else s.batch_size,
    }
    store = _open_store(LabelStore, out_path, shape, chunk, card.mpp, slide, record, s.resume)
    run_dir = out_path / RUN_DIR
    plan = RunPlan.for_store(out_path, card, f)
    geoms = chunk_grid(shape, chunk, margin)
    t0 = time.perf_counter()
    tissue = _tissue(slide)
    save_mask(plan.glass_mask, slide, GLASS)
    layout = SlideTiles(card.tile_px, card.overlap_px)
    tiles_tissue = tissue_tiles(layout, shape, tissue[0], tissue[1], f)
    works = plan_work(geoms, layout, tiles_tissue, skip_glass=s.skip_glass)
    t_tissue = time.perf_counter() - t0
    todo = [w for w in works if not store.is_done(w.geom.cy, w.geom.cx)]
    done = len(geoms) - len(todo)
    runs = {(w.geom.cy, w.geom.cx) for w in works if w.runs_model}

    def release(work: ChunkWork) -> None:
        release_tiles(plan, work, store, runs, chunk, shape)
    _report(progress, done, len(geoms), "chunks")
    t0 = time.perf_counter()
    if todo:
        _write_record(run_dir, {**record, "stitched": False})
    if client is None:
        summaries = _run_local(slide, predictor, plan, todo, store, progress, cancel, done, len(geoms), release,
                               tile_progress)
    else:
        from napari_glandseg.inference.distributed_run import run_distributed

        summaries = run_distributed(
            client, slide, model_ref, s.device, s.batch_size, plan, todo,
            progress=progress, cancel=cancel, done=done, total=len(geoms), release=release,
        )
        store = LabelStore.open(out_path)  # workers wrote chunks and log entries
    t_chunks = time.perf_counter() - t0
    t0 = time.perf_counter()
    if todo or not read_record(out_path).get("stitched"):
        n_relabelled = stitch_store(store, geoms, Path(plan.seam_dir), card, progress)
        store.build_pyramid()
        _write_record(run_dir, {**record, "stitched": True})
        shutil.rmtree(run_dir / "tiles", ignore_errors=True)  # every chunk is done: no reader left
    else:
        n_relabelled = 0
    t_stitch = time.perf_counter() - t0
    tile_counts = {k: sum(x.get(k, 0) for x in summaries) for k in
                   ("tiles_run", "tiles_padding", "tiles_from_cache", "tiles_background", "cut_objects")}
    return SlideRun(
        store=store, model=source, shape=tuple(shape), downsample=f,
        chunks=len(geoms), chunks_run=len(todo), chunks_with_tissue=len(runs), tiles_with_tissue=tiles_tissue.count,
        **tile_counts, objects=sum(x.get("objects", 0) for x in summaries), relabelled_chunks=n_relabelled,
        model_calls=getattr(predictor, "calls", None), tiles=getattr(predictor, "tiles", None),
        t_tissue_s=t_tissue, t_chunks_s=t_chunks, t_stitch_s=t_stitch, t_total_s=time.perf_counter() - t_start,
    )


def stitch_store(store: Any, geoms: list[ChunkGeom], seam_dir: Path, card: Any,
                 progress: Progress | None = None) -> int:
    """Merge glands across chunk borders and drop small ones; returns chunks rewritten."""
    min_area_px = float(card.postprocess.get("min_area_um2", 0.0)) / (card.mpp * card.mpp)
    lut = build_lut(geoms, seam_dir, min_area_px)
    store.write_confidence(final_confidence(geoms, seam_dir, lut))
    tables = chunk_luts(lut)
    by_index = {g.index: g for g in geoms}
    # a chunk holds its own ids before the stitch and final ids after it: the table handles both
    for i, (index, table) in enumerate(sorted(tables.items())):
        g = by_index[index]
        data = np.asarray(store.read_region(g.y0, g.x0, g.h, g.w))
        store.write_chunk(g.cy, g.cx, apply_chunk_lut(data, index, table))
        _report(progress, i + 1, len(tables), "joining glands across chunk borders")
    return len(tables)


def _run_local(slide, predictor, plan, todo: list[ChunkWork], store, progress, cancel, done, total,
               release, tile_progress: Progress | None = None) -> list[dict]:
    """Chunks in order; post-processing and writing of chunk k overlap the model on chunk k+1
    (on a core the model lends them where none is spare: ``beside_model``).

    Tiles go to the model in full batches that may span two chunks (``tile_jobs.TileBatcher``).
    One writer thread keeps at most one chunk's probabilities besides those being blended.
    """
    from collections import deque
    from contextlib import closing

    from napari_glandseg.inference.beside_model import executor_beside

    summaries: list[dict] = []
    cache = plan.cache()
    n_tiles = len(set().union(*(w.tissue for w in todo if w.runs_model)))  # to run, or cached earlier
    _report(tile_progress, 0, n_tiles, "tiles")
    batcher = new_batcher(slide, predictor, plan, cache,
                          None if tile_progress is None else lambda n: tile_progress(n, n_tiles, "tiles"))
    active: deque = deque()
    pending = None
    with executor_beside(predictor, "glandseg-finish", borrow=True) as pool, closing(batcher):

        def collect() -> None:
            nonlocal done, pending
            if pending is None:
                return
            fut, work = pending
            summaries.append(fut.result())  # a failure in the writer surfaces here
            pending = None
            release(work)
            done += 1
            _report(progress, done, total, "chunks")
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"cancelled after {done}/{total} chunks; run again to resume")

        def submit(fn, work, *args) -> None:
            nonlocal pending
            collect()
            pending = (pool.submit(fn, *args), work)

        def finish_complete() -> None:
            while active and active[0].complete:
                job = active.popleft()
                submit(finish_chunk, job.work, slide, predictor.card, plan, job.work.geom, store, job.probabilities())

        for work in todo:
            if not work.runs_model:
                submit(write_empty, work, work.geom, store)
                continue
            job = new_job(plan, work, predictor.n_classes, cache)
            active.append(job)
            batcher.add(job)
            if len(active) > MAX_ACTIVE:
                batcher.flush()  # bound memory: chunks with few tiles each would pile up
            finish_complete()
        batcher.flush()
        finish_complete()
        collect()
    if summaries:
        summaries[-1] = {**summaries[-1], **batcher.stats}  # counted once for the whole run
    return summaries


def _model_for_run(model: Any, s: SlideRunSettings, client: Any):
    """(local predictor or None, what workers load, card with the organ's post-processing,
    the model's ``ModelSource``)."""
    import torch

    from napari_glandseg.model.resolve import ModelSource, resolve

    names_a_model = model is None or isinstance(model, str | os.PathLike | ModelSource)
    source = resolve(model) if names_a_model else None
    if client is None:
        pred = get_predictor(source.load(s.device) if source is not None else model, s.device, s.batch_size,
                             organ=s.organ)
        return pred, None, pred.card, source or ModelSource.in_memory(pred.card)
    if source is not None:
        ref = ("source", source)  # the card is read here; each worker loads the weights once
    elif isinstance(model, torch.nn.Module):
        # shipped once to every worker (broadcast), never with each task
        ref = ("object", client.scatter(model, broadcast=True, hash=False))
        source = ModelSource.in_memory(model.card)
    else:
        ref = ("factory", model)
        source = ModelSource.in_memory(model().card)
    return None, ref, source.card.for_organ(s.organ), source


def _comparable(key: str, value: Any) -> Any:
    """A run record's value as a resume compares it: post-processing with its defaults filled in,
    so that a run begun before a setting existed resumes where the setting is at its default."""
    if key == "postprocess" and isinstance(value, dict):
        from napari_glandseg.model.card import DEFAULT_POSTPROCESS

        return {**DEFAULT_POSTPROCESS, **value}
    return value


def _open_store(LabelStore, path: Path, shape, chunk, mpp, slide, record, resume):
    run_dir = path / RUN_DIR
    if path.exists():
        prev = read_record(path)
        if not prev:
            raise GlandsegError(f"{path}: exists and is not a label store written by segment_slide; "
                                "remove it or choose another output")
        if resume:
            check_same_slide(path, prev.get("slide_id"), record["slide_id"], prev.get("slide"))
            keys = ("slide_shape", "model", "model_mpp", "chunk_px", "margin_px", "shape", "postprocess",
                    "tiles", "batch_size")
            diff = [k for k in keys if _comparable(k, prev.get(k)) != _comparable(k, _jsonable(record.get(k)))]
            if diff:
                raise GlandsegError(
                    f"{path}: cannot resume: the earlier run differs in {', '.join(diff)}; "
                    "run without resume to start over"
                )
            return LabelStore.open(path)
        shutil.rmtree(path)
    store = LabelStore.create(path, shape, chunk_px=chunk, mpp=mpp, source=str(slide.path))
    _write_record(run_dir, {**record, "stitched": False})
    return store


def _jsonable(v: Any) -> Any:
    import json

    return json.loads(json.dumps(v))


def read_record(store_path: str | os.PathLike) -> dict:
    """The run record (``run.json``) a ``segment_slide`` call left in its store ({} when none)."""
    import json

    p = Path(store_path) / RUN_DIR / RECORD
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_record(run_dir: Path, record: dict) -> None:
    write_json_atomic(run_dir / RECORD, record)


def _tissue(slide: Any) -> tuple[np.ndarray, float]:
    from napari_glandseg.slide.on_tissue import cached_tissue_mask

    return cached_tissue_mask(slide)  # shared with Segment view on the same slide


def _report(progress: Progress | None, done: int, total: int, message: str) -> None:
    if progress is not None:
        progress(done, total, message)


def segment_many(
    paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    mpp: float | None = None,
    client: Any = None,
    max_parallel: int = 4,
    store_name: str = "labels.ome.zarr",
    **kwargs: Any,
) -> dict[str, Path]:
    """Segment several slides into ``out_dir/<slide name>/<store_name>`` (same-named slides get
    ``<name>-<parent folder>``, see ``outputs.output_folders``).

    With a ``client`` up to ``max_parallel`` slides feed the cluster at once, so that workers
    stay busy across slide boundaries; without one they run one after the other.
    """
    from concurrent.futures import ThreadPoolExecutor

    from napari_glandseg.labels.outputs import output_folders
    from napari_glandseg.slide import open_slide

    out_dir = Path(out_dir)
    paths = list(paths)
    folders = dict(zip(map(str, paths), output_folders(paths), strict=True))

    def one(p: str | os.PathLike) -> tuple[str, Path]:
        slide = open_slide(p, mpp=mpp)
        target = out_dir / folders[str(p)] / store_name
        segment_slide(slide, target, client=client, **kwargs)
        slide.close()
        return str(p), target

    if client is None or len(paths) <= 1:
        return dict(one(p) for p in paths)
    with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(paths)))) as pool:
        return dict(pool.map(one, paths))


__all__ = ["DEFAULT_CHUNK_PX", "GLASS_MASK_FILE", "SlideRun", "SlideRunSettings", "read_record", "segment_many",
           "segment_slide", "stitch_store"]
