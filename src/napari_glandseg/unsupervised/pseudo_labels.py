"""Proposals as training targets (the training half of MSSG, written here): a training package.

Selective Proposal Mining gives, per image, gland instances whose sub-regions (epithelium band,
lumen, mucin) the morphology cue has already grouped into whole glands. A network trained on
them learns what the proposals share across images — the grouped glands — and not each image's
clustering noise. What the proposals are least sure of is left out of the loss (MSSG's
"selective" part): a band of ``band_um`` on either side of every proposal outline, where the
clustering, the closing and the neck splitting decide pixel by pixel.

``write_proposal_package`` writes the proposals of image folders and slides as a training
package (``labels.export``'s format: tiles, instance masks, and ``valid`` = outside the band),
which ``training/finetune.py`` and "Fine-tune on my corrections" read unchanged. Nothing here
reads a mask: the package's manifest says ``"labels": "spm-proposals (no labels)"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from napari_glandseg.errors import GlandsegError, check_mpp
from napari_glandseg.unsupervised.proposals import ProposalConfig, propose_glands

#: What a proposal package's manifest says its labels are.
PROPOSAL_LABELS = "spm-proposals (no labels)"
#: ... and a self-training package's (a model made without labels labelling the images).
SELF_TRAINING_LABELS = "model pseudo-labels (self-training, no labels)"

#: labels(rgb, mpp) -> int gland instances of the image (its H×W).
Labeller = Callable[[np.ndarray, float], np.ndarray]


def selective_valid(labels: np.ndarray, mpp: float, band_um: float) -> np.ndarray:
    """True where a proposal's target is trusted: farther than ``band_um`` from every outline (the
    boundary between two glands, or a gland and the background), measured from pixel centres."""
    if band_um <= 0 or not labels.any():
        return np.ones(labels.shape, bool)
    # the pixels on either side of a boundary: each half a pixel from it
    edge = np.zeros(labels.shape, bool)
    for axis in (0, 1):
        step = np.diff(labels, axis=axis) != 0
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        edge[tuple(lo)] |= step
        edge[tuple(hi)] |= step
    return ndi.distance_transform_edt(~edge) + 0.5 >= band_um / mpp


def _source(entry: Any) -> tuple[Path, float | None]:
    """(path, µm/px or None) of a source: a path or a ``{path, mpp}`` config entry."""
    if isinstance(entry, dict):
        if "path" not in entry or set(entry) - {"path", "mpp"}:
            raise GlandsegError(f"proposal source {entry}: give path and optionally mpp, nothing else")
        mpp = entry.get("mpp")
        return Path(entry["path"]), None if mpp is None else check_mpp(mpp, f"proposal source {entry['path']}: mpp")
    return Path(entry), None


def _image_sources(sources: Sequence[Any], *, data_mpp: float, work_mpp: float, holdout: float, seed: int):
    """(name, RGB at its own µm/px, µm/px) of every image the sources hold; slides whole, read at
    ``work_mpp``."""
    from napari_glandseg.labels.folders import image_files, validation_names
    from napari_glandseg.labels.masks import read_image
    from napari_glandseg.slide.ngff import is_zarr

    for path, mpp in map(_source, sources):
        if path.is_dir() and not is_zarr(path):
            root = path / "images" if (path / "images").is_dir() else path
            skip = set(validation_names(path, holdout, seed))
            for p in image_files(root):
                if p.stem not in skip:
                    yield f"{path.name}_{p.stem}", read_image(p), mpp or data_mpp
        else:
            from napari_glandseg.slide import open_slide

            with open_slide(path, mpp=mpp) as slide:
                if slide.mpp is None:
                    raise GlandsegError(f"{path}: the slide does not say its µm/px; give mpp in its entry")
                h0, w0 = slide.shape
                yield slide.name, np.asarray(slide.read_at_mpp((0, 0, h0, w0), work_mpp)), work_mpp


def write_proposal_package(
    out: str | Path,
    sources: Sequence[Any],
    *,
    config: ProposalConfig | None = None,
    data_mpp: float = 0.62,
    holdout: float = 0.0,
    seed: int = 0,
    band_um: float = 3.0,
    threads: int | None = 1,
    progress: Callable[[int, str], None] | None = None,
    labeller: Labeller | None = None,
    labeller_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Proposals of every image of ``sources`` (folders, slides or ``{path, mpp}`` entries; the
    ``holdout`` validation images of mask folders left out, as ``train.unlabeled`` does) as a
    training package at the working µm/px in ``out`` (written under a temporary name, renamed
    into place when complete; an existing ``out`` must be empty or an earlier package). Returns
    the manifest. An image that cannot be proposed on is an error naming it.

    ``labeller`` replaces the proposals with another no-label source of glands, for a
    self-training round: a model made without labels labelling the same images; ``labeller_info``
    (its ``name`` and weights' ``sha256``) goes into the manifest as ``model`` / ``model_sha256``."""
    from napari_glandseg._atomic import atomic_path, write_json_atomic
    from napari_glandseg.labels.export import PACKAGE_FORMAT, PACKAGE_VERSION, check_package_target, write_package_tile
    from napari_glandseg.slide.resample import resize_rgb

    cfg = config or ProposalConfig()
    mpp = cfg.work_mpp
    regions, t0 = [], time.perf_counter()
    check_package_target(out)
    with atomic_path(out, is_dir=True) as tmp:
        for sub in ("images", "masks", "valid"):
            (tmp / sub).mkdir()
        images = _image_sources(sources, data_mpp=data_mpp, work_mpp=mpp, holdout=holdout, seed=seed)
        for i, (name, rgb, src_mpp) in enumerate(images):
            h, w = max(1, round(rgb.shape[0] * src_mpp / mpp)), max(1, round(rgb.shape[1] * src_mpp / mpp))
            work = rgb if (h, w) == rgb.shape[:2] else resize_rgb(rgb, h, w)
            try:
                labels = (propose_glands(work, mpp, cfg, threads=threads).labels if labeller is None
                          else labeller(work, mpp))
            except GlandsegError as exc:
                raise GlandsegError(f"{name}: {exc}") from exc
            valid = selective_valid(labels, mpp, band_um)
            tile = write_package_tile(tmp, f"region_{i:04d}", work, labels, valid)
            regions.append({**tile, "name": name, "valid_fraction": round(float(valid.mean()), 4)})
            if progress:
                progress(i + 1, name)
        if not regions:
            raise GlandsegError(f"{out}: the sources hold no images")
        manifest = {"format": PACKAGE_FORMAT, "version": PACKAGE_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "mpp": mpp, "labels": PROPOSAL_LABELS if labeller is None else SELF_TRAINING_LABELS,
                    "model": (labeller_info or {}).get("name"),
                    **({"model_sha256": labeller_info.get("sha256")} if labeller_info else {}),
                    "proposals": {"sources": [str(s) if not isinstance(s, dict) else s for s in sources],
                                  "holdout": holdout, "seed": seed, "band_um": band_um,
                                  "seconds": round(time.perf_counter() - t0, 1)},
                    "regions": regions}
        write_json_atomic(tmp / "manifest.json", manifest)
    return manifest
