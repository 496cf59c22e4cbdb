"""What a whole-slide run takes (``SlideRunSettings``) and gives back (``SlideRun``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

#: Store chunk edge (model px): large chunks keep the margin overhead small (about 13 % at 2048).
DEFAULT_CHUNK_PX = 2048


@dataclass(frozen=True, kw_only=True)
class SlideRunSettings:
    """How to run ``segment_slide``; every field has a default.

    ``workers`` > 1 without a dask client starts a local process cluster for the run.
    ``mpp`` overrides the slide's µm/px. ``skip_glass=False`` runs the model on every tile of a
    chunk with tissue, glass included (for comparisons). ``organ`` picks the card's
    post-processing profile (default: the card's default organ; a Predictor keeps its own).
    ``resume`` continues an earlier run into the same store; without it the store starts over.
    """

    device: str | None = None
    batch_size: int | None = None
    chunk_px: int = DEFAULT_CHUNK_PX
    workers: int | None = None
    mpp: float | None = None
    resume: bool = True
    skip_glass: bool = True
    organ: str | None = None

    def __post_init__(self) -> None:
        if self.chunk_px is None:  # "not set" from a command line: the default
            object.__setattr__(self, "chunk_px", DEFAULT_CHUNK_PX)
        for name in ("chunk_px", "batch_size", "workers"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")
        if self.mpp is not None and not self.mpp > 0:
            raise ValueError(f"mpp must be > 0 µm/px, got {self.mpp!r}")


@dataclass(frozen=True, kw_only=True)
class SlideRun:
    """What a ``segment_slide`` call did: the store it filled, the model that ran, the work
    done in this call (a resumed run counts only its own chunks) and where the time went."""

    store: Any  # labels.store.LabelStore
    model: Any  # model.resolve.ModelSource
    shape: tuple[int, int]  # the store's level 0 (model px)
    downsample: float  # slide level-0 px per store px
    chunks: int
    chunks_run: int  # run in this call (the rest were done before)
    chunks_with_tissue: int
    tiles_with_tissue: int  # tiles of the slide grid that meet the tissue mask
    tiles_run: int = 0  # through the model
    tiles_padding: int = 0  # batch slots filled with padding
    tiles_from_cache: int = 0  # blended by a second chunk from the run's tile cache
    tiles_background: int = 0  # skipped: glass in chunks with tissue (certain background)
    cut_objects: int = 0
    objects: int = 0
    relabelled_chunks: int = 0
    model_calls: int | None = None  # None when workers ran the model
    tiles: int | None = None
    t_tissue_s: float = 0.0
    t_chunks_s: float = 0.0
    t_stitch_s: float = 0.0
    t_total_s: float = 0.0

    @property
    def tiles_skipped(self) -> int:
        """Tiles of chunks with tissue that the model did not run (glass)."""
        return self.tiles_background

    def stats(self) -> dict[str, Any]:
        """The counts and timings as a JSON-ready dict (what a summary records)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("store", "model")}
        out["shape"] = list(self.shape)
        return out

