"""Where a label grid sits on the slide: the one owner of that arithmetic.

A label grid (a label store, a region's labels, a labels layer, an imported GeoJSON's raster) has
``scale`` level-0 slide px per label px. Its pixel ``(i, j)`` covers level-0 px
``[corner + (i, j) * scale, corner + (i + 1, j + 1) * scale)``; in napari's pixel-centre
convention (level-0 pixel ``k`` centred at ``k``, the slide layer at translate 0) its centre is at
``translate + (i, j) * scale`` with ``translate = corner + (scale - 1) / 2``. The layer metadata's
``label_scale0``/``label_translate0`` are this ``scale``/``translate``; GeoJSON and QuPath use the
corner convention. A whole-slide grid (a label store) starts at corner 0 and has
``ceil(slide size / scale)`` pixels, its last pixel overhanging the slide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_glandseg.slide.view_geometry import place_on_image, to_level0


@dataclass(frozen=True)
class GridPlacement:
    """A label grid on the slide: ``scale`` (level-0 px per label px), ``translate`` (level-0
    position of pixel (0, 0)'s centre, napari's convention) and ``shape`` (label px, if known)."""

    scale: float
    translate: tuple[float, float] = (0.0, 0.0)
    shape: tuple[int, int] | None = None

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_corner(cls, scale: float, corner: Sequence[float],
                    shape: Sequence[int] | None = None) -> GridPlacement:
        """The grid whose pixel (0, 0) has its top-left corner at level-0 ``corner``."""
        s = float(scale)
        cy, cx = (float(v) for v in corner[:2])
        return cls(s, (cy + 0.5 * s - 0.5, cx + 0.5 * s - 0.5), _shape(shape))

    @classmethod
    def whole_slide(cls, slide_shape: Sequence[int], scale: float) -> GridPlacement:
        """The grid covering a whole slide (``slide_shape``: level-0 h, w) from corner 0: a label
        store's level 0 (at least one pixel each way; the last one may overhang the slide)."""
        s = float(scale)
        h0, w0 = (int(v) for v in slide_shape[:2])
        return cls.from_corner(s, (0.0, 0.0), (max(1, math.ceil(h0 / s)), max(1, math.ceil(w0 / s))))

    @classmethod
    def of_store(cls, store_shape: Sequence[int], slide_shape: Sequence[int], store_mpp: float | None = None,
                 slide_mpp: float | None = None) -> GridPlacement:
        """A label store's level 0 on its slide (corner 0, the store's own shape): ``store_mpp /
        slide_mpp`` level-0 px per store px when both are known, else the ratio of the heights."""
        if store_mpp and slide_mpp:
            s = float(store_mpp) / float(slide_mpp)
        else:
            s = float(slide_shape[0]) / float(store_shape[0])
        return cls.from_corner(s, (0.0, 0.0), store_shape)

    @classmethod
    def at_mpp(cls, slide_shape: Sequence[int], slide_mpp: float, grid_mpp: float) -> GridPlacement:
        """The whole-slide grid at ``grid_mpp`` µm/px on a slide of ``slide_mpp`` µm/px."""
        return cls.whole_slide(slide_shape, float(grid_mpp) / float(slide_mpp))

    @classmethod
    def for_box(cls, bbox0: Sequence[float], scale: float) -> GridPlacement:
        """The grid of a level-0 box ``(y, x, h, w)`` at ``scale``: corner at the box's, and
        ``round(h / scale)`` × ``round(w / scale)`` pixels (at least one each way)."""
        y0, x0, bh, bw = (float(v) for v in bbox0[:4])
        s = float(scale)
        return cls.from_corner(s, (y0, x0), (max(1, round(bh / s)), max(1, round(bw / s))))

    # ---- conventions --------------------------------------------------------------------------

    @property
    def corner(self) -> tuple[float, float]:
        """Level-0 position of pixel (0, 0)'s top-left corner (GeoJSON/QuPath convention)."""
        half = (self.scale - 1.0) / 2.0
        return float(self.translate[0]) - half, float(self.translate[1]) - half

    def with_shape(self, shape: Sequence[int]) -> GridPlacement:
        return GridPlacement(self.scale, self.translate, _shape(shape))

    def window(self, y: int, x: int, shape: Sequence[int] | None = None) -> GridPlacement:
        """The sub-grid starting at grid index ``(y, x)`` (e.g. a store region opened for editing)."""
        s = self.scale
        return GridPlacement(s, (float(self.translate[0]) + y * s, float(self.translate[1]) + x * s), _shape(shape))

    # ---- coordinates --------------------------------------------------------------------------

    def to_level0(self, points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """Grid (y, x) points (N×2, pixel centres at integers) → level-0 (y, x), same convention."""
        return np.asarray(self.translate, float) + np.asarray(points, float).reshape(-1, 2) * self.scale

    def from_level0(self, points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """Level-0 (y, x) points (N×2) → grid (y, x)."""
        return (np.asarray(points, float).reshape(-1, 2) - np.asarray(self.translate, float)) / self.scale

    def nearest_index(self, corner0: Sequence[float]) -> tuple[int, int]:
        """The grid index whose pixel corner is nearest the level-0 corner position ``corner0``."""
        cy, cx = self.corner
        return round((float(corner0[0]) - cy) / self.scale), round((float(corner0[1]) - cx) / self.scale)

    def box_to_level0(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        """A grid box ``(y, x, h, w)`` (label px) as a level-0 box (corner convention)."""
        y, x, h, w = box[:4]
        s = self.scale
        cy, cx = self.corner
        return (cy + y * s, cx + x * s, h * s, w * s)

    def relative_to(self, other: GridPlacement) -> tuple[float, float]:
        """This grid's ``translate`` in a frame where ``other``'s pixel (0, 0) centre is 0."""
        return (float(self.translate[0]) - float(other.translate[0]),
                float(self.translate[1]) - float(other.translate[1]))

    # ---- napari -------------------------------------------------------------------------------

    def on_image(self, image_scale: Sequence[float],
                 image_translate: Sequence[float]) -> tuple[tuple[float, float], tuple[float, float]]:
        """napari ``(scale, translate)`` of a labels layer of this grid over a slide image layer
        that puts level-0 pixel ``k`` at world ``image_translate + k * image_scale``."""
        return place_on_image(image_scale, image_translate, self.scale, self.translate)

    @classmethod
    def from_layer(cls, world_scale: Sequence[float], world_translate: Sequence[float],
                   image_scale: Sequence[float] = (1.0, 1.0), image_translate: Sequence[float] = (0.0, 0.0),
                   shape: Sequence[int] | None = None) -> GridPlacement:
        """Inverse of :meth:`on_image`: a labels layer's world placement back in level-0 px."""
        scale, translate = to_level0(world_scale, world_translate, image_scale, image_translate)
        return cls(scale[0], translate, _shape(shape))


def _shape(shape: Sequence[int] | None) -> tuple[int, int] | None:
    return None if shape is None else (int(shape[0]), int(shape[1]))
