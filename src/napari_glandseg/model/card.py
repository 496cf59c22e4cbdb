"""The model card: everything needed to run a checkpoint besides its weights."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from napari_glandseg.errors import MPP_RANGE, GlandsegError

DEFAULT_POSTPROCESS: dict[str, Any] = {
    "gland_threshold": 0.5,  # P(gland) + P(border) above this is gland tissue
    "border_threshold": 0.5,  # P(border) above this separates touching glands
    "min_area_um2": 200.0,  # smaller objects are noise, not glands
    "fill_holes": True,
    "neck_um": 0.0,  # > 0: gland interiors joined by a neck narrower than twice this are two seeds
    # > 0 (a model with a distance head): gland seeds are where the predicted distance of a pixel
    # to its gland's edge, a share of that gland's deepest, is at least this
    "seed_distance": 0.0,
    # cores of the map joined above seed_distance minus this are one core (only a valley that deep splits)
    "seed_valley": 0.0,
}


@dataclass(frozen=True)
class ModelCard:
    """Architecture, input conventions, post-processing and provenance of a model.

    ``mpp`` is the resolution (µm/px) the model was trained at; images are resampled to it.
    """

    name: str
    arch: str = "dual_swin_unet"
    arch_args: dict[str, Any] = field(default_factory=dict)
    mpp: float = 1.24
    tile_px: int = 384
    overlap_px: int = 64
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    classes: tuple[str, ...] = ("background", "gland", "border")
    postprocess: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_POSTPROCESS))
    provenance: dict[str, Any] = field(default_factory=dict)
    #: post-processing per organ (each tuned on that organ's validation images), over ``postprocess``
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the organ whose profile applies: the default one on a saved card, the chosen one in a run
    organ: str | None = None

    def __post_init__(self) -> None:
        from napari_glandseg.model import card_checks as check

        check.check_numbers(self.name, "mpp", [self.mpp], 1, positive=True)
        lo, hi = MPP_RANGE
        if not lo <= self.mpp <= hi:
            raise ValueError(f"model card {self.name!r}: mpp must be a µm/px in [{lo:g}, {hi:g}], got {self.mpp!r}")
        if not check.is_integer(self.tile_px) or self.tile_px % 32 or not 0 < self.tile_px <= 4096:
            raise ValueError(f"model card {self.name!r}: tile_px must be a multiple of 32 in (0, 4096], "
                             f"got {self.tile_px!r}")
        if not check.is_integer(self.overlap_px) or not 0 <= self.overlap_px < self.tile_px // 2:
            raise ValueError(
                f"model card {self.name!r}: overlap_px must be in [0, tile_px/2), got {self.overlap_px!r}"
            )
        check.check_numbers(self.name, "mean", self.mean, 3)
        check.check_numbers(self.name, "std", self.std, 3, positive=True)
        if len(self.classes) < 2 or self.classes[0] != "background" or not all(isinstance(c, str) for c in self.classes):
            raise ValueError(f"model card {self.name!r}: classes must be names starting with 'background'")
        check.check_postprocess(self.name, self.postprocess)
        if not isinstance(self.profiles, dict):
            raise ValueError(f"model card {self.name!r}: profiles must be an object of organ: postprocess")
        for organ, post in self.profiles.items():
            check.check_postprocess(f"{self.name}, profile {organ}", post)
        if self.organ is not None and self.organ not in self.profiles:
            raise ValueError(f"model card {self.name!r}: organ {self.organ!r} has no profile "
                             f"(profiles: {', '.join(self.profiles) or 'none'})")
        check.check_arch(self.name, self.arch, self.arch_args)

    @property
    def channels(self) -> tuple[str, ...]:
        """What the network's output channels are: the classes, then the maps (``model.outputs``)."""
        return self.classes + (("distance",) if self.arch_args.get("distance_head") else ())

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)

    def for_organ(self, organ: str | None = None) -> ModelCard:
        """The card with ``organ``'s post-processing profile applied (None: the card's default
        organ; a card without profiles has one post-processing for every organ)."""
        organ = organ or self.organ
        if organ is None:
            return self
        if organ not in self.profiles:
            have = ", ".join(sorted(self.profiles)) if self.profiles else "none: one post-processing for all"
            raise GlandsegError(f"model {self.name!r} has no post-processing profile for organ {organ!r} "
                             f"(profiles: {have})")
        return dataclasses.replace(self, postprocess={**self.postprocess, **self.profiles[organ]}, organ=organ)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"], d["classes"] = list(self.mean), list(self.std), list(self.classes)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model card fields: {sorted(unknown)}; allowed: {sorted(known)}")
        d = dict(d)
        for key in ("mean", "std", "classes"):
            if key in d:
                d[key] = tuple(d[key])
        if "postprocess" in d:
            d["postprocess"] = {**DEFAULT_POSTPROCESS, **d["postprocess"]}
        if "profiles" in d and isinstance(d["profiles"], dict):
            d["profiles"] = {str(k): dict(v) if isinstance(v, dict) else v for k, v in d["profiles"].items()}
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        return cls.from_dict(json.loads(text))
