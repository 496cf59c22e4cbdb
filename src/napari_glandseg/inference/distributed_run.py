"""Whole-slide chunks as dask.distributed tasks.

Tasks carry only small specs: the slide's path and µm/px, the model reference (a resolved
``model.resolve.ModelSource``, a picklable factory, or a module scattered once to every worker), the run
plan and the chunk's geometry. Each worker process keeps the opened slide, the loaded model
(wrapped in a Predictor with its reused buffers) and the opened label store in a module-level
cache, so a model is loaded once per worker, not once per task. At most two tasks per worker
are in flight, which bounds memory on the workers and on the client.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from napari_glandseg.errors import Cancelled, GlandsegError
from napari_glandseg.inference.chunks import RunPlan, run_chunk
from napari_glandseg.inference.tile_jobs import ChunkWork

#: Per-process cache on the workers: slides, predictors, stores (a few of each, newest last).
_CACHE: dict[Any, Any] = {}
_LIMITS = {"model": 2, "slide": 8, "store": 4}
_LOCK = threading.Lock()
_STATS = {"model_loads": 0, "slide_opens": 0, "chunks": 0}


def _cached(key: tuple, make) -> Any:
    with _LOCK:
        if key in _CACHE:
            _CACHE[key] = _CACHE.pop(key)  # most recently used last
            return _CACHE[key]
        same_kind = [k for k in _CACHE if k[0] == key[0]]
        for k in same_kind[: max(0, len(same_kind) - _LIMITS[key[0]] + 1)]:
            del _CACHE[k]  # bounded: a long-lived worker does not pile up models
        _CACHE[key] = make()
        return _CACHE[key]


def _predictor(model_ref: tuple[str, Any], device: Any, batch_size: int | None):
    from napari_glandseg.inference.predictor import Predictor

    kind, ref = model_ref

    def make():
        _STATS["model_loads"] += 1
        if kind == "source":  # a model.resolve.ModelSource: the weights the client resolved
            model = _load_source(ref, device)
        elif kind == "factory":
            model = ref()
        else:  # a scattered module: already in this worker's memory
            model = ref
        # dask runs one task thread per core: one torch thread each, or they oversubscribe the cores
        return Predictor(model, device=device, batch_size=batch_size, threads=1)

    key = ("model", kind, _model_key(kind, ref), str(device), batch_size)
    return _cached(key, make)


def _load_source(source: Any, device: Any):
    """The client's model on this worker: its weights file, or, on a worker where that path does
    not exist (another machine, another install), the same name resolved here."""
    if source.weights is not None and not source.weights.exists() and source.kind in ("preset", "user"):
        from napari_glandseg.model.resolve import resolve

        return resolve(source.spec or source.name).load(device)
    return source.load(device)


def _model_key(kind: str, ref: Any) -> Any:
    if kind == "object":
        return id(ref)
    if kind == "source":
        return (ref.kind, ref.name, str(ref.weights))
    return repr(ref)


def _slide(path: str, mpp: float | None):
    from napari_glandseg.slide import open_slide

    def make():
        _STATS["slide_opens"] += 1
        return open_slide(path, mpp=mpp)

    return _cached(("slide", path, mpp), make)


def _store(path: str, run_id: str):
    from napari_glandseg.labels.store import LabelStore

    # keyed by run: a store re-created at the same path must not be served from an old handle
    return _cached(("store", path, run_id), lambda: LabelStore.open(path))


def chunk_task(slide_spec: tuple[str, float | None], model_ref: tuple[str, Any], device: Any,
               batch_size: int | None, plan: RunPlan, work: ChunkWork) -> dict:
    """One chunk on a worker (see ``chunks.run_chunk``)."""
    slide = _slide(*slide_spec)
    predictor = _predictor(model_ref, device, batch_size) if work.runs_model else None
    out = run_chunk(slide, predictor, plan, work, _store(plan.store_path, plan.run_id))
    _STATS["chunks"] += 1
    return out


def worker_stats() -> dict[str, int]:
    """This process's counts (``client.run(worker_stats)`` in tests)."""
    return dict(_STATS)


def run_distributed(client: Any, slide: Any, model_ref: tuple[str, Any], device: Any,
                    batch_size: int | None, plan: RunPlan, todo: list[ChunkWork], *, progress=None,
                    cancel=None, done: int = 0, total: int = 0, release=None) -> list[dict]:
    """Run ``todo`` on the cluster, at most 2 tasks per worker in flight; returns summaries.

    ``release(work)`` is called here as each chunk is done (it frees cached tiles).
    """
    import uuid

    from distributed import as_completed

    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    limit = 2 * n_workers
    slide_spec = (str(slide.path), slide.mpp)
    pending = iter(todo)
    summaries: list[dict] = []
    works: dict[str, ChunkWork] = {}
    ac = as_completed()
    token = uuid.uuid4().hex[:8]  # task keys unique per run

    def submit_next() -> bool:
        w = next(pending, None)
        if w is None:
            return False
        fut = client.submit(chunk_task, slide_spec, model_ref, device, batch_size, plan, w, pure=False,
                            key=f"glandseg-chunk-{w.geom.cy}-{w.geom.cx}-{token}")
        works[fut.key] = w
        ac.add(fut)
        return True

    for _ in range(limit):
        if not submit_next():
            break
    stopping = False
    try:
        for fut in ac:
            summaries.append(fut.result())  # a failed chunk raises here, with its error
            if release is not None:
                release(works.pop(fut.key))
            done += 1
            if progress is not None:
                progress(done, total, "chunks")
            if cancel is not None and cancel.is_set():
                stopping = True  # let the chunks in flight finish writing, start no more
            if not stopping:
                submit_next()
    except BaseException:
        for fut in list(ac.futures):
            fut.cancel()
        raise
    if stopping:
        raise Cancelled(f"cancelled after {done}/{total} chunks; run again to resume")
    return summaries


@contextmanager
def cluster_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A dask.distributed client for the ``with`` block: connected to ``scheduler`` when given,
    else on a local cluster of ``workers`` processes (one thread each, no dashboard); None when
    neither is asked for. Whatever is started here is closed on exit."""
    if not (workers or scheduler):
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise GlandsegError("a dask cluster (workers / scheduler) needs dask.distributed: "
                            "pip install 'napari-glandseg[distributed]'") from None
    cluster = None if scheduler else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                  dashboard_address=None)
    client = Client(scheduler) if scheduler else Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
