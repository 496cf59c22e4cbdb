"""Checks that ``glandseg segment`` makes before it loads a model, and the errors it gives after.

Options and slides are checked first (seconds), so that a typo or an unreadable slide is not
found after the model has loaded, or after the first slide of a batch has run for an hour.
"""

from __future__ import annotations

import argparse
import errno
import math
import shutil
from pathlib import Path
from typing import Any

from napari_glandseg.errors import GlandsegError, check_mpp

#: The smallest and largest store chunk edge (model px) a run accepts.
CHUNK_PX_RANGE = (16, 16384)


def check_options(args: argparse.Namespace) -> None:
    """Numbers that must be finite and positive, chunk sizes in range: else ``GlandsegError``."""
    if args.mpp is not None:
        check_mpp(args.mpp, "--mpp (the slides' µm per pixel)")
    lo, hi = CHUNK_PX_RANGE
    if args.chunk_px is not None and not lo <= args.chunk_px <= hi:
        raise GlandsegError(f"--chunk-px must be between {lo} and {hi} model px, got {args.chunk_px}")
    for name in ("batch_size", "workers"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise GlandsegError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if getattr(args, "tta", False) and (getattr(args, "workers", None) or getattr(args, "scheduler", None)):
        raise GlandsegError("--tta runs in this process only: leave out --workers/--scheduler, or --tta")


def preflight(path: str, args: argparse.Namespace, region: tuple[int, int, int, int] | None) -> None:
    """Open the slide and check what the run needs: its µm/px, the region on it, the tissue cost."""
    from napari_glandseg.slide import open_slide
    from napari_glandseg.slide.find_tissue import check_whole_slide_cost
    from napari_glandseg.slide.on_tissue import RUN_MASK_MPP

    with open_slide(path, mpp=args.mpp) as slide:
        if slide.mpp is None:
            raise GlandsegError(f"{slide.path}: the file does not say its µm/px; pass --mpp")
        h0, w0 = slide.shape
        if region is not None:
            y, x, h, w = region
            if y >= h0 or x >= w0:
                raise GlandsegError(
                    f"{slide.path}: --region {x},{y},{w},{h} lies outside the slide ({w0} × {h0} px, W × H)"
                )
        else:
            check_whole_slide_cost(slide, RUN_MASK_MPP)  # at the µm/px of the run's masks


def write_failure(exc: OSError, out_dir: Path, *, need_bytes: int | None, resumes: bool) -> GlandsegError:
    """A clear error for an output that cannot be written: which path, why, what it needs, what next."""
    where = Path(exc.filename) if exc.filename else out_dir
    short_write = exc.errno is None and "written" in str(exc)  # numpy's message for a short write
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or short_write:
        free = _free_bytes(where)
        what = "disk quota exceeded" if exc.errno == errno.EDQUOT else "no space left on the device"
        parts = [f"{where}: {what}" + (f" ({_size(free)} free)" if free is not None else "")]
        if need_bytes:
            parts.append(f"the label pyramid needs up to {_size(need_bytes)} (uncompressed; usually much less)")
        parts.append("free some space and run the same command again: it resumes where it stopped"
                     if resumes else "free some space and run the same command again")
        return GlandsegError("; ".join(parts))
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return GlandsegError(f"{where}: cannot write there ({exc.strerror}); choose another --out")
    return GlandsegError(f"{where}: cannot write the results ({exc.strerror or exc})")


def store_bytes(slide_shape: tuple[int, int], slide_mpp: float, model_mpp: float) -> int:
    """Upper bound of a label store's size: int32 level 0 at the model's µm/px plus its pyramid."""
    f = model_mpp / slide_mpp
    return int(4 * math.ceil(slide_shape[0] / f) * math.ceil(slide_shape[1] / f) * 4 / 3)


def whole_run(stats: dict[str, Any], previous: dict[str, Any] | None, store: Any) -> dict[str, Any]:
    """The summary's ``run`` block for the whole run, over every session of it.

    ``previous`` is the run block of the last summary in the folder: its sessions count when
    it describes the same store (same ``uid``). Chunks finished by sessions that left no
    summary (killed) are counted as ``chunks_run_unrecorded``; their model calls are unknown.
    """
    uid = getattr(store, "uid", None)
    session = {k: v for k, v in stats.items() if k != "shape"}
    same = bool(previous) and uid is not None and previous.get("store_uid") == uid
    sessions = list(previous.get("sessions", [])) if same else []
    sessions.append(session)
    done = len(store.done_chunks()) if hasattr(store, "done_chunks") else session.get("chunks_run", 0)
    total: dict[str, Any] = {"store_uid": uid, "chunks": session.get("chunks"), "chunks_run": done,
                             "downsample": session.get("downsample")}
    for key in ("model_calls", "tiles", "objects", "relabelled_chunks", "t_tissue_s", "t_chunks_s",
                "t_stitch_s", "t_total_s"):
        values = [s.get(key) for s in sessions]
        total[key] = sum(v for v in values if v is not None) if any(v is not None for v in values) else None
    recorded = sum(int(s.get("chunks_run") or 0) for s in sessions)
    total["chunks_run_unrecorded"] = max(0, done - recorded)
    total["sessions"] = sessions
    return total


def _free_bytes(path: Path) -> int | None:
    for p in (path, *path.parents):
        try:
            return shutil.disk_usage(p).free
        except OSError:
            continue
    return None


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
