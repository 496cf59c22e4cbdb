"""Precision and CPU threads chosen from the machine, not from one benchmark machine.

bf16 autocast on a CPU is fast only where the CPU runs bf16 natively (AVX512-BF16 or AMX): on
one with AVX2 alone it is emulated and about 9× slower than fp32. And two torch threads on two
cores beside one busy process are slower than one. So on a CPU:

* ``resolve_precision("auto")`` gives bf16 only where the CPU (and what torch and oneDNN are
  allowed to use: ``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``) has native bf16, else fp32;
  the Predictor then times both on its first batch and keeps the faster (``pick_faster``).
* ``free_cores()`` counts the cores this process may run on (its affinity, not the cores
  present) that other processes are not using right now; ``cpu_threads()`` turns that into a
  torch thread count.

``GLANDSEG_PRECISION`` (fp32, bf16) and ``GLANDSEG_THREADS`` (a number) in the environment
replace "auto" everywhere: for runs that must give the same bits every time (the test suite).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
_NATIVE_FLAGS = {"avx512_bf16", "amx_bf16"}


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether bf16 matrix kernels run natively here, as torch and oneDNN are allowed to use the CPU."""
    if not _NATIVE_FLAGS & cpu_flags():
        return False
    if not torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512"):
        return False  # ATEN_CPU_CAPABILITY=avx2 (or an older CPU)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    return isa == "ALL" or "BF16" in isa or "AMX" in isa or isa.startswith("AVX10")


def cpu_description() -> str:
    """e.g. "AVX512 (native bf16)" / "AVX2 (bf16 emulated)": what a benchmark line should say."""
    cap = torch.backends.cpu.get_cpu_capability()
    return f"{cap} ({'native bf16' if cpu_has_native_bf16() else 'bf16 emulated'})"


def resolve_precision(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = _env("GLANDSEG_PRECISION", "auto")
        if precision not in PRECISIONS:
            raise ValueError(f"GLANDSEG_PRECISION must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32" or device.type == "mps":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_native_bf16() else None


def fixed_by_environment() -> bool:
    """Whether GLANDSEG_PRECISION fixes what "auto" means (then nothing is timed)."""
    return _env("GLANDSEG_PRECISION", "auto") != "auto"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip().lower() or default


def precision_name(dtype: torch.dtype | None) -> str:
    return "fp32" if dtype is None else str(dtype).replace("torch.", "").replace("bfloat16", "bf16").replace(
        "float16", "fp16")


def pick_faster(run: Callable[[torch.dtype | None], object], candidates: tuple[torch.dtype | None, ...],
                repeats: int = 1, margin: float = 1.1) -> tuple[torch.dtype | None, dict[str, float]]:
    """Time ``run(dtype)`` for each candidate (after one warm-up call each) and return the first
    candidate unless another is more than ``margin`` times faster (so that two near-equal
    timings on a busy machine do not flip the choice, and with it the results, run to run),
    with the seconds each took."""
    seconds = {}
    for dtype in candidates:
        run(dtype)  # warm-up: first-call allocations and kernel choices
        t0 = time.perf_counter()
        for _ in range(repeats):
            run(dtype)
        seconds[precision_name(dtype)] = (time.perf_counter() - t0) / repeats
    fastest = min(candidates, key=lambda d: seconds[precision_name(d)])
    first = candidates[0]
    if seconds[precision_name(first)] <= margin * seconds[precision_name(fastest)]:
        return first, seconds
    return fastest, seconds


def allowed_cores() -> list[int]:
    """The CPUs this process may run on (its affinity; all CPUs where that is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def free_cores(sample_s: float = 0.2) -> int:
    """Cores of this process's affinity that others are not using now (at least 1).

    Measured over ``sample_s`` seconds from the kernel's per-CPU counters, so a training run or
    another segmentation beside this one is seen at once (the load average lags by minutes).
    """
    import psutil

    cores = allowed_cores()
    own0 = _own_cpu_seconds()
    busy = psutil.cpu_percent(interval=sample_s, percpu=True)
    own = max(0.0, _own_cpu_seconds() - own0) / sample_s  # this process's share is not "others"
    return free_of(busy, cores, own)


#: how long a count of the free cores is trusted: other work comes and goes, but a 0.2-s count
#: on every call would cost a click or a short Segment view more than it saves
FREE_CORES_MAX_AGE_S = 60.0
_FREE_CORES: list = [float("-inf"), 1]  # (when counted, count)


def free_cores_now() -> int:
    """:func:`free_cores`, counted again only when the last count is older than ``FREE_CORES_MAX_AGE_S``."""
    if time.monotonic() - _FREE_CORES[0] > FREE_CORES_MAX_AGE_S:
        _FREE_CORES[1] = free_cores()
        _FREE_CORES[0] = time.monotonic()
    return _FREE_CORES[1]


def free_of(busy_percent: list[float], cores: list[int], own_cores: float) -> int:
    """Free cores among ``cores`` given each CPU's busy percent and this process's own use."""
    others = sum(busy_percent[c] for c in cores if c < len(busy_percent)) / 100.0 - own_cores
    return max(1, min(len(cores), round(len(cores) - max(0.0, others))))


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def cpu_threads(requested: int | None = None, helpers: int = 0) -> int:
    """Torch threads for a CPU run: ``requested`` as given, else the free cores less ``helpers``
    (threads of this process that also want a core: a tile reader, post-processing) where that
    leaves at least two, at least 1."""
    if requested is None and _env("GLANDSEG_THREADS", ""):
        try:
            requested = int(_env("GLANDSEG_THREADS", ""))
        except ValueError:
            raise ValueError(f"GLANDSEG_THREADS must be a number, got {os.environ['GLANDSEG_THREADS']!r}") from None
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be >= 1, got {requested}")
        return int(requested)
    free = free_cores_now()
    return max(1, free - helpers if free - helpers >= 2 else free)


def threads_fixed() -> bool:
    """Whether ``GLANDSEG_THREADS`` fixes the torch threads of every CPU run."""
    return bool(_env("GLANDSEG_THREADS", ""))


def apply_cpu_threads(requested: int | None = None, helpers: int = 0) -> int:
    """Set torch's intra-op threads with :func:`cpu_threads`; returns the count. Cheap enough to
    call before every batch or click: the free cores are counted at most once a minute."""
    n = cpu_threads(requested, helpers)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
