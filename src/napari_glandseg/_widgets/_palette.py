"""Gland layer colours that stand out on H&E.

napari's random label colours include lavender, pink and pale grey, which vanish on eosin pink
and haematoxylin purple; gland layers cycle through saturated colours far from both instead.
"""

from __future__ import annotations

from typing import Any

#: cyan, lime, yellow, blue, orange, spring green, black, teal (no pinks, purples, pale greys)
GLAND_COLORS = ("#00e5ff", "#76ff03", "#ffd600", "#2962ff", "#ff6d00", "#00ff95", "#101010", "#00897b")
GLAND_OPACITY = 0.6


def gland_colormap() -> Any:
    from napari.utils.colormaps import CyclicLabelColormap

    # the first colour is the background's (label 0): transparent
    return CyclicLabelColormap(colors=[(0.0, 0.0, 0.0, 0.0), *GLAND_COLORS], name="glandseg-glands")


def gland_style() -> dict[str, Any]:
    """``viewer.add_labels`` keyword arguments every gland layer gets."""
    return {"colormap": gland_colormap(), "opacity": GLAND_OPACITY}
