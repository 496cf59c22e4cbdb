"""Which slide is this? A cheap identity (path, size, levels, pixel fingerprint) kept with outputs.

A resumable output must never be continued with another slide's pixels: two files can share a
name and a size. The fingerprint hashes the smallest level the file stores (whole when it is
small, else a grid of small boxes spread over it), so it costs a few tile reads, never level 0
of a big slide when lower levels exist.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from napari_glandseg.errors import GlandsegError

#: A stored level up to this many pixels is hashed whole; a larger one is sampled.
WHOLE_LEVEL_PX = 2_500_000
#: Sampled fingerprints read GRID × GRID boxes of BOX_PX² pixels.
GRID = 6
BOX_PX = 48


def slide_identity(slide: Any) -> dict[str, Any]:
    """JSON-able facts that tell one slide from another: path, bytes, stored levels, fingerprint."""
    path = os.fspath(slide.path)
    try:
        size = os.path.getsize(path) if os.path.isfile(path) else None
    except OSError:
        size = None
    native = max(1, int(getattr(slide, "native_levels", 1) or 1))
    levels = [list(s) for s in slide.level_shapes[:native]]
    return {"path": path, "bytes": size, "levels": levels, "fingerprint": fingerprint(slide, native - 1)}


def fingerprint(slide: Any, level: int) -> str:
    """Hash of the pixels of stored ``level`` (whole if small, else GRID² boxes of BOX_PX²)."""
    h, w = slide.level_shapes[level]
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.asarray([level, h, w], np.int64).tobytes())
    if h * w <= WHOLE_LEVEL_PX:
        digest.update(np.ascontiguousarray(slide.read_region(level, 0, 0, h, w)).tobytes())
        return digest.hexdigest()
    bh, bw = min(BOX_PX, h), min(BOX_PX, w)
    for i in range(GRID):
        for j in range(GRID):
            y = int((i + 0.5) * h / GRID - bh / 2)
            x = int((j + 0.5) * w / GRID - bw / 2)
            y, x = min(max(y, 0), h - bh), min(max(x, 0), w - bw)
            digest.update(np.ascontiguousarray(slide.read_region(level, y, x, bh, bw)).tobytes())
    return digest.hexdigest()


def identity_differences(before: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """What makes ``now`` another slide than ``before`` (empty: the same slide).

    A moved or renamed copy with the same bytes, levels and pixels is the same slide. Without
    a recorded identity (an output of an older version) only the path can be compared.
    """
    if not before:
        return []
    out = []
    if before.get("levels") != now.get("levels"):
        out.append(f"stored levels {before.get('levels')} vs {now.get('levels')}")
    if before.get("bytes") is not None and now.get("bytes") is not None and before["bytes"] != now["bytes"]:
        out.append(f"file size {before['bytes']} vs {now['bytes']} bytes")
    if before.get("fingerprint") != now.get("fingerprint"):
        out.append("pixels differ")
    return out


def check_same_slide(output: str | os.PathLike, before: dict[str, Any] | None, now: dict[str, Any],
                     before_path: str | None = None) -> None:
    """Refuse (``GlandsegError``) to continue ``output`` with another slide than it was made from.

    ``before`` is the identity recorded with the output (None for older outputs: then the
    recorded ``before_path`` must be the slide's path).
    """
    if before is None:
        if before_path is None or os.path.abspath(before_path) == os.path.abspath(now["path"]):
            return
        problems = ["it was written by an older version that kept no slide fingerprint"]
    else:
        problems = identity_differences(before, now)
        before_path = before.get("path")
        if not problems:
            return
    raise GlandsegError(
        f"{os.fspath(output)}: cannot resume: it holds the results of {before_path}, and "
        f"{now['path']} is not that slide ({'; '.join(problems)}). Choose another output folder, "
        "or start over (CLI: --no-resume) to replace it"
    )
