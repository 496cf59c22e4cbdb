"""Training data: GlaS-style folders and exported training packages, resampled to the model's
µm/px, with the augmentations that matter for H&E, and 3-class targets (background, gland,
gland border) derived from instance labels. Pixels nobody reviewed carry IGNORE."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi
from skimage.color import hed2rgb, rgb2hed

from napari_glandseg.labels.folders import ImageMask, glas_pairs, split_names
from napari_glandseg.train.distance_target import pack_target, split_labels, with_distance

IGNORE = 255
#: added to a target's class where two glands lie close (``make_targets(separation_px=...)``):
#: the loss weighs those pixels more (``losses.split_separation``) and reads the class below it
SEPARATION = 4


@dataclass
class Sample:
    """One labelled image at the model's µm/px."""

    name: str
    image: np.ndarray  # H×W×3 uint8
    labels: np.ndarray  # H×W int32 instances
    valid: np.ndarray  # H×W bool: pixels whose label counts
    tumor: int = -1  # 1 malignant, 0 benign, -1 unknown
    weight: float = 1.0  # relative chance of being drawn for a crop
    organ: str | None = None  # its source's organ: validation scores it at that organ's profile


@dataclass(frozen=True)
class DataSource:
    """One training folder or package, with its µm/px and how often its images are drawn.

    Configs give either a path or ``{path: ..., mpp: 2.72, weight: 3.0}``; ``weight`` multiplies
    the chance of each of its images (a few large prostate tiles beside 85 GlaS images).
    """

    path: Path
    mpp: float | None = None  # None: the config's data_mpp
    weight: float = 1.0
    glass: bool = False  # a slide whose glass is taught as background (its tissue is ignored)
    organ: str | None = None  # e.g. colon, prostate: whose post-processing profile its validation images tune

    @classmethod
    def parse(cls, entry) -> DataSource:
        if isinstance(entry, DataSource):
            return entry
        if isinstance(entry, dict):
            unknown = set(entry) - {"path", "mpp", "weight", "glass", "organ"}
            if unknown or "path" not in entry:
                raise ValueError(f"data entry {entry}: give path (and optionally mpp, weight, glass, organ); "
                                 f"unknown keys {sorted(unknown)}")
            organ = entry.get("organ")
            src = cls(Path(entry["path"]), entry.get("mpp"), float(entry.get("weight", 1.0)),
                      bool(entry.get("glass", False)), None if organ is None else str(organ))
        else:
            src = cls(Path(entry))
        if src.mpp is not None and not float(src.mpp) > 0:
            raise ValueError(f"data entry {entry}: mpp must be > 0")
        if not (math.isfinite(src.weight) and src.weight > 0):
            raise ValueError(f"data entry {entry}: weight must be a finite number > 0")
        return src


def resize_plane(arr: np.ndarray, shape: tuple[int, int], nearest: bool) -> np.ndarray:
    if arr.shape[:2] == shape:
        return arr
    img = Image.fromarray(arr)
    out = img.resize((shape[1], shape[0]), Image.NEAREST if nearest else Image.BILINEAR)
    return np.asarray(out)


def rescale_sample(name: str, image, labels, valid, scale: float, tumor: int = -1) -> Sample:
    """Resample a sample by ``scale`` (source µm/px ÷ model µm/px)."""
    h, w = image.shape[:2]
    shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    lab = labels.astype(np.int32)
    # PIL nearest on int32 ("I" mode) keeps instance ids exact.
    lab = np.asarray(Image.fromarray(lab).resize((shape[1], shape[0]), Image.NEAREST))
    return Sample(
        name,
        resize_plane(image, shape, nearest=False),
        lab.astype(np.int32),
        resize_plane(valid.astype(np.uint8), shape, nearest=True).astype(bool),
        tumor,
    )


def read_grades(csv_path: Path) -> dict[str, int]:
    """GlaS Grade.csv → {image name: 1 malignant / 0 benign}."""
    grades = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) >= 3 and row[2].strip() in ("benign", "malignant"):
                grades[row[0].strip()] = int(row[2].strip() == "malignant")
    return grades


def load_glas_folder(folder: Path, *, source_mpp: float, model_mpp: float, names: list[str] | None = None,
                     weight: float = 1.0, organ: str | None = None) -> list[Sample]:
    """The images of a GlaS-style folder with their masks (the official ``instances/`` where the
    folder has them, else ``masks/``: see ``labels.folders``), at the model's µm/px; ``names``
    picks images by name. Grades come from a ``Grade.csv`` beside or above the folder."""
    folder = Path(folder)
    grades_csv = next((p for p in (folder / "Grade.csv", folder.parent / "Grade.csv") if p.exists()), None)
    grades = read_grades(grades_csv) if grades_csv else {}
    return [pair_sample(pair, source_mpp / model_mpp, grades.get(pair.name, -1), weight, organ)
            for pair in glas_pairs(folder) if names is None or pair.name in names]


def glas_folder_names(folder: Path) -> list[str]:
    """The image names of a GlaS-style folder (what ``load_glas_folder``'s ``names`` picks from)."""
    return [pair.name for pair in glas_pairs(folder)]


def pair_sample(pair: ImageMask, scale: float, tumor: int = -1, weight: float = 1.0, organ: str | None = None) -> Sample:
    """An image and its mask (every pixel reviewed) resampled by ``scale`` (source ÷ model µm/px)."""
    image, mask = pair.read()
    labels = to_instances(mask)
    sample = rescale_sample(pair.name, image, labels, np.ones(labels.shape, bool), scale, tumor)
    sample.weight, sample.organ = weight, organ
    return sample


def load_split(data: list, val_data: list, *, data_mpp: float, model_mpp: float, val_fraction: float,
               seed: int) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples at ``model_mpp`` from config ``data`` entries (folders,
    packages or ``{path, mpp, weight}``): each folder's images are split by name unless
    ``val_data`` gives the validation folders; packages always train."""
    train, val = [], []
    for src in map(DataSource.parse, data):
        mpp = src.mpp or data_mpp
        if src.glass:
            from napari_glandseg.train.glass import glass_sample

            train.append(glass_sample(src.path, model_mpp=model_mpp, mpp=src.mpp, weight=src.weight))
            continue
        if (src.path / "manifest.json").exists():
            for sample in load_training_package(src.path, model_mpp=model_mpp):
                sample.weight = src.weight
                train.append(sample)
            continue
        names = glas_folder_names(src.path)
        tr, va = (names, []) if val_data else split_names(names, val_fraction, seed)
        train += load_glas_folder(src.path, source_mpp=mpp, model_mpp=model_mpp, names=tr, weight=src.weight,
                                  organ=src.organ)
        if va:
            val += load_glas_folder(src.path, source_mpp=mpp, model_mpp=model_mpp, names=va, organ=src.organ)
    for src in map(DataSource.parse, val_data):
        val += load_glas_folder(src.path, source_mpp=src.mpp or data_mpp, model_mpp=model_mpp, organ=src.organ)
    return train, val


def load_training_package(folder: Path, *, model_mpp: float) -> list[Sample]:
    """A training package exported by the plugin: only reviewed pixels count."""
    from napari_glandseg.labels.export import read_training_package

    samples = []
    for i, item in enumerate(read_training_package(folder)):
        scale = float(item.get("mpp", model_mpp)) / model_mpp
        samples.append(
            rescale_sample(item.get("name", f"{Path(folder).name}_{i}"), item["image"], item["mask"], item["valid"] > 0, scale)
        )
    return samples


def to_instances(mask: np.ndarray) -> np.ndarray:
    """Binary (0/255 or 0/1) masks → connected components; instance (or colour-coded) masks pass
    through as ids (``labels.metrics.to_instances`` with "auto")."""
    from napari_glandseg.labels.metrics import to_instances as read_instances

    return read_instances(mask, "auto")


def reviewed_labels(labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Unreviewed pixels hold anything (old predictions, garbage): each takes the label of the
    nearest reviewed pixel, so that they cannot draw borders inside reviewed glands (the targets
    of reviewed pixels must not depend on unreviewed ones)."""
    if valid.all() or not valid.any():
        return labels
    idx = ndi.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return labels[tuple(idx)]


def make_targets(labels: np.ndarray, valid: np.ndarray, border_px: int = 2, separation_px: int = 0) -> np.ndarray:
    """Instance labels → class map: 0 background, 1 gland interior, 2 gland border, IGNORE.

    ``separation_px`` > 0: pixels with two different glands within that many pixels (a square
    window) get ``SEPARATION`` added to their class, so that the loss can weigh the narrow gaps
    and touching edges between neighbouring glands more (U-Net's separation weights, without the
    per-gland distance maps): where a model merges glands it is wrong there."""
    labels = reviewed_labels(labels, valid)
    fg = labels > 0
    target = fg.astype(np.uint8)
    # A pixel is border if a different label (or background) lies within border_px of it.
    size = 2 * border_px + 1
    lo = ndi.minimum_filter(labels, size=size)
    hi = ndi.maximum_filter(labels, size=size)
    target[fg & ((lo != labels) | (hi != labels))] = 2
    if separation_px > 0:
        none = np.iinfo(np.int32).max  # no gland: above every label, so the minimum finds glands only
        window = 2 * separation_px + 1
        lowest = ndi.minimum_filter(np.where(fg, labels, none).astype(np.int32), size=window)
        highest = ndi.maximum_filter(labels, size=window)
        target[(lowest != none) & (lowest != highest)] += SEPARATION
    target[~valid] = IGNORE
    return target


def hed_jitter(image: np.ndarray, rng: np.random.Generator, sigma: float = 0.05, bias: float = 0.02) -> np.ndarray:
    """Stain augmentation: perturb haematoxylin, eosin and DAB channels (Tellez et al. style)."""
    hed = rgb2hed(image)
    alpha = rng.uniform(1 - sigma, 1 + sigma, size=3)
    beta = rng.uniform(-bias, bias, size=3)
    rgb = hed2rgb(hed * alpha + beta)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def weighted_index(weights: np.ndarray, rng: np.random.Generator) -> int:
    """An index drawn with probability proportional to ``weights`` (uniformly, by ``integers``,
    when they are all equal: the draws of unweighted runs stay what they always were)."""
    if np.all(weights == weights[0]):
        return int(rng.integers(len(weights)))
    return int(rng.choice(len(weights), p=weights / weights.sum()))


def pick_sample(samples: list[Sample], rng: np.random.Generator) -> Sample:
    """A sample drawn with probability proportional to its weight."""
    return samples[weighted_index(np.array([s.weight for s in samples], dtype=float), rng)]


def resized_crop(image, labels, valid, crop_px: int):
    """Resize a square crop (any size) to ``crop_px``: bilinear image, nearest labels/valid."""
    if labels.shape[0] == crop_px:
        return image, labels, valid
    image = resize_plane(image, (crop_px, crop_px), nearest=False)
    labels = np.asarray(Image.fromarray(labels.astype(np.int32)).resize((crop_px,) * 2, Image.NEAREST))
    valid = resize_plane(valid.astype(np.uint8), (crop_px, crop_px), nearest=True).astype(bool)
    return image, labels.astype(np.int32), valid


def augment_crop(image, labels, valid, rng: np.random.Generator):
    """Flips/rot90, HED stain jitter (80 %), Gaussian blur (20 %)."""
    image, labels, valid = _geometric(image, labels, valid, rng)
    if rng.random() < 0.8:
        image = hed_jitter(image, rng)
    if rng.random() < 0.2:
        sigma = rng.uniform(0.3, 1.2)
        image = ndi.gaussian_filter(image.astype(np.float32), (sigma, sigma, 0)).clip(0, 255).astype(np.uint8)
    return image, labels, valid


@dataclass(frozen=True)
class GlassCut:
    """A straight tissue edge across a crop: glass, in one off-white ``tone``, on one side of the
    line through (``cy``, ``cx``) at ``angle``."""

    angle: float
    cy: float
    cx: float
    tone: int

    @classmethod
    def draw(cls, shape: tuple[int, int], rng: np.random.Generator) -> GlassCut:
        """A random cut through the middle half of a crop of ``shape``."""
        h, w = shape
        angle = rng.uniform(0.0, 2.0 * math.pi)
        cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
        return cls(angle, cy, cx, int(rng.integers(225, 256)))

    def beyond(self, rows, cols):
        """Where the glass is, for pixel ``rows`` (a column) and ``cols`` (a row), numpy or torch float64."""
        return (rows - self.cy) * math.sin(self.angle) + (cols - self.cx) * math.cos(self.angle) > 0


def check_cut_share(cut_edges: float) -> float:
    if not 0.0 <= cut_edges <= 1.0:
        raise ValueError(f"cut_edges must be a share of the crops in [0, 1], got {cut_edges}")
    return cut_edges


def cut_by_glass(image, labels, valid, rng: np.random.Generator):
    """The crop cut by a straight tissue edge (:class:`GlassCut`): glass beyond the line, labelled
    background; the tissue side keeps its labels (a gland the cut meets stays gland). A model then
    learns what lies beside a cut edge from the tissue, not from the edge: glands are cut by image
    edges far more often than slides' tissue edges run through them."""
    cut = GlassCut.draw(labels.shape, rng)
    rows, cols = np.ogrid[: labels.shape[0], : labels.shape[1]]
    glass = cut.beyond(rows, cols)  # int rows minus a float: float64, as on the device
    image = np.where(glass[..., None], np.uint8(cut.tone), image).astype(np.uint8)
    return image, np.where(glass, 0, labels).astype(labels.dtype), valid | glass


class CropDataset(torch.utils.data.Dataset):
    """Random augmented crops; ``length`` crops per epoch, deterministic given ``seed`` and index.
    ``cut_edges``: the share of crops cut by a straight tissue edge (:func:`cut_by_glass`);
    ``distance``: targets carry the distance head's target too (``train.distance_target``)."""

    def __init__(self, samples: list[Sample], crop_px: int, length: int, *, seed: int = 0, augment: bool = True,
                 border_px: int = 2, scale_jitter: float = 0.2, pad_background: bool = False,
                 separation_px: int = 0, cut_edges: float = 0.0, distance: bool = False):
        if not samples:
            raise ValueError("no training samples")
        check_cut_share(cut_edges)
        if distance:  # each image's gland depth, made whole before any crop (train.distance_target)
            samples = [with_distance(s) for s in samples]
        self.samples, self.crop_px, self.length, self.distance = samples, crop_px, length, distance
        self.seed, self.augment, self.border_px, self.scale_jitter = seed, augment, border_px, scale_jitter
        self.pad_background, self.separation_px, self.cut_edges = pad_background, separation_px, cut_edges
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        s = pick_sample(self.samples, rng)
        scale = float(np.exp(rng.uniform(-self.scale_jitter, self.scale_jitter))) if self.augment else 1.0
        src = max(8, round(self.crop_px / scale))
        image, labels, valid = resized_crop(*_random_crop(s, src, rng, self.pad_background), self.crop_px)
        if self.cut_edges and rng.random() < self.cut_edges:  # no draw when off: earlier runs' crops stay
            image, labels, valid = cut_by_glass(image, labels, valid, rng)
        if self.augment:
            image, labels, valid = augment_crop(image, labels, valid, rng)
        if not self.distance:
            target = make_targets(labels, valid, self.border_px, self.separation_px).astype(np.int64)
        else:
            labels, levels = split_labels(labels)
            target = pack_target(make_targets(labels, valid, self.border_px, self.separation_px), levels)
        return torch.from_numpy(np.array(image)), torch.from_numpy(target), s.tumor


def _random_crop(s: Sample, size: int, rng: np.random.Generator, pad_background: bool = False):
    y, x = crop_corner(s.labels.shape, size, rng, pad_background)
    return crop_at(s, y, x, size, pad_valid=pad_background)


def crop_corner(shape: tuple[int, int], size: int, rng: np.random.Generator, pad_background: bool) -> tuple[int, int]:
    """The top-left corner of a random ``size``² crop of an image of ``shape``. With
    ``pad_background`` a quarter of the crops may hang over the image's edge by up to half a
    crop (white background there, as glass beyond a tissue edge looks)."""
    h, w = shape
    reach = size // 2 if pad_background and rng.random() < 0.25 else 0
    return int(rng.integers(-reach, max(1, h - size + 1) + reach)), int(rng.integers(-reach, max(1, w - size + 1) + reach))


def crop_at(s: Sample, y: int, x: int, size: int, pad_valid: bool = False):
    """The ``size``² window at (y, x) of a sample; outside the image: white pixels, ignored or
    (``pad_valid``) background."""
    h, w = s.labels.shape
    y0, x0, y1, x1 = max(0, y), max(0, x), min(h, y + size), min(w, x + size)
    pad = ((y0 - y, y + size - y1), (x0 - x, x + size - x1))
    image, labels, valid = s.image[y0:y1, x0:x1], s.labels[y0:y1, x0:x1], s.valid[y0:y1, x0:x1]
    if any(p for pair in pad for p in pair):
        image = np.pad(image, pad + ((0, 0),), constant_values=255)
        labels = np.pad(labels, pad)
        valid = np.pad(valid, pad, constant_values=pad_valid)
    return image, labels, valid


def _geometric(image, labels, valid, rng):
    k = int(rng.integers(4))
    flip = rng.random() < 0.5
    out = []
    for a in (image, labels, valid):
        a = np.rot90(a, k, axes=(0, 1))
        out.append(a[:, ::-1] if flip else a)
    return out
