"""Joining glands that cross chunk borders in a whole-slide run.

Each chunk is post-processed with a context margin of ``m`` px on every side, but writes only
its core. Its instances get global ids ``chunk_index * 2**16 + local_id``, so labels are unique
without coordination. Along every border two chunks see the same band (``2 * seam_width`` px
straddling it): the chunk saves its labels in those bands (a "seam file") before its data is
logged as done. The stitch pass compares the two views of each band: a label of one chunk and a
label of the other that cover mostly the same pixels there are the same gland, and are merged
(union-find). The margin is wide enough that both chunks see a gland reaching their cores whole,
so the two views are identical in practice; the overlap rule also joins the rare cluster too
big for the margin. Each merged gland's area is summed over the chunks' cores so that small
objects are dropped by their whole size (the chunk pass keeps small objects that touch its
edge: they may be parts of a big gland). The result is a lookup table ``global id -> final
id`` (the smallest id of the gland, or 0), applied chunk by chunk.

The table depends only on the seam files, never on the label data, and applying it is
idempotent, so a run that dies half-way through relabelling is finished by running it again.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_glandseg._atomic import atomic_path

ID_BITS = 16
LOCAL_MAX = (1 << ID_BITS) - 1
#: Two views of a band are the same gland when they share this fraction of the smaller view.
MATCH_FRACTION = 0.5
SIDES = ("top", "bottom", "left", "right")
#: Half-width of the seam bands (the context margin can be wider: it is there for whole glands).
SEAM_PX = 64


@dataclass(frozen=True)
class ChunkGeom:
    """Core box of one chunk (store level-0 px) and its context margin."""

    cy: int
    cx: int
    y0: int
    x0: int
    h: int
    w: int
    margin: int
    index: int

    @property
    def padded_origin(self) -> tuple[int, int]:
        return self.y0 - self.margin, self.x0 - self.margin

    @property
    def padded_shape(self) -> tuple[int, int]:
        return self.h + 2 * self.margin, self.w + 2 * self.margin


def chunk_grid(shape: tuple[int, int], chunk_px: int, margin: int) -> list[ChunkGeom]:
    """All chunks of a ``shape`` store in row-major order."""
    ny, nx = -(-shape[0] // chunk_px), -(-shape[1] // chunk_px)
    if ny * nx > (1 << (31 - ID_BITS)) - 1:
        raise ValueError(f"{ny}×{nx} chunks is too many for int32 ids; use a larger chunk size")
    out = []
    for cy in range(ny):
        for cx in range(nx):
            y0, x0 = cy * chunk_px, cx * chunk_px
            h, w = min(chunk_px, shape[0] - y0), min(chunk_px, shape[1] - x0)
            out.append(ChunkGeom(cy, cx, y0, x0, h, w, margin, cy * nx + cx))
    return out


def to_global(local: np.ndarray, index: int) -> np.ndarray:
    """Local ids (1..65535) → int32 global ids; 0 stays 0."""
    base = np.int32(index << ID_BITS)
    return np.where(local > 0, local.astype(np.int32) + base, np.int32(0))


def seam_width(geom: ChunkGeom) -> int:
    """Half-width of the bands compared across a border (store px)."""
    return min(geom.margin, SEAM_PX)


def strip_origins(geom: ChunkGeom) -> dict[str, tuple[int, int]]:
    """Store-px origins of the padded labels' four border bands."""
    py, px = geom.padded_origin
    s = seam_width(geom)
    return {"top": (geom.y0 - s, px), "bottom": (geom.y0 + geom.h - s, px),
            "left": (py, geom.x0 - s), "right": (py, geom.x0 + geom.w - s)}


def strips(local: np.ndarray, geom: ChunkGeom) -> dict[str, np.ndarray]:
    """The padded labels' four bands of ``2 * seam_width`` straddling the core's borders."""
    m, h, w, s = geom.margin, geom.h, geom.w, seam_width(geom)
    return {
        "top": local[m - s : m + s],
        "bottom": local[m + h - s : m + h + s],
        "left": local[:, m - s : m + s],
        "right": local[:, m + w - s : m + w + s],
    }


def seam_path(seam_dir: Path, geom: ChunkGeom) -> Path:
    return Path(seam_dir) / f"{geom.cy}_{geom.cx}.npz"


def write_seam(seam_dir: Path, geom: ChunkGeom, local: np.ndarray,
               confidence: dict[int, float] | None = None) -> dict[int, int]:
    """Save the chunk's border bands, core areas and glands' confidence (atomically); returns
    {local id: core px}."""
    m = geom.margin
    core = local[m : m + geom.h, m : m + geom.w]
    counts = np.bincount(core.ravel())
    ids = np.nonzero(counts)[0]
    ids = ids[ids > 0]
    arrays = {side: np.ascontiguousarray(a.astype(np.uint16)) for side, a in strips(local, geom).items()}
    if confidence is not None:
        arrays["confidence"] = np.array([confidence.get(i, np.nan) for i in ids.tolist()], np.float32)
        found = ndimage.find_objects(core)
        arrays["boxes"] = np.array([[geom.y0 + found[i - 1][0].start, geom.x0 + found[i - 1][1].start,
                                     geom.y0 + found[i - 1][0].stop, geom.x0 + found[i - 1][1].stop]
                                    for i in ids.tolist()], np.int64).reshape(-1, 4)
    target = seam_path(seam_dir, geom)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, ids=ids.astype(np.uint16), counts=counts[ids].astype(np.int64), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
    return dict(zip(ids.tolist(), counts[ids].tolist(), strict=True))


class UnionFind:
    """Union-find over integer ids (dict based: only ids that take part are stored)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        root = a
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(a, a) != root:  # path compression
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the smaller id becomes the root: the final id is the gland's smallest
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            self.parent[hi] = lo


def match_views(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (label in a, label in b) that are the same object in two views of one band."""
    both = (a > 0) & (b > 0)
    if not both.any():
        return []
    key = (a[both].astype(np.int64) << 32) | b[both].astype(np.int64)
    keys, overlap = np.unique(key, return_counts=True)
    area_a = np.bincount(a.ravel())
    area_b = np.bincount(b.ravel())
    la, lb = keys >> 32, keys & 0xFFFFFFFF
    smaller = np.minimum(area_a[la], area_b[lb])
    ok = overlap >= MATCH_FRACTION * smaller
    return list(zip(la[ok].tolist(), lb[ok].tolist(), strict=True))


#: neighbour offsets compared per chunk (each pair once): (dy, dx, side of P, side of Q)
_PAIRS = ((0, 1, "right", "left"), (1, 0, "bottom", "top"), (1, 1, "bottom", "top"), (1, -1, "bottom", "top"))


def _window(origin: tuple[int, int], arr: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    y0, x0, y1, x1 = box
    return arr[y0 - origin[0] : y1 - origin[0], x0 - origin[1] : x1 - origin[1]]


def build_lut(
    geoms: list[ChunkGeom], seam_dir: Path, min_area_px: float
) -> dict[int, int]:
    """``{global id: final id}`` for every id that changes (0 = dropped); see the module doc."""
    by_pos = {(g.cy, g.cx): g for g in geoms}
    nx = max(g.cx for g in geoms) + 1

    @functools.lru_cache(maxsize=2 * nx + 4)  # this row and the next: what the pairs below read
    def load(cy: int, cx: int) -> dict[str, np.ndarray] | None:
        p = seam_path(seam_dir, by_pos[(cy, cx)])
        if not p.exists():  # a chunk without tissue: nothing there
            return None
        with np.load(p) as z:
            return {k: z[k] for k in z.files}

    uf = UnionFind()
    area: dict[int, int] = {}
    for g in geoms:
        sp = load(g.cy, g.cx)
        if sp is None:
            continue
        base = g.index << ID_BITS
        for i, c in zip(sp["ids"].tolist(), sp["counts"].tolist(), strict=True):
            area[base + i] = c
        origins_p = strip_origins(g)
        for dy, dx, side_p, side_q in _PAIRS:
            q = by_pos.get((g.cy + dy, g.cx + dx))
            if q is None:
                continue
            sq = load(q.cy, q.cx)
            if sq is None:
                continue
            op, oq = origins_p[side_p], strip_origins(q)[side_q]
            ap, aq = sp[side_p], sq[side_q]
            box = (
                max(op[0], oq[0]), max(op[1], oq[1]),
                min(op[0] + ap.shape[0], oq[0] + aq.shape[0]), min(op[1] + ap.shape[1], oq[1] + aq.shape[1]),
            )
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            qbase = q.index << ID_BITS
            for la, lb in match_views(_window(op, ap, box), _window(oq, aq, box)):
                uf.union(base + la, qbase + lb)
    # sum the core areas of every gland; small glands are dropped whole
    total: dict[int, int] = {}
    for gid, c in area.items():
        r = uf.find(gid)
        total[r] = total.get(r, 0) + c
    lut = {}
    for gid in area:
        r = uf.find(gid)
        final = r if total[r] >= min_area_px else 0
        if final != gid:
            lut[gid] = final
    return lut


def chunk_luts(lut: dict[int, int]) -> dict[int, np.ndarray]:
    """Split the global table into per-chunk arrays indexed by local id (identity elsewhere)."""
    per: dict[int, dict[int, int]] = {}
    for gid, final in lut.items():
        per.setdefault(gid >> ID_BITS, {})[gid & LOCAL_MAX] = final
    out = {}
    for index, m in per.items():
        base = index << ID_BITS
        arr = base + np.arange(LOCAL_MAX + 1, dtype=np.int64)
        arr[0] = 0
        for local, final in m.items():
            arr[local] = final
        out[index] = arr.astype(np.int32)
    return out


def apply_chunk_lut(data: np.ndarray, index: int, table: np.ndarray) -> np.ndarray:
    """Relabel one chunk's data; ids of other chunks (already relabelled) stay as they are."""
    out = data.copy()
    mine = (data >> ID_BITS) == index
    out[mine] = table[data[mine] & LOCAL_MAX]
    return out


def final_confidence(geoms: list[ChunkGeom], seam_dir: Path, lut: dict[int, int]) -> dict[int, list[float]]:
    """{final gland id: [confidence, y0, x0, y1, x1]} (its box in store px) from the chunks' seam
    files and the stitch's table (chunks written before confidences were kept have none: their
    glands are left out)."""
    from napari_glandseg.inference.confidence import merge_pieces

    pieces: dict[int, list[tuple[float, int]]] = {}
    boxes: dict[int, np.ndarray] = {}
    for g in geoms:
        p = seam_path(seam_dir, g)
        if not p.exists():
            continue
        with np.load(p) as z:
            if "confidence" not in z.files:
                continue
            base = g.index << ID_BITS
            for i, c, conf, box in zip(z["ids"].tolist(), z["counts"].tolist(), z["confidence"].tolist(),
                                       z["boxes"], strict=True):
                final = lut.get(base + i, base + i)
                if not final or not np.isfinite(conf):
                    continue
                pieces.setdefault(final, []).append((conf, c))
                old = boxes.get(final)
                boxes[final] = box if old is None else np.concatenate([np.minimum(old[:2], box[:2]),
                                                                       np.maximum(old[2:], box[2:])])
    return {gid: [conf, *(int(v) for v in boxes[gid])] for gid, conf in merge_pieces(pieces).items()}
