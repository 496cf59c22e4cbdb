"""What fine-tuning on corrections trains on: the user's images (checked before anything loads),
the reviewed regions of a label store, the held-back validation part, and replay of the base
model's own training data.

Replay sources, first that applies: the ``replay`` argument; ``$GLANDSEG_REPLAY_DATA``
(``PATH[@MPP[@WEIGHT]]`` entries separated by ``os.pathsep``, or ``none``); the ``data`` entries
of the base model card's provenance that exist on this machine (relative paths are tried from
the working directory, the source checkout and the checkpoint's folder).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_glandseg.errors import GlandsegError
from napari_glandseg.labels.folders import GLAS_MPP, ImageMask, checked_pairs, split_names
from napari_glandseg.slide.resample import resize_rgb
from napari_glandseg.train.corrections_settings import REPLAY_ENV
from napari_glandseg.train.data import (
    DataSource,
    Sample,
    glas_folder_names,
    load_glas_folder,
    load_training_package,
    pair_sample,
    rescale_sample,
)

log = logging.getLogger(__name__)

#: µm/px of replay folders that say nothing (GlaS, like training/finetune.py's data_mpp).
DEFAULT_DATA_MPP = GLAS_MPP
#: With this many images or more, whole images are held back; fewer are split in strips.
WHOLE_IMAGES_FROM = 6
#: The thinnest held-back strip (model px) worth scoring.
MIN_STRIP_PX = 48


@dataclass(frozen=True)
class ImageFolders:
    """An image folder and a mask folder (same file names) at ``mpp`` µm/px."""

    images: Path
    masks: Path
    mpp: float


# ----------------------------------------------------------------- the user's images


def check_folders(f: ImageFolders) -> list[ImageMask]:
    """Pairs of ``f`` after checking µm/px, names, sizes and that no mask is empty (a correction
    nobody drew): ``labels.folders`` reads them as ``glandseg evaluate`` and training do."""
    if not (np.isfinite(f.mpp) and f.mpp > 0):
        raise GlandsegError(f"the images' µm/px must be a finite positive number, got {f.mpp}")
    return checked_pairs(f.images, f.masks, allow_empty=False)


def load_folders(f: ImageFolders, model_mpp: float, pairs: list[ImageMask] | None = None) -> list[Sample]:
    """The checked pairs of ``f`` as samples at ``model_mpp`` (every pixel reviewed)."""
    return [pair_sample(pair, f.mpp / model_mpp) for pair in (pairs if pairs is not None else check_folders(f))]


def load_package(path: Path, model_mpp: float) -> list[Sample]:
    """A training package's reviewed tiles; a package without any reviewed pixel is an error."""
    samples = [s for s in load_training_package(path, model_mpp=model_mpp) if s.valid.any()]
    if not samples:
        raise GlandsegError(f"{path}: the training package has no reviewed regions")
    return samples


# ----------------------------------------------------------------- reviewed regions of a store


def reviewed_samples(store_path: str | os.PathLike, slide_path: str | os.PathLike, *, model_mpp: float,
                     slide_mpp: float | None = None) -> list[Sample]:
    """The reviewed area of a label store as samples at ``model_mpp``: overlapping commits merge
    into one sample (its bounding box; ``valid`` is their union), so no pixel counts twice."""
    from napari_glandseg.labels.store import LabelStore
    from napari_glandseg.slide import open_slide

    store_path = Path(store_path)
    if not store_path.exists():
        raise GlandsegError(f"{store_path}: no label store yet; commit your corrections first")
    store = LabelStore.open(store_path, read_only=True)
    rects = [tuple(int(v) for v in r["bounds"]) for r in store.reviewed_regions()]
    rects = [r for r in rects if r[2] > 0 and r[3] > 0]
    if not rects:
        raise GlandsegError(f"{store_path}: no reviewed regions; commit your corrections first")
    with open_slide(slide_path, mpp=slide_mpp) as slide:
        if not (slide.mpp and store.mpp):
            raise GlandsegError(f"{slide_path}: the slide's µm/px is unknown; set it in Segment first")
        f = store.mpp / slide.mpp  # level-0 slide px per store px
        samples = []
        for i, group in enumerate(merge_rects(rects)):
            y0, x0 = min(r[0] for r in group), min(r[1] for r in group)
            y1, x1 = max(r[0] + r[2] for r in group), max(r[1] + r[3] for r in group)
            valid = np.zeros((y1 - y0, x1 - x0), bool)
            for y, x, h, w in group:
                valid[y - y0 : y - y0 + h, x - x0 : x - x0 + w] = True
            labels = np.asarray(store.read_region(y0, x0, y1 - y0, x1 - x0), np.int32)
            rgb = slide.read_at_mpp((y0 * f, x0 * f, (y1 - y0) * f, (x1 - x0) * f), store.mpp)
            rgb = resize_rgb(np.ascontiguousarray(rgb[..., :3]), y1 - y0, x1 - x0)
            samples.append(rescale_sample(f"reviewed_{i}", rgb, labels, valid, store.mpp / model_mpp))
    return samples


def merge_rects(rects: Sequence[tuple[int, int, int, int]]) -> list[list[tuple[int, int, int, int]]]:
    """Groups of (y, x, h, w) rectangles that overlap, directly or through others (union-find)."""
    parent = list(range(len(rects)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(rects):
        for j in range(i):
            b = rects[j]
            if a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]:
                parent[root(i)] = root(j)
    groups: dict[int, list] = {}
    for i, r in enumerate(rects):
        groups.setdefault(root(i), []).append(r)
    return list(groups.values())


# ----------------------------------------------------------------- held-back validation


def hold_back(samples: Sequence[Sample], fraction: float, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """(train, validation). From ``WHOLE_IMAGES_FROM`` images on, whole images are held back;
    with fewer, a strip of ``fraction`` of each image's reviewed box (at its longer side's end)
    is held back and ignored in training. Validation samples keep the whole image for context;
    their ``valid`` marks what is scored."""
    if not samples:
        raise GlandsegError("no corrections to fine-tune on")
    if len(samples) >= WHOLE_IMAGES_FROM:
        names = [s.name for s in samples]
        if len(set(names)) != len(names):
            names = [f"{i}:{n}" for i, n in enumerate(names)]
        _, val_names = split_names(names, fraction, seed)
        val = [s for s, n in zip(samples, names, strict=True) if n in val_names]
        return [s for s, n in zip(samples, names, strict=True) if n not in val_names], val
    rng = np.random.default_rng(seed)
    train, val = [], []
    for s in samples:
        strip = _strip(s.valid, fraction, at_start=bool(rng.integers(2)))
        if strip is None:
            train.append(s)
            continue
        val.append(replace(s, valid=s.valid & strip))
        train.append(replace(s, valid=s.valid & ~strip))
    if not val:
        raise GlandsegError(f"the reviewed area is too small to hold any back for validation: review a region "
                            f"at least {int(MIN_STRIP_PX / fraction)} px (at the model's µm/px) long")
    return train, val


def _strip(valid: np.ndarray, fraction: float, at_start: bool) -> np.ndarray | None:
    ys, xs = np.nonzero(valid.any(1))[0], np.nonzero(valid.any(0))[0]
    if not len(ys):
        return None
    (y0, y1), (x0, x1) = (ys[0], ys[-1] + 1), (xs[0], xs[-1] + 1)
    axis = 0 if y1 - y0 >= x1 - x0 else 1
    lo, hi = (y0, y1) if axis == 0 else (x0, x1)
    width = round((hi - lo) * fraction)
    if width < MIN_STRIP_PX:
        return None
    cut = slice(lo, lo + width) if at_start else slice(hi - width, hi)
    strip = np.zeros(valid.shape, bool)
    if axis == 0:
        strip[cut, :] = True
    else:
        strip[:, cut] = True
    return strip


# ----------------------------------------------------------------- replay


def replay_sources(provenance: dict[str, Any], replay: Any = None, *, checkpoint: Path | None = None,
                   warn: Callable[[str], None] = log.warning) -> list[DataSource]:
    """Where the base model's training data is (see the module docstring). ``replay=[]`` (or
    ``$GLANDSEG_REPLAY_DATA=none``) turns replay off; a source that is not here is skipped with
    a warning (through ``warn``), as is replay as a whole when nothing is found."""
    if replay is not None:
        return [_given(_with_mpp(DataSource.parse(e), DEFAULT_DATA_MPP), "replay data") for e in replay]
    env = os.environ.get(REPLAY_ENV, "").strip()
    if env:
        return [] if env.lower() == "none" else [_given(parse_replay_entry(e), f"${REPLAY_ENV}")
                                                 for e in env.split(os.pathsep) if e]
    config = provenance.get("config") or {}
    data_mpp = float(config.get("data_mpp") or DEFAULT_DATA_MPP)
    sources, missing = [], []
    for entry in provenance.get("data") or []:
        try:
            src = _with_mpp(DataSource.parse(entry), data_mpp)
        except ValueError:
            continue
        found = _find(src.path, checkpoint)
        if found is None:
            missing.append(str(src.path))
        else:
            sources.append(replace(src, path=found))
    if missing:
        warn(f"replay: the base model's training data {missing} is not on this machine; set {REPLAY_ENV}")
    if not sources:
        warn("no replay data: the fine-tuned model may forget what it knew (other organs); "
             f"set {REPLAY_ENV} to the base model's training folders")
    return sources


def load_replay(sources: Sequence[DataSource], *, model_mpp: float, val_fraction: float, seed: int,
                check_images: int) -> tuple[list[Sample], list[Sample]]:
    """(replay training samples, held-out replay images that measure forgetting).

    Each folder is split as the base model's training split it (``val_fraction``, ``seed``): the
    held-out part was not trained on; up to ``check_images`` of it per folder are scored.
    """
    train, check = [], []
    for src in sources:
        if (src.path / "manifest.json").exists():
            for s in load_training_package(src.path, model_mpp=model_mpp):
                s.weight = src.weight
                train.append(s)
            continue
        tr, va = split_names(glas_folder_names(src.path), val_fraction, seed)
        train += load_glas_folder(src.path, source_mpp=src.mpp, model_mpp=model_mpp, names=tr, weight=src.weight)
        if va and check_images:
            check += load_glas_folder(src.path, source_mpp=src.mpp, model_mpp=model_mpp, names=va[:check_images])
    return train, check


def mix(user: Sequence[Sample], replay: Sequence[Sample], ratio: float) -> list[Sample]:
    """Set crop weights: the user's samples by reviewed area, ``ratio`` of all crops from replay
    (each replay image by its source's weight)."""
    areas = np.array([float(s.valid.sum()) for s in user])
    share = 1.0 - ratio if replay else 1.0
    out = [replace(s, weight=share * a / areas.sum()) for s, a in zip(user, areas, strict=True) if a > 0]
    total = sum(s.weight for s in replay)
    out += [replace(s, weight=ratio * s.weight / total) for s in replay]
    return out


def _with_mpp(src: DataSource, mpp: float) -> DataSource:
    return src if src.mpp else replace(src, mpp=mpp)


def parse_replay_entry(entry: str) -> DataSource:
    path, *nums = entry.split("@")
    try:
        mpp = float(nums[0]) if nums else DEFAULT_DATA_MPP
        weight = float(nums[1]) if len(nums) > 1 else 1.0
        return DataSource.parse({"path": path, "mpp": mpp, "weight": weight})
    except ValueError as exc:
        raise GlandsegError(f"{REPLAY_ENV}: {entry!r} is not PATH[@MPP[@WEIGHT]] ({exc})") from exc


def _given(src: DataSource, origin: str) -> DataSource:
    """A replay source the user named: it must be here (``GlandsegError`` naming it otherwise)."""
    found = _find(src.path, None)
    if found is None:
        raise GlandsegError(f"{src.path}: {origin} must be a folder with images/ and masks/ (GlaS-style) or a "
                            "training package (manifest.json); nothing like that is there")
    return replace(src, path=found)


def _find(path: Path, checkpoint: Path | None) -> Path | None:
    """``path`` if it exists, else relative to the working directory, the checkout, the checkpoint."""
    path = Path(path)
    bases = [Path.cwd(), Path(__file__).resolve().parents[3]]
    if checkpoint is not None:
        bases.append(Path(checkpoint).resolve().parent)
    candidates = [path] if path.is_absolute() else [b / path for b in bases]
    return next((c.resolve() for c in candidates if (c / "images").is_dir() or (c / "manifest.json").exists()), None)
