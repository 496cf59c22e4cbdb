"""Run a model on batches of uint8 tiles: device, channels_last, mixed precision, reused buffers.

A peer engine ran the same network 1.5–2× slower than a bare loop because every batch made
fresh large allocations (page faults, system time). Here the host input buffer (pinned on
CUDA) and the output buffer are allocated once per batch shape and reused; on CUDA an
out-of-memory error halves the batch and retries instead of failing the run.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from napari_glandseg.errors import GlandsegError
from napari_glandseg.inference.beside_model import cores_lent
from napari_glandseg.model.device import pick_device
from napari_glandseg.model.outputs import to_probabilities
from napari_glandseg.model.precision import (
    apply_cpu_threads,
    cpu_description,
    cpu_threads,
    fixed_by_environment,
    pick_faster,
    precision_name,
    resolve_precision,
    threads_fixed,
)

log = logging.getLogger(__name__)

#: precision chosen by timing, per (model, tile shape, threads): one timing per process
_TIMED: dict[tuple, tuple[torch.dtype | None, dict[str, float]]] = {}


def default_batch_size(device: torch.device, tile_px: int = 384) -> int:
    """Tiles per batch: enough to keep the device busy, small enough for its memory."""
    px = tile_px * tile_px
    if device.type == "cuda":
        try:
            free = torch.cuda.mem_get_info(device)[0]
        except Exception:  # noqa: BLE001 - a query failure only changes the guess
            free = 8 << 30
        # a generous ~2 kB of activations per input pixel; OOM retry halves if it is too many
        return int(max(1, min(64, free // 2 // (px * 2048))))
    if device.type == "mps":
        return 8
    # CPU: one 384² tile at a time is the fastest (benchmarks/cpu_inference.py on 2 cores: 11.0
    # tiles/s against 8.1 at batch 4, the same GlaS testA and RINGS metrics; the demo 16 % faster)
    return 8 if px <= 256 * 256 else 1


class Predictor:
    """``predict(tiles uint8 N×H×W×3) -> float32 N×C×H×W`` class probabilities.

    ``model`` is any module with ``.card`` (ModelCard), ``.normalize(uint8 NHWC tensor)`` and a
    forward returning N×C×H×W logits.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        amp: bool = True,
        precision: str = "auto",
        threads: int | None = None,
        organ: str | None = None,
    ):
        """``precision`` auto|fp32|bf16 (``amp=False`` means fp32); ``threads``: torch threads on
        a CPU (default: the cores free to this process, counted again every minute); ``organ``: the
        card's post-processing profile (default: the card's own default organ)."""
        if not hasattr(model, "card") or not hasattr(model, "normalize"):
            raise GlandsegError("the model needs a .card (ModelCard) and a .normalize method")
        self.device = pick_device(device)
        self.precision = precision if amp else "fp32"
        try:
            self.amp_dtype = resolve_precision(self.device, self.precision)
        except ValueError as exc:
            raise GlandsegError(str(exc)) from None
        self._threads_asked = threads
        self.threads = apply_cpu_threads(threads, helpers=1) if self.device.type == "cpu" else None
        # auto on a CPU with native bf16: both are timed on the first batch, the faster kept
        self._timing_pending = (self.precision == "auto" and self.device.type == "cpu" and self.amp_dtype is not None
                                and not fixed_by_environment())
        self.timing: dict[str, float] = {}
        self.model = model.to(self.device)
        if self.device.type != "mps":  # channels_last: faster convolutions on cpu and cuda
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.eval()
        try:
            self.card = model.card.for_organ(organ)
        except ValueError as exc:
            raise GlandsegError(str(exc)) from None
        self.n_classes = len(self.card.channels)  # output channels: classes, then maps
        if batch_size is not None and batch_size < 1:
            raise GlandsegError(f"batch size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size or default_batch_size(self.device, self.card.tile_px))
        self.calls = 0  # forward calls (benchmarks count them)
        self.tiles = 0  # tiles run through the model
        self._in: torch.Tensor | None = None  # host input buffer, reused
        self._out: np.ndarray | None = None  # host output buffer, reused

    # -- buffers ------------------------------------------------------------------------
    def _input_buffer(self, n: int, h: int, w: int) -> torch.Tensor:
        buf = self._in
        if buf is None or buf.shape[0] < n or buf.shape[1:3] != (h, w):
            pin = self.device.type == "cuda"
            buf = torch.empty((max(n, self.batch_size), h, w, 3), dtype=torch.uint8, pin_memory=pin)
            self._in = buf
        return buf[:n]

    def _output_buffer(self, n: int, h: int, w: int) -> np.ndarray:
        buf = self._out
        if buf is None or buf.shape[0] < n or buf.shape[2:] != (h, w):
            buf = np.empty((max(n, self.batch_size), self.n_classes, h, w), np.float32)
            self._out = buf
        return buf[:n]

    # -- running ------------------------------------------------------------------------
    def predict(self, tiles: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Probabilities for N×H×W×3 uint8 tiles (H, W multiples of 32).

        Without ``out`` the result is a view of a buffer that the next call overwrites: copy
        it if you keep it.
        """
        tiles = np.asarray(tiles)
        if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
            raise GlandsegError(f"expected N×H×W×3 uint8 tiles, got {tiles.dtype} {tiles.shape}")
        n, h, w = tiles.shape[:3]
        if h % 32 or w % 32:
            raise GlandsegError(f"tile sides must be multiples of 32, got {h}×{w}")
        if out is None:
            out = self._output_buffer(n, h, w)
        if self.threads is not None:  # other work comes and goes during a long run
            self._set_threads()
        if self._timing_pending and n:
            dtype = self.amp_dtype
            try:
                self._time_precisions(tiles[: self.batch_size])
            except Exception:  # noqa: BLE001 - the run below reports a failing model properly
                self.amp_dtype = dtype
        start = 0
        while start < n:
            stop = min(n, start + self.batch_size)
            try:
                self._run(tiles[start:stop], out[start:stop])
            except torch.cuda.OutOfMemoryError:
                if stop - start <= 1:
                    raise GlandsegError(
                        f"out of GPU memory with a batch of one {h}×{w} tile; use a smaller "
                        "model or run on the CPU (--device cpu)"
                    ) from None
                self.batch_size = max(1, (stop - start) // 2)
                log.warning("out of GPU memory: batch size lowered to %d", self.batch_size)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue  # retry the same tiles with the smaller batch
            start = stop
        return out

    def _set_threads(self) -> None:
        """Torch threads for the next batch: the free cores (``cpu_threads``), less the cores
        lent to a whole-slide run's helpers at work now (``beside_model``) unless the count was
        fixed (``threads``, ``GLANDSEG_THREADS``). ``self.threads`` stays the count without them."""
        self.threads = cpu_threads(self._threads_asked, helpers=1)
        lent = 0 if self._threads_asked is not None or threads_fixed() else cores_lent()
        use = max(1, self.threads - lent)
        if torch.get_num_threads() != use:
            torch.set_num_threads(use)

    def _time_precisions(self, tiles: np.ndarray) -> None:
        """Keep the faster of bf16 and fp32 on this batch (once per model, shape and threads)."""
        self._timing_pending = False
        key = (self.card.name, tiles.shape, self.threads)
        if key not in _TIMED:
            scratch = np.empty((tiles.shape[0], self.n_classes, *tiles.shape[1:3]), np.float32)

            def run(dtype):
                self.amp_dtype = dtype
                self._run(tiles, scratch)

            calls, n_tiles = self.calls, self.tiles
            _TIMED[key] = pick_faster(run, (torch.bfloat16, None))
            self.calls, self.tiles = calls, n_tiles  # the timing runs are not the caller's
        self.amp_dtype, self.timing = _TIMED[key]
        log.info("precision %s (timed: %s)", precision_name(self.amp_dtype), self.timing)

    def _run(self, tiles: np.ndarray, out: np.ndarray) -> None:
        n, h, w = tiles.shape[:3]
        host = self._input_buffer(n, h, w)
        host.numpy()[...] = tiles  # copy into the reused (pinned) buffer
        x = host.to(self.device, non_blocking=True)
        dt = self.amp_dtype
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dt, enabled=dt is not None):
            logits = self.model(self.model.normalize(x))
            if isinstance(logits, dict):
                logits = logits["logits"]
            probs = to_probabilities(logits, len(self.card.classes))
        self.calls += 1
        self.tiles += n
        if probs.shape != (n, self.n_classes, h, w):
            raise GlandsegError(
                f"model {self.card.name!r} returned {tuple(probs.shape)}, expected "
                f"{(n, self.n_classes, h, w)} (channels {self.card.channels})"
            )
        out[...] = probs.cpu().numpy()

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        return self.predict(tiles)

    def info(self) -> dict[str, Any]:
        """What was chosen and why: device, batch, precision (and its timing), threads, CPU kind."""
        out = {
            "device": str(self.device),
            "batch_size": self.batch_size,
            "precision": precision_name(self.amp_dtype),
            "precision_asked": self.precision,
            "organ": self.card.organ,
        }
        if self.timing:
            out["precision_timing_s"] = {k: round(v, 4) for k, v in self.timing.items()}
        if self.device.type == "cpu":
            out["threads"] = self.threads
            out["cpu"] = cpu_description()
        return out
