"""A gland label pyramid on disk: OME-Zarr labels (zarr v3, NGFF 0.5) plus the logs that make it safe.

Layout of a store folder::

    zarr.json            group; attributes["ome"] = NGFF 0.5 multiscales + image-label,
                         attributes["glandseg"] = shape, chunk size, µm/px, source slide
    0/ 1/ 2/ ...         int32 Y×X levels, each half the size of the one above (nearest)
    glandseg_done/       one empty marker file per finished level-0 chunk (whole-slide runs);
                         markers are separate files so that dask workers never share a log
    glandseg_reviews/    one compressed patch per committed correction (NNNNNN.npz, numbered in
                         commit order), written before the labels are touched, and
                         ``reviewed.jsonl``: the reviewed regions log (see ``labels.journal``)

A correction commit is journalled: the patch is saved (atomically) first, then written into the
levels, then logged as reviewed. A crash between those steps is repaired the next time the store
is opened for writing: temporary files are removed, a torn log line is moved aside, and pending
patches are replayed in commit order without undoing any later commit over the same pixels, so
nothing a user committed is lost or reverted. Every commit and the repair hold the store's writer
lock (``_lock.FolderLock``; a commit waits up to ``COMMIT_WAIT_S`` for another one); while another
writer holds it, the repair is left to that writer.
zarr itself writes every chunk file atomically, so a chunk is never half-written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg._atomic import append_jsonl, atomic_path
from napari_glandseg._lock import FolderLock
from napari_glandseg.errors import GlandsegError
from napari_glandseg.labels import journal
from napari_glandseg.labels.journal import REVIEW_LOG

log = logging.getLogger(__name__)

NGFF_VERSION = "0.5"
DONE_DIR = "glandseg_done"
REVIEW_DIR = "glandseg_reviews"
MIN_LEVEL_PX = 512  # the pyramid stops once a level fits in this many px
PYRAMID_BLOCK = 2048  # lower levels are rebuilt in blocks of this many output px
COMMIT_WAIT_S = 10.0  # a commit waits this long for another commit to finish before giving up


def level_shapes(shape0: Sequence[int], n_levels: int | None = None) -> list[tuple[int, int]]:
    """Shapes of the pyramid levels: halve (rounding up) until a level fits in MIN_LEVEL_PX."""
    shapes = [(int(shape0[0]), int(shape0[1]))]
    while (n_levels is None and max(shapes[-1]) > MIN_LEVEL_PX) or (n_levels is not None and len(shapes) < n_levels):
        h, w = shapes[-1]
        if h == 1 and w == 1:
            break
        shapes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return shapes


def _ngff_attrs(n_levels: int, mpp: float | None, name: str) -> dict[str, Any]:
    unit = {"unit": "micrometer"} if mpp else {}
    base = float(mpp) if mpp else 1.0
    datasets = [
        {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [base * 2**k, base * 2**k]}]}
        for k in range(n_levels)
    ]
    # NGFF's image-label "source" is a relative path to an image group; the slide file is kept in
    # the store's own "glandseg" attributes instead.
    image_label: dict[str, Any] = {"version": NGFF_VERSION}
    return {
        "version": NGFF_VERSION,
        "multiscales": [{
            "name": name,
            "axes": [{"name": "y", "type": "space", **unit}, {"name": "x", "type": "space", **unit}],
            "datasets": datasets,
        }],
        "image-label": image_label,
    }


class LabelStore:
    """An int32 label pyramid on disk; level 0 is the full-resolution grid at ``mpp`` µm/px."""

    def __init__(self, path: Path, group: Any, read_only: bool) -> None:
        self.path = Path(path)
        self._group = group
        self.read_only = read_only
        meta = dict(group.attrs.get("glandseg", {}))
        self.mpp: float | None = meta.get("mpp")
        self.source: str | None = meta.get("source")
        self.chunk_px: int = int(meta.get("chunk_px", 1024))
        self.created: str | None = meta.get("created")
        self.uid: str | None = meta.get("uid")  # tells one store at a path from the next one made there
        n = len(group.attrs["ome"]["multiscales"][0]["datasets"])
        self.levels: list[Any] = [group[str(k)] for k in range(n)]

    # -- creating and opening ------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        shape0: Sequence[int],
        *,
        chunk_px: int = 1024,
        mpp: float | None = None,
        n_levels: int | None = None,
        source: str | None = None,
    ) -> LabelStore:
        """A new, empty (all 0) store. Refuses to overwrite anything at ``path`` but an empty folder."""
        import zarr

        path = Path(path)
        if path.exists() and not (path.is_dir() and not any(path.iterdir())):
            raise GlandsegError(f"{path}: already exists; open it with LabelStore.open or remove it")
        h, w = (int(s) for s in shape0)
        if h < 1 or w < 1:
            raise GlandsegError(f"{path}: a label store needs a positive shape, got {tuple(shape0)}")
        if chunk_px < 16:
            raise GlandsegError(f"{path}: chunk_px must be at least 16, got {chunk_px}")
        shapes = level_shapes((h, w), n_levels)
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        for k, shp in enumerate(shapes):
            chunks = (min(chunk_px, shp[0]), min(chunk_px, shp[1]))
            group.create_array(str(k), shape=shp, chunks=chunks, dtype="int32", fill_value=0,
                               dimension_names=("y", "x"))  # NGFF 0.5: named like the axes
        group.attrs.update({
            "ome": _ngff_attrs(len(shapes), mpp, path.name),
            "glandseg": {"shape0": [h, w], "chunk_px": int(chunk_px), "mpp": mpp, "source": source,
                         "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "uid": uuid.uuid4().hex},
        })
        return cls(path, group, read_only=False)

    @classmethod
    def open(cls, path: str | os.PathLike, *, read_only: bool = False) -> LabelStore:
        """Open an existing store; for writing, what a crash left is repaired first (see the module)."""
        import zarr

        path = Path(path)
        if not path.exists():
            raise GlandsegError(f"{path}: no label store there")
        try:
            group = zarr.open_group(str(path), mode="r" if read_only else "r+")
            group.attrs["ome"]["multiscales"][0]["datasets"]  # noqa: B018 - validates the layout
        except (KeyError, IndexError, TypeError, ValueError, FileNotFoundError) as exc:
            raise GlandsegError(f"{path}: not an OME-Zarr label store ({type(exc).__name__}: {exc})") from exc
        except Exception as exc:  # zarr raises its own errors for folders without metadata
            raise GlandsegError(f"{path}: not a zarr label store ({exc})") from exc
        store = cls(path, group, read_only)
        if not read_only:
            store._repair()
        return store

    # -- facts ---------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.levels[0].shape)  # type: ignore[return-value]

    @property
    def grid(self) -> tuple[int, int]:
        """Number of level-0 chunks along y and x."""
        h, w = self.shape
        return math.ceil(h / self.chunk_px), math.ceil(w / self.chunk_px)

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r}, shape={self.shape}, levels={len(self.levels)}, mpp={self.mpp})"

    # -- glands' confidence ----------------------------------------------------------------------

    CONFIDENCE_FILE = "glands.json"

    def write_confidence(self, glands: dict[int, list[float]]) -> None:
        """Keep {gland id: [confidence, y0, x0, y1, x1]} (box in level-0 store px) beside the
        labels (atomically): what "Next uncertain" and the tables read, not the labels."""
        from napari_glandseg._atomic import write_json_atomic

        self._writable()
        write_json_atomic(self.path / self.CONFIDENCE_FILE,
                          {"glands": {str(k): v for k, v in sorted(glands.items())}}, indent=None)

    def read_confidence(self) -> dict[int, list[float]]:
        """What ``write_confidence`` kept ({} for a store without it)."""
        from napari_glandseg._atomic import read_bounded

        path = self.path / self.CONFIDENCE_FILE
        if not path.exists():
            return {}
        try:
            data = json.loads(read_bounded(path, 512 * 2**20, "a gland confidence file"))
            return {int(k): [float(x) for x in v] for k, v in data["glands"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise GlandsegError(f"{path}: not a gland confidence file ({type(exc).__name__}: {exc})") from exc

    # -- reading -------------------------------------------------------------------------------

    def read_region(self, y: int, x: int, h: int, w: int, level: int = 0) -> np.ndarray:
        """Labels of the box at ``level`` (its own px); parts outside the store read as 0."""
        arr = self.levels[level]
        out = np.zeros((max(0, int(h)), max(0, int(w))), np.int32)
        hh, ww = arr.shape
        y0, x0 = max(0, int(y)), max(0, int(x))
        y1, x1 = min(hh, int(y) + int(h)), min(ww, int(x) + int(w))
        if y1 > y0 and x1 > x0:
            out[y0 - int(y) : y1 - int(y), x0 - int(x) : x1 - int(x)] = arr[y0:y1, x0:x1]
        return out

    # -- whole-slide runs: chunks and their done markers -----------------------------------------

    def chunk_box(self, cy: int, cx: int) -> tuple[int, int, int, int]:
        """``(y, x, h, w)`` of level-0 chunk ``(cy, cx)``, clipped at the store's edge."""
        gy, gx = self.grid
        if not (0 <= cy < gy and 0 <= cx < gx):
            raise IndexError(f"{self.path}: chunk ({cy}, {cx}) outside the {gy}×{gx} grid")
        c = self.chunk_px
        h, w = self.shape
        return cy * c, cx * c, min(c, h - cy * c), min(c, w - cx * c)

    def write_chunk(self, cy: int, cx: int, data: np.ndarray) -> None:
        """Write one level-0 chunk, then mark it done (the marker only ever follows the data)."""
        self._writable()
        y, x, h, w = self.chunk_box(cy, cx)
        data = np.asarray(data)
        if data.shape != (h, w):
            raise ValueError(f"{self.path}: chunk ({cy}, {cx}) is {h}×{w}, got data of shape {data.shape}")
        self.levels[0][y : y + h, x : x + w] = data.astype(np.int32, copy=False)
        marker = self.path / DONE_DIR / f"{cy}_{cx}"
        marker.parent.mkdir(exist_ok=True)
        marker.touch()

    def is_done(self, cy: int, cx: int) -> bool:
        return (self.path / DONE_DIR / f"{cy}_{cx}").exists()

    def done_chunks(self) -> set[tuple[int, int]]:
        folder = self.path / DONE_DIR
        if not folder.is_dir():
            return set()
        return {tuple(int(v) for v in p.name.split("_")) for p in folder.iterdir() if "_" in p.name}  # type: ignore[misc]

    # -- corrections -----------------------------------------------------------------------------

    def write_region(
        self,
        y: int,
        x: int,
        data: np.ndarray,
        *,
        reviewed_by: str | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        """Commit corrected labels at level-0 ``(y, x)``: journal, write, refresh the pyramid, log.

        The part of ``data`` outside the store is dropped. Returns the reviewed-log record.
        """
        self._writable()
        data = np.asarray(data)
        if data.ndim != 2 or not np.issubdtype(data.dtype, np.integer):
            raise ValueError(f"{self.path}: corrections must be 2-D integer labels, got {data.shape} {data.dtype}")
        y, x, data = self._clip(int(y), int(x), data)
        if data.size == 0:
            raise ValueError(f"{self.path}: the region ({y}, {x}) lies outside the store {self.shape}")
        # Every writer holds the store's lock: two commits never take one patch number, and no
        # repair removes the temporary file of a live commit.
        lock = FolderLock(self.path, f"commit a correction by {reviewed_by or 'unknown'}").acquire(COMMIT_WAIT_S)
        try:
            record = {
                "bounds": [y, x, int(data.shape[0]), int(data.shape[1])],
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "model": model,
                "reviewed_by": reviewed_by,
                "mpp": self.mpp,
            }
            before = np.asarray(self.read_region(y, x, *data.shape)) if self._has_confidence() else None
            record["patch"] = self._save_patch(data, record)
            self._apply(record, data)
            if before is not None:
                self._follow_confidence(y, x, before, data)
        finally:
            lock.release()
        return record

    def _has_confidence(self) -> bool:
        return (self.path / self.CONFIDENCE_FILE).exists()

    def _follow_confidence(self, y: int, x: int, before: np.ndarray, after: np.ndarray) -> None:
        """Keep ``glands.json`` true to a correction of the region at (y, x): glands that left it
        and lay wholly inside are gone; glands still there get their box grown to where they now
        reach. New glands have no confidence (a person drew them)."""
        from napari_glandseg.labels._objects import gland_objects

        kept = self.read_confidence()
        h, w = after.shape
        now = dict(gland_objects(after))
        changed = False
        for gid in set(np.unique(before).tolist()) - {0}:
            if gid not in kept:
                continue
            conf, y0, x0, y1, x1 = kept[gid]
            if gid not in now:
                if y <= y0 and x <= x0 and y1 <= y + h and x1 <= x + w:
                    del kept[gid]
                    changed = True
                continue
            rs, cs = now[gid]
            box = [conf, min(y0, y + rs.start), min(x0, x + cs.start), max(y1, y + rs.stop), max(x1, x + cs.stop)]
            changed |= box != kept[gid]
            kept[gid] = box
        if changed:
            self.write_confidence(kept)

    def reviewed_regions(self) -> list[dict[str, Any]]:
        """Every committed region, oldest first: bounds [y, x, h, w] (level-0 px), time, model, seq."""
        return journal.read_log(self.path / REVIEW_DIR)

    def read_patch(self, record: dict[str, Any]) -> np.ndarray:
        """The labels exactly as committed in a reviewed-log record."""
        with np.load(self.path / REVIEW_DIR / record["patch"]) as z:
            return np.asarray(z["labels"])

    def _clip(self, y: int, x: int, data: np.ndarray) -> tuple[int, int, np.ndarray]:
        h, w = self.shape
        y0, x0 = max(0, y), max(0, x)
        y1, x1 = min(h, y + data.shape[0]), min(w, x + data.shape[1])
        if y1 <= y0 or x1 <= x0:
            return y0, x0, data[:0, :0]
        return y0, x0, data[y0 - y : y1 - y, x0 - x : x1 - x]

    def _save_patch(self, data: np.ndarray, record: dict[str, Any]) -> str:
        folder = self.path / REVIEW_DIR
        folder.mkdir(exist_ok=True)
        name = journal.next_patch_name(folder)
        record["seq"] = journal.patch_seq(name)
        meta = np.array(json.dumps({k: record[k] for k in ("bounds", "time")}))
        with atomic_path(folder / name) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, labels=data.astype(np.int32, copy=False), record=meta)
                f.flush()
                os.fsync(f.fileno())
        return name

    def _apply(self, record: dict[str, Any], data: np.ndarray) -> None:
        y, x, h, w = record["bounds"]
        self.levels[0][y : y + h, x : x + w] = data.astype(np.int32, copy=False)
        self.build_pyramid((y, x, h, w))
        append_jsonl(self.path / REVIEW_DIR / REVIEW_LOG, record)

    def _repair(self) -> None:
        """Clean temporary files, heal the log, replay pending patches (under the writer lock)."""
        folder = self.path / REVIEW_DIR
        if not journal.needs_repair(folder):
            return
        try:
            lock = FolderLock(self.path, "repair the label store").acquire()
        except GlandsegError as exc:  # another writer holds it (and repairs), or a read-only place
            log.info("%s: not repaired now: %s", self.path, exc)
            return
        try:
            journal.clean_tmp(folder)
            journal.heal_log(folder)
            for patch in journal.pending(folder):
                self._replay(patch)
        finally:
            lock.release()

    def _replay(self, patch: Path) -> None:
        """Apply a pending patch; pixels that later commits cover keep the later commits' labels."""
        seq = journal.patch_seq(patch.name)
        with np.load(patch) as z:
            data = np.asarray(z["labels"])
            saved = json.loads(str(z["record"]))
        y, x, h, w = saved["bounds"]
        for later in journal.patch_files(patch.parent):
            if journal.patch_seq(later.name) <= seq:
                continue
            with np.load(later) as z:
                ly, lx, lh, lw = json.loads(str(z["record"]))["bounds"]
                y0, x0, y1, x1 = max(y, ly), max(x, lx), min(y + h, ly + lh), min(x + w, lx + lw)
                if y1 > y0 and x1 > x0:
                    data[y0 - y : y1 - y, x0 - x : x1 - x] = np.asarray(z["labels"])[y0 - ly : y1 - ly, x0 - lx : x1 - lx]
        record = {**saved, "model": None, "reviewed_by": None, "mpp": self.mpp, "patch": patch.name,
                  "seq": seq, "recovered": True}
        log.warning("%s: replaying correction %s, cut off before it was logged", self.path, patch.name)
        self._apply(record, data)

    # -- the pyramid -----------------------------------------------------------------------------

    def build_pyramid(self, region: Sequence[int] | None = None) -> None:
        """Recompute the lower levels (nearest, every other pixel) for a level-0 region or all."""
        self._writable()
        y, x, h, w = (0, 0, *self.shape) if region is None else (int(v) for v in region)
        for k in range(1, len(self.levels)):
            # level-k px j samples level-(k-1) px 2j: those in [y, y+h) are j in [y//2, ceil((y+h)/2))
            hk, wk = self.levels[k].shape
            y1, x1 = min(hk, -(-(y + h) // 2)), min(wk, -(-(x + w) // 2))
            y, x = y // 2, x // 2
            h, w = y1 - y, x1 - x
            if h <= 0 or w <= 0:
                return
            self._downsample_into(k, y, x, h, w)

    def _downsample_into(self, k: int, y: int, x: int, h: int, w: int) -> None:
        src, dst = self.levels[k - 1], self.levels[k]
        for by in range(y, y + h, PYRAMID_BLOCK):
            for bx in range(x, x + w, PYRAMID_BLOCK):
                bh, bw = min(PYRAMID_BLOCK, y + h - by), min(PYRAMID_BLOCK, x + w - bx)
                block = np.asarray(src[2 * by : 2 * (by + bh) : 2, 2 * bx : 2 * (bx + bw) : 2])
                dst[by : by + block.shape[0], bx : bx + block.shape[1]] = block

    def _writable(self) -> None:
        if self.read_only:
            raise GlandsegError(f"{self.path}: opened read-only")

