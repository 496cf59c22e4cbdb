"""GUI-free geometry for the widgets: what part of a slide is on screen, where labels go.

Nothing here imports napari or Qt: the widgets pass in plain numbers (camera centre and zoom,
canvas size, a layer's world→data mapping) so that this logic is tested without a viewer and
can move into a compute package later.

Conventions: ``(y, x)`` order; a *bbox* is ``(y, x, h, w)`` in level-0 slide pixels; napari
places the centre of data pixel ``i`` at world ``translate + i * scale``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

BBox = tuple[int, int, int, int]

#: Default cap on the number of pixels a "Segment view" run feeds the model (at model µm/px):
#: ~4 Mpx is ~40 tiles of 384² — tens of seconds on a laptop CPU, not minutes.
MAX_VIEW_MODEL_PX = 4 * 1024 * 1024


@dataclass(frozen=True)
class ViewBox:
    """The visible slide region: ``bbox`` (level-0 px), and whether it was cut to the cap."""

    bbox: BBox
    capped: bool
    visible_bbox: BBox


def visible_world_box(
    center: Sequence[float], zoom: float, canvas_hw: Sequence[float]
) -> tuple[float, float, float, float]:
    """World ``(y0, x0, y1, x1)`` seen by a 2D camera.

    napari's ``camera.zoom`` is canvas pixels per world unit, so the canvas spans
    ``canvas_hw / zoom`` world units around ``camera.center`` (its last two values).
    """
    if not zoom > 0:
        raise ValueError(f"camera zoom must be > 0, got {zoom}")
    cy, cx = float(center[-2]), float(center[-1])
    half_h, half_w = float(canvas_hw[0]) / zoom / 2.0, float(canvas_hw[1]) / zoom / 2.0
    return cy - half_h, cx - half_w, cy + half_h, cx + half_w


def world_box_to_data_bbox(
    world_box: tuple[float, float, float, float],
    world_to_data: Callable[[Sequence[float]], Sequence[float]],
) -> tuple[float, float, float, float]:
    """Map a world box to the data ``(y0, x0, y1, x1)`` box enclosing its four corners.

    Mapping all corners (not just two) keeps this right for flipped or rotated layer transforms.
    """
    y0, x0, y1, x1 = world_box
    corners = np.array([world_to_data((y, x))[-2:] for y in (y0, y1) for x in (x0, x1)], float)
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def clip_bbox(data_box: tuple[float, float, float, float], shape_hw: Sequence[int]) -> BBox | None:
    """Integer level-0 bbox covering ``data_box`` (pixel centres at integers), inside the slide.

    Returns None when nothing of the slide is inside the box.
    """
    y0, x0, y1, x1 = data_box
    # A pixel i covers [i - 0.5, i + 0.5): include every pixel the box touches.
    top, left = max(0, math.floor(y0 + 0.5)), max(0, math.floor(x0 + 0.5))
    bottom = min(int(shape_hw[0]), math.ceil(y1 + 0.5))
    right = min(int(shape_hw[1]), math.ceil(x1 + 0.5))
    if bottom <= top or right <= left:
        return None
    return top, left, bottom - top, right - left


def cap_bbox(bbox: BBox, px_per_model_px: float, max_model_px: int = MAX_VIEW_MODEL_PX) -> tuple[BBox, bool]:
    """Keep the centre part of ``bbox`` so that it holds at most ``max_model_px`` model pixels.

    ``px_per_model_px`` is level-0 px per model px (model mpp / slide mpp). The aspect ratio is
    kept; returns ``(bbox, capped)``.
    """
    y, x, h, w = bbox
    n_model = (h / px_per_model_px) * (w / px_per_model_px)
    if n_model <= max_model_px:
        return bbox, False
    f = math.sqrt(max_model_px / n_model)
    nh, nw = max(1, int(h * f)), max(1, int(w * f))
    return (y + (h - nh) // 2, x + (w - nw) // 2, nh, nw), True


def visible_bbox0(
    center: Sequence[float],
    zoom: float,
    canvas_hw: Sequence[float],
    world_to_data: Callable[[Sequence[float]], Sequence[float]],
    slide_hw: Sequence[int],
    *,
    px_per_model_px: float = 1.0,
    max_model_px: int = MAX_VIEW_MODEL_PX,
) -> ViewBox:
    """The level-0 bbox of the slide on screen, clipped to the slide and capped.

    Raises ``ValueError`` when the view shows none of the slide (the widget says so).
    """
    data_box = world_box_to_data_bbox(visible_world_box(center, zoom, canvas_hw), world_to_data)
    clipped = clip_bbox(data_box, slide_hw)
    if clipped is None:
        raise ValueError("the view shows none of the slide: pan or zoom onto the tissue first")
    capped, was_capped = cap_bbox(clipped, px_per_model_px, max_model_px)
    return ViewBox(bbox=capped, capped=was_capped, visible_bbox=clipped)


def place_on_image(
    image_scale: Sequence[float],
    image_translate: Sequence[float],
    label_scale0: Sequence[float] | float,
    label_translate0: Sequence[float],
) -> tuple[tuple[float, float], tuple[float, float]]:
    """napari ``(scale, translate)`` of a labels array placed in level-0 px by the engine.

    The engine says label pixel ``i`` sits at level-0 ``label_translate0 + i * label_scale0``;
    the image puts level-0 pixel ``k`` at world ``image_translate + k * image_scale``.
    """
    s_img = np.asarray(image_scale, float)[-2:]
    t_img = np.asarray(image_translate, float)[-2:]
    s_lab = np.broadcast_to(np.asarray(label_scale0, float), (2,))
    t_lab = np.asarray(label_translate0, float)[-2:]
    scale = s_img * s_lab
    translate = t_img + t_lab * s_img
    return (float(scale[0]), float(scale[1])), (float(translate[0]), float(translate[1]))


def to_level0(
    world_scale: Sequence[float], world_translate: Sequence[float],
    image_scale: Sequence[float], image_translate: Sequence[float],
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Inverse of :func:`place_on_image`: a labels layer's world placement back in level-0 px."""
    s_img = np.asarray(image_scale, float)[-2:]
    t_img = np.asarray(image_translate, float)[-2:]
    scale = np.asarray(world_scale, float)[-2:] / s_img
    translate = (np.asarray(world_translate, float)[-2:] - t_img) / s_img
    return (float(scale[0]), float(scale[1])), (float(translate[0]), float(translate[1]))


def resample_to_grid(
    labels: np.ndarray,
    src_scale0: float,
    src_origin0: Sequence[float],
    dst_scale0: float,
    dst_shape: Sequence[int] | None = None,
) -> tuple[int, int, np.ndarray]:
    """Nearest-neighbour resample labels placed in level-0 px onto another pixel grid.

    ``labels`` pixel ``i`` is at level-0 ``src_origin0 + i * src_scale0``; the destination grid
    (e.g. a label store) has pixel ``j`` at ``j * dst_scale0``. Returns ``(y, x, array)``: the
    destination pixels covered, starting at grid index ``(y, x)``, clipped to ``dst_shape``.
    When the grids coincide this is an exact copy (no interpolation).
    """
    labels = np.asarray(labels)
    h, w = labels.shape[-2:]
    oy, ox = float(src_origin0[0]), float(src_origin0[1])
    ratio = src_scale0 / dst_scale0
    # Destination pixels whose centres fall inside the source array's footprint.
    y0 = math.ceil((oy - 0.5 * src_scale0) / dst_scale0 - 1e-9)
    x0 = math.ceil((ox - 0.5 * src_scale0) / dst_scale0 - 1e-9)
    y1 = math.floor((oy + (h - 0.5) * src_scale0) / dst_scale0 - 1e-9) + 1
    x1 = math.floor((ox + (w - 0.5) * src_scale0) / dst_scale0 - 1e-9) + 1
    y0, x0 = max(y0, 0), max(x0, 0)
    if dst_shape is not None:
        y1, x1 = min(y1, int(dst_shape[0])), min(x1, int(dst_shape[1]))
    if y1 <= y0 or x1 <= x0:
        return y0, x0, np.zeros((0, 0), labels.dtype)
    sy = np.rint((np.arange(y0, y1) * dst_scale0 - oy) / src_scale0).astype(int).clip(0, h - 1)
    sx = np.rint((np.arange(x0, x1) * dst_scale0 - ox) / src_scale0).astype(int).clip(0, w - 1)
    if abs(ratio - 1.0) < 1e-9 and abs(oy / dst_scale0 - round(oy / dst_scale0)) < 1e-9 \
            and abs(ox / dst_scale0 - round(ox / dst_scale0)) < 1e-9:
        return y0, x0, labels[sy[0]: sy[-1] + 1, sx[0]: sx[-1] + 1].copy()
    return y0, x0, labels[np.ix_(sy, sx)]
