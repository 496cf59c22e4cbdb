"""From napari layers back to slides and label stores (no Qt here; napari layers only).

The reader puts ``metadata["glandseg_slide"]`` (``Slide.info()``) and ``metadata["path"]`` on
every slide layer; from those the widgets reopen the slide lazily for the engines.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg._widgets._palette import gland_style
from napari_glandseg.labels import layer_meta as lm
from napari_glandseg.slide.placement import GridPlacement

_OPEN: dict[tuple[str, float | None], Any] = {}
_OPEN_LOCK = threading.Lock()


@dataclass(frozen=True)
class SlideRef:
    """What the widgets need to know about a slide layer, captured at click time."""

    path: str | None
    name: str
    mpp: float | None
    shape: tuple[int, int]

    def open(self) -> Any:
        """The Slide (cached per path and µm/px; opening is lazy and cheap)."""
        from napari_glandseg.slide import open_slide

        if self.path is None:
            raise ValueError(
                f"{self.name}: this image layer was not opened by napari-glandseg; "
                "open the slide file with the plugin (File > Open, napari-glandseg)"
            )
        key = (self.path, self.mpp)
        with _OPEN_LOCK:
            if key not in _OPEN:
                _OPEN[key] = open_slide(self.path, mpp=self.mpp)
            return _OPEN[key]


def slide_ref(layer: Any, mpp_override: float | None = None) -> SlideRef:
    """Slide facts of an image layer: reader metadata first, then the layer itself."""
    info = layer.metadata.get("glandseg_slide") or {}
    path = layer.metadata.get("path") or info.get("path")
    if path is None and getattr(layer.source, "path", None):
        path = str(layer.source.path)
    mpp = mpp_override or info.get("mpp")
    if mpp is None and not np.allclose(np.asarray(layer.scale)[-2:], 1.0):
        # A layer scaled in µm (e.g. opened by another reader) still tells us its µm/px.
        mpp = float(np.asarray(layer.scale)[-1])
    data0 = layer.data[0] if layer.multiscale else layer.data
    shape = tuple(int(v) for v in (info.get("shape") or data0.shape[:2]))
    return SlideRef(path=path, name=info.get("name") or layer.name, mpp=mpp, shape=shape)  # type: ignore[arg-type]


def store_layer_kwargs(
    path: Path,
    ref: SlideRef,
    placement: tuple[Any, Any],
    *,
    model: str | None,
    model_mpp: float | None,
    store: Any = None,
) -> dict[str, Any]:
    """``viewer.add_labels`` arguments showing a label store as a multiscale layer on the slide."""
    from napari_glandseg.labels.store import LabelStore

    store = store or LabelStore.open(path)
    grid = GridPlacement.of_store(store.levels[0].shape, ref.shape, getattr(store, "mpp", None), ref.mpp)
    scale, translate = grid.on_image(placement[0], placement[1])
    levels = list(store.levels)
    meta = gland_meta(ref, "store", GridPlacement(grid.scale, grid.translate), model=model, model_mpp=model_mpp,
                      store=str(path))
    return {
        "data": levels if len(levels) > 1 else levels[0],
        "multiscale": len(levels) > 1,
        "name": f"{ref.name} glands (slide)",
        "scale": scale,
        "translate": translate,
        "metadata": meta.layer_metadata(),
        **gland_style(),
    }


def gland_meta(ref: SlideRef, kind: str, placement: GridPlacement, **fields: Any) -> lm.GlandLayerMeta:
    """The state of a new gland layer on ``ref``'s slide (``fields``: the rest of
    :class:`~napari_glandseg.labels.layer_meta.GlandLayerMeta`)."""
    return lm.GlandLayerMeta(kind=kind, slide_path=ref.path, slide_name=ref.name, slide_mpp=ref.mpp,
                             slide_shape=(int(ref.shape[0]), int(ref.shape[1])), placement=placement, **fields)
