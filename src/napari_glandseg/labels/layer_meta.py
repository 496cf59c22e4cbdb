"""What a gland labels layer knows about itself: :class:`GlandLayerMeta`, kept in ``metadata["glandseg"]``.

A gland labels layer must remember where it sits on the slide and where its corrections go,
so that commit, export and the writers work from the layer alone (after a pan, a layer
switch, or a save/re-open). This module is the only reader and writer of that state: widgets
read it with :func:`read`, make a new one with :func:`dataclasses.replace` (it is frozen) and
store it with :func:`write`. On the layer it is a plain JSON-able dict (napari copies metadata
around freely), with the keys layers saved by earlier versions have.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from napari_glandseg.slide.placement import GridPlacement

KEY = "glandseg"
#: Where a layer the plugin did not make keeps the glands "Next uncertain" has shown.
UNCERTAIN_KEY = "uncertain_reviewed"

#: Kinds of gland layers: a "Segment view" result, a whole-slide store, a store region opened
#: for editing, or glands imported from GeoJSON.
KINDS = ("view", "store", "edit", "import")


def default_store_path(slide_path: str | os.PathLike, slide_name: str | None = None) -> Path:
    """``<slide folder>/<slide name>.glandseg.zarr``: where whole-slide results and autosaves go."""
    p = Path(slide_path)
    name = slide_name or p.name.split(".")[0]
    return p.parent / f"{name}.glandseg.zarr"


@dataclass(frozen=True)
class GlandLayerMeta:
    """A gland layer's state.

    ``placement``: where label pixels sit on the slide (level-0 px, napari's pixel-centre
    convention; see :class:`GridPlacement`). ``model``/``model_mpp``: the model that made the
    glands and its µm/px (a new store is made at that µm/px). ``bbox0``: the level-0 box a
    "Segment view" was asked for. ``store``: the label store commits go to; ``store_region``:
    the ``(y, x, h, w)`` of an edited region in the store's own pixels. ``reviewed``: one record
    per commit of this layer; ``uncertain_reviewed``: the glands "Next uncertain" has shown.
    """

    kind: str
    slide_name: str
    slide_shape: tuple[int, int]
    placement: GridPlacement
    slide_path: str | None = None
    slide_mpp: float | None = None
    model: str | None = None
    model_mpp: float | None = None
    bbox0: tuple[int, int, int, int] | None = None
    store: str | None = None
    store_region: tuple[int, int, int, int] | None = None
    reviewed: tuple[dict[str, Any], ...] = ()
    uncertain_reviewed: tuple[int, ...] = ()
    source_geojson: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys this version does not know: kept

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown gland layer kind {self.kind!r}; expected one of {KINDS}")

    @property
    def labels_mpp(self) -> float | None:
        """µm per label pixel: the slide's µm/px times level-0 px per label px; else the
        model's (None if neither is known)."""
        if self.slide_mpp:
            return float(self.slide_mpp) * float(self.placement.scale)
        return self.model_mpp

    def reviewed_by_commit(self, record: dict[str, Any]) -> GlandLayerMeta:
        """This state with one more commit's review record."""
        return replace(self, reviewed=(*self.reviewed, dict(record)))

    # ---- the JSON-able form -------------------------------------------------------------------

    def to_metadata(self) -> dict[str, Any]:
        """The ``metadata["glandseg"]`` dict (lists, not tuples: what a JSON round trip gives)."""
        out = {
            **self.extra,
            "kind": self.kind,
            "slide_path": self.slide_path,
            "slide_name": self.slide_name,
            "slide_mpp": self.slide_mpp,
            "slide_shape": list(self.slide_shape),
            "label_scale0": float(self.placement.scale),
            "label_translate0": [float(v) for v in self.placement.translate],
            "model": self.model,
            "model_mpp": self.model_mpp,
            "bbox0": _list(self.bbox0),
            "store": self.store,
            "store_region": _list(self.store_region),
            "reviewed": [dict(r) for r in self.reviewed],
            UNCERTAIN_KEY: list(self.uncertain_reviewed),
        }
        if self.source_geojson is not None:
            out["source_geojson"] = self.source_geojson
        return out

    @classmethod
    def from_metadata(cls, d: Mapping[str, Any]) -> GlandLayerMeta:
        """Inverse of :meth:`to_metadata`; also reads dicts saved by earlier versions."""
        ty, tx = d.get("label_translate0") or (0.0, 0.0)
        known = {"kind", "slide_path", "slide_name", "slide_mpp", "slide_shape", "label_scale0",
                 "label_translate0", "model", "model_mpp", "bbox0", "store", "store_region", "reviewed",
                 UNCERTAIN_KEY, "source_geojson"}
        return cls(
            kind=str(d["kind"]),
            slide_name=str(d.get("slide_name") or ""),
            slide_shape=_ints(d["slide_shape"], 2),
            placement=GridPlacement(float(d.get("label_scale0") or 1.0), (float(ty), float(tx))),
            slide_path=_str(d.get("slide_path")),
            slide_mpp=_float(d.get("slide_mpp")),
            model=_str(d.get("model")),
            model_mpp=_float(d.get("model_mpp")),
            bbox0=None if d.get("bbox0") is None else _ints(d["bbox0"], 4),
            store=_str(d.get("store")),
            store_region=None if d.get("store_region") is None else _ints(d["store_region"], 4),
            reviewed=tuple(dict(r) for r in d.get("reviewed") or ()),
            uncertain_reviewed=tuple(int(v) for v in d.get(UNCERTAIN_KEY) or ()),
            source_geojson=_str(d.get("source_geojson")),
            extra={k: v for k, v in d.items() if k not in known},
        )

    def layer_metadata(self) -> dict[str, Any]:
        """A new layer's ``metadata``: this state under :data:`KEY`, nothing else."""
        return {KEY: self.to_metadata()}


def read(metadata: Mapping[str, Any] | None) -> GlandLayerMeta | None:
    """The gland state of a layer's metadata, or None for layers this plugin did not make."""
    d = (metadata or {}).get(KEY)
    if not isinstance(d, Mapping) or d.get("kind") not in KINDS or not d.get("slide_shape"):
        return None  # not a gland layer's state (e.g. a store's own attributes copied in)
    return GlandLayerMeta.from_metadata(d)


def write(metadata: MutableMapping[str, Any], meta: GlandLayerMeta) -> None:
    """Store ``meta`` as a layer's gland state (in place in the layer's metadata dict)."""
    metadata[KEY] = meta.to_metadata()


def uncertain_reviewed(metadata: Mapping[str, Any]) -> tuple[int, ...]:
    """The glands "Next uncertain" has shown on a layer (any labels layer: a layer this plugin
    did not make keeps them beside, not inside, the gland state)."""
    meta = read(metadata)
    if meta is not None:
        return meta.uncertain_reviewed
    return tuple(int(v) for v in metadata.get(UNCERTAIN_KEY) or ())


def set_uncertain_reviewed(metadata: MutableMapping[str, Any], labels: Sequence[int]) -> None:
    """Replace the glands "Next uncertain" has shown on a layer (see :func:`uncertain_reviewed`)."""
    meta = read(metadata)
    if meta is not None:
        write(metadata, replace(meta, uncertain_reviewed=tuple(int(v) for v in labels)))
    else:
        metadata[UNCERTAIN_KEY] = [int(v) for v in labels]


def make_meta(*, kind: str, slide_path: str | None, slide_name: str, slide_mpp: float | None,
              slide_shape: tuple[int, int], label_scale0: float, label_translate0: tuple[float, float],
              **rest: Any) -> dict[str, Any]:
    """The ``metadata["glandseg"]`` dict of a new :class:`GlandLayerMeta` (for scripts that build
    layers by hand; ``rest``: its other fields by name)."""
    placement = GridPlacement(float(label_scale0), (float(label_translate0[0]), float(label_translate0[1])))
    for name in ("store", "source_geojson"):
        if rest.get(name) is not None:
            rest[name] = str(rest[name])
    for name in ("bbox0", "store_region"):
        if rest.get(name) is not None:
            rest[name] = _ints(rest[name], 4)
    return GlandLayerMeta(kind=kind, slide_path=_str(slide_path), slide_name=slide_name, slide_mpp=slide_mpp,
                          slide_shape=_ints(slide_shape, 2), placement=placement, **rest).to_metadata()


def _ints(values: Sequence[Any], n: int) -> tuple[int, ...]:
    return tuple(int(v) for v in list(values)[:n])


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def _list(v: Sequence[int] | None) -> list[int] | None:
    return None if v is None else [int(x) for x in v]
