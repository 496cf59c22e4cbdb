"""Pixel-exact polygons of label masks, and the inverse rasterisation (pure geometry, no I/O).

Coordinates are slide pixels in ``[x, y]`` order with the pixel-CORNER convention: mask pixel
(row r, col c) is the square ``x ∈ [off_x + c*scale, off_x + (c+1)*scale]``,
``y ∈ [off_y + r*scale, off_y + (r+1)*scale]`` (``offset`` is given as ``(y, x)``).

Tracing (:func:`mask_to_polygons`): every pixel edge between a mask pixel and a non-mask pixel
becomes a directed edge with the mask on its left (in x-right / y-up terms), so outer rings run
counter-clockwise and hole rings clockwise, as RFC 7946 asks. Edges are chained into rings;
where two mask pixels meet only at a corner, the chain stays on the same pixel, so parts are
4-connected and each 4-connected part becomes one polygon. A ring that passes a corner twice
(a notch that reaches the outside through a diagonal) is cut there into simple rings; a cut-off
piece that runs clockwise is a hole touching the outer ring at a single point, which is valid
for OGC / shapely. Only vertices where the direction turns are kept.

Rasterising (:func:`fill_polygon`) is the inverse: a pixel belongs to a polygon when its centre
is inside (even-odd rule over the rings, so holes stay 0), filled span by span along scanlines.
Pixel centres never lie on the pixel-edge polygons written here, so the round trip is exact.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

# Edge directions in (row, col) vertex steps: 0 → +x (E), 1 → +y (S), 2 → -x (W), 3 → -y (N).
_STEP_Y = np.array([0, 1, 0, -1])
_STEP_X = np.array([1, 0, -1, 0])

Ring = list[list[float]]
PolygonCoords = list[Ring]


def mask_to_polygons(
    mask: np.ndarray, *, scale: float = 1.0, offset: tuple[float, float] = (0.0, 0.0)
) -> list[PolygonCoords]:
    """The exact pixel-edge outline of a 2-D boolean mask: one polygon per 4-connected part.

    Each polygon is ``[exterior, *holes]``, each ring a closed list of ``[x, y]`` slide
    coordinates (exterior counter-clockwise in x-right / y-up terms, holes clockwise).
    """
    mask = np.pad(np.asarray(mask, dtype=bool), 1)
    if not mask.any():
        return []
    traced = _trace(mask)
    outer = [_signed_area(ring) > 0 for _, ring in traced]
    if sum(outer) > 1:  # several parts: which ring is whose
        parts = ndi.label(mask)[0].ravel()
        rings = [(int(parts[pixel]), ring) for pixel, ring in traced]
    else:
        rings = [(1, ring) for _, ring in traced]
    exteriors: dict[int, np.ndarray] = {}
    holes: dict[int, list[np.ndarray]] = {}
    for (part, ring), is_outer in zip(rings, outer, strict=True):
        if is_outer:
            if part in exteriors:  # cannot happen: a 4-connected part has one outer boundary
                raise RuntimeError("two outer rings for one connected part")
            exteriors[part] = ring
        else:
            holes.setdefault(part, []).append(ring)
    to_slide = _slide_transform(scale, offset, pad=1)
    return [[to_slide(exteriors[part]), *(to_slide(h) for h in holes.get(part, []))] for part in sorted(exteriors)]


def trace_rings(mask: np.ndarray, parts: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """All boundary rings of a padded mask as (part label, (n, 2) corner vertices [y, x])."""
    flat = parts.ravel()
    return [(int(flat[pixel]), ring) for pixel, ring in _trace(mask)]


def _trace(mask: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """All boundary rings of a padded mask as (flat index of a pixel of the ring, vertices)."""
    sy, sx, direction, pixel = _boundary_edges(mask)
    successor = _successors(sy, sx, direction, mask.shape)
    width = mask.shape[1] + 1
    end_vertex = ((sy + _STEP_Y[direction]) * width + sx + _STEP_X[direction]).tolist()
    is_corner = (direction[successor] != direction).tolist()
    successor = successor.tolist()
    seen = bytearray(len(successor))
    rings = []
    for start in range(len(successor)):
        if seen[start]:
            continue
        corners = []
        edge = start
        while not seen[edge]:
            seen[edge] = 1
            if is_corner[edge]:
                corners.append(end_vertex[edge])
            edge = successor[edge]
        for loop in _split_at_repeats(corners):
            vertices = np.asarray(loop)
            rings.append((int(pixel[start]), np.stack([vertices // width, vertices % width], axis=1)))
    return rings


def _boundary_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Directed pixel edges between mask and background, the mask on the left (x-right, y-up).

    Returns start vertex row, start vertex column, direction (0 E, 1 S, 2 W, 3 N) and the flat
    index of the mask pixel each edge belongs to. ``mask`` must have a False border.
    """
    inner = mask[1:-1, 1:-1]
    # (the neighbour on that side, start vertex offset from the pixel's top-left corner, direction)
    sides = ((mask[:-2, 1:-1], 0, 0, 0), (mask[1:-1, 2:], 0, 1, 1), (mask[2:, 1:-1], 1, 1, 2), (mask[1:-1, :-2], 1, 0, 3))
    sy, sx, direction, pixel = [], [], [], []
    for neighbour, dy, dx, d in sides:
        rows, cols = np.nonzero(inner & ~neighbour)
        rows += 1
        cols += 1
        sy.append(rows + dy)
        sx.append(cols + dx)
        direction.append(np.full(rows.size, d))
        pixel.append(rows * mask.shape[1] + cols)
    return tuple(np.concatenate(a) for a in (sy, sx, direction, pixel))


def _successors(sy: np.ndarray, sx: np.ndarray, direction: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The edge that follows each edge along its ring.

    A vertex has one outgoing edge, except where two mask pixels touch only at a corner: then
    it has two, and the turn to the right of the incoming direction (``d + 1``) is the one that
    stays on the same pixel, which keeps diagonal neighbours apart (4-connected parts).
    """
    width = shape[1] + 1
    outgoing = np.full(((shape[0] + 1) * width, 4), -1, dtype=np.int64)
    outgoing[sy * width + sx, direction] = np.arange(sy.size)
    end = (sy + _STEP_Y[direction]) * width + sx + _STEP_X[direction]
    turn = outgoing[end, (direction + 1) % 4]
    straight = outgoing[end, direction]
    other = outgoing[end, (direction + 3) % 4]
    successor = np.where(turn >= 0, turn, np.where(straight >= 0, straight, other))
    if (successor < 0).any():  # cannot happen for a closed pixel boundary
        raise RuntimeError("open boundary while tracing a mask")
    return successor


def _split_at_repeats(vertices: list[int]) -> list[list[int]]:
    """Cut a closed vertex sequence that visits a vertex twice into simple closed loops."""
    if len(set(vertices)) == len(vertices):
        return [vertices]
    path: list[int] = []
    position: dict[int, int] = {}
    loops = []
    for v in vertices:
        if v in position:
            start = position[v]
            loops.append(path[start:])
            for u in path[start + 1 :]:
                del position[u]
            del path[start + 1 :]
        else:
            position[v] = len(path)
            path.append(v)
    loops.append(path)
    return loops


def _signed_area(ring: np.ndarray) -> float:
    """Shoelace area of an open (n, 2) [y, x] ring; > 0 when counter-clockwise in x-right / y-up."""
    y, x = ring[:, 0], ring[:, 1]  # integers: the sum is exact
    return 0.5 * float(np.dot(x[:-1], y[1:]) + x[-1] * y[0] - np.dot(x[1:], y[:-1]) - x[0] * y[-1])


def _slide_transform(scale: float, offset: tuple[float, float], pad: int):
    """A function: open (n, 2) [y, x] vertex ring of a padded crop → closed [[x, y], ...] slide ring."""
    oy, ox = offset

    def to_slide(ring: np.ndarray) -> Ring:
        xy = np.empty((ring.shape[0] + 1, 2), dtype=np.float64)
        xy[:-1, 0] = ox + (ring[:, 1] - pad) * scale
        xy[:-1, 1] = oy + (ring[:, 0] - pad) * scale
        xy[-1] = xy[0]
        if np.all(np.abs(xy) < 2**53) and np.array_equal(xy, np.round(xy)):
            return xy.astype(np.int64).tolist()
        return xy.tolist()

    return to_slide


def fill_polygon(out: np.ndarray, rings: list[np.ndarray], label: int) -> None:
    """Set ``label`` on the pixels of ``out`` whose centres are inside the rings (even-odd).

    ``rings`` are (n, 2) [x, y] arrays in label-pixel units (pixel (r, c) spans [c, c+1] x [r, r+1]).
    A scanline at each row centre meets the edges an even number of times; sorted along the
    row, the crossings pair up into the spans that are inside. Only the crossings are held in
    memory, never an array the size of the polygon's box.
    """
    rings = [r if np.array_equal(r[0], r[-1]) else np.concatenate([r, r[:1]]) for r in rings]
    points = np.concatenate(rings)
    height, width = out.shape
    r0 = max(int(math.ceil(points[:, 1].min() - 0.5)), 0)
    r1 = min(int(math.ceil(points[:, 1].max() - 0.5)), height)
    if r0 >= r1 or points[:, 0].max() <= 0 or points[:, 0].min() >= width:
        return
    x1 = np.concatenate([ring[:-1, 0] for ring in rings])
    y1 = np.concatenate([ring[:-1, 1] for ring in rings])
    x2 = np.concatenate([ring[1:, 0] for ring in rings])
    y2 = np.concatenate([ring[1:, 1] for ring in rings])
    rows, xs = _scanline_crossings(x1, y1, x2, y2, r0, r1)
    if rows.size == 0:
        return
    # the first pixel whose centre lies strictly right of each crossing
    cols = np.clip(np.floor(xs - 0.5).astype(np.int64) + 1, 0, width)
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    starts, stops, span_rows = cols[0::2], cols[1::2], rows[0::2]
    inside = stops > starts
    for r, a, b in zip(span_rows[inside].tolist(), starts[inside].tolist(), stops[inside].tolist(), strict=True):
        out[r, a:b] = label


def _scanline_crossings(
    x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, r0: int, r1: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows in [r0, r1) and x positions where the row centres y = r + 0.5 cross the edges.

    An edge counts for the rows whose centre is in [min(y1, y2), max(y1, y2)), so a vertex on
    a scanline is counted once and horizontal edges never.
    """
    lo, hi = np.minimum(y1, y2), np.maximum(y1, y2)
    first = np.clip(np.ceil(lo - 0.5), r0, r1).astype(np.int64)
    stop = np.clip(np.ceil(hi - 0.5), r0, r1).astype(np.int64)
    count = np.maximum(stop - first, 0)
    edge = np.repeat(np.arange(x1.size), count)
    if edge.size == 0:
        return edge, np.empty(0)
    within = np.arange(edge.size) - np.repeat(np.cumsum(count) - count, count)
    rows = first[edge] + within
    t = (rows + 0.5 - y1[edge]) / (y2[edge] - y1[edge])
    xs = x1[edge] + t * (x2[edge] - x1[edge])
    return rows, xs
