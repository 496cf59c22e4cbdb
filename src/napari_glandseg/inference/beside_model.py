"""Where the work beside the model runs: its own thread when a core is spare for it, else inline.

Tile reading and a chunk's post-processing overlap the model only where that is free. On a CPU
whose free cores all run the model's threads (2 torch threads on 2 cores, the usual laptop case),
a helper thread does not overlap anything: it takes a core from one of the model's threads, and
torch's threads wait for the slowest at every operation, so the model runs at a fraction of its
speed for as long as the helper works (``benchmarks/cpu_inference.py --load 1``: 2 threads beside
one busy process, 1.49 tiles/s against 9.7 alone). There the same work runs in the model's own
thread between batches: the model never shares its cores, and the run is the sum of the two.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any


class InlineExecutor(Executor):
    """An Executor that runs each task at ``submit``, in the caller's thread (a done Future)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered by result(), as a thread's would be
            fut.set_exception(exc)
        return fut


def spare_core(predictor: Any) -> bool:
    """Whether a helper thread would run beside ``predictor`` without taking a core from it: on a
    GPU always; on a CPU when more cores are free than the predictor's torch threads."""
    threads = getattr(predictor, "threads", None)
    if threads is None:
        return True
    from napari_glandseg.model.precision import free_cores_now

    return free_cores_now() > threads


def executor_beside(predictor: Any, name: str) -> Executor:
    """One helper thread named ``name`` where a core is spare for it (``spare_core``), else inline."""
    if spare_core(predictor):
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    return InlineExecutor()
