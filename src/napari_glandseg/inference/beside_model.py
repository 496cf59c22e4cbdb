"""Where the work beside the model runs: its own thread when a core is spare for it; else a
thread that borrows one of the model's cores while it works, or the model's own thread.

On a CPU whose free cores all run the model's threads (2 torch threads on 2 cores, the usual
laptop case), a helper thread that just starts takes a core from one of the model's threads, and
torch's threads wait for the slowest at every operation: the model runs at a fraction of its
speed for as long as the helper works (``benchmarks/cpu_inference.py --load 1``: 2 threads beside
one busy process, 1.49 tiles/s against 9.7 alone). So:

* work that lasts many batches (a chunk's post-processing, ~0.5 s) *borrows* a core: while it
  runs the model takes one thread fewer (``cores_lent``; the Predictor asks before each batch),
  and the two overlap without the slowdown (1 thread beside a busy core: 6.3 tiles/s);
* work shorter than a batch (reading a tile) runs in the model's thread between batches: lending
  a core for a whole batch would cost more than the read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

_LENT = [0]  # helper threads at work now on a core borrowed from the model
_LENT_LOCK = threading.Lock()


class InlineExecutor(Executor):
    """An Executor that runs each task at ``submit``, in the caller's thread (a done Future)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - delivered by result(), as a thread's would be
            fut.set_exception(exc)  # (Ctrl-C and exits go straight up, as they would here)
        return fut


class LendingPool(ThreadPoolExecutor):
    """One helper thread whose tasks borrow a core from the model while they run."""

    def __init__(self, name: str) -> None:
        super().__init__(max_workers=1, thread_name_prefix=name)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        def borrowing() -> Any:
            with _LENT_LOCK:
                _LENT[0] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                with _LENT_LOCK:
                    _LENT[0] -= 1

        return super().submit(borrowing)


def cores_lent() -> int:
    """Cores the model's threads should leave to helpers now (``LendingPool`` tasks running)."""
    return _LENT[0]


def spare_core(predictor: Any) -> bool:
    """Whether a helper thread would run beside ``predictor`` without taking a core from it: on a
    GPU always; on a CPU when more cores are free than the predictor's torch threads."""
    threads = getattr(predictor, "threads", None)
    if threads is None:
        return True
    from napari_glandseg.model.precision import free_cores_now

    return free_cores_now() > threads


def executor_beside(predictor: Any, name: str, *, borrow: bool = False) -> Executor:
    """One helper thread named ``name`` where a core is spare for it (``spare_core``); else, for
    long work (``borrow``) where the model has a core to lend, a ``LendingPool``; else inline."""
    if spare_core(predictor):
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    if borrow and (getattr(predictor, "threads", None) or 1) > 1:
        return LendingPool(name)
    return InlineExecutor()
