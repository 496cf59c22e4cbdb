"""Training crops for the guided (click-to-segment) gland model, with simulated guidance.

Each crop is centred near one gland of a labelled image. What a user would do to point at it is
simulated: a click at a random interior point (mostly deep inside, sometimes near the edge:
users miss), a squiggle (a few points along the shrunk gland, joined by lines), extra clicks,
and exclusion clicks on neighbouring glands (or the background). The target is that gland alone.

For a model that also sees its previous result (3 guidance channels), about half the crops are
second clicks: a plausible wrong first result (part of the gland missed, a neighbour or stroma
merged in, the border shrunk or grown) and one corrective click at the centre of its largest
error, inside the gland ("this too") or outside it ("not this"), as a user would click.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_glandseg.interactive.guidance import guidance_maps
from napari_glandseg.train.data import IGNORE, Sample, augment_crop, crop_at, pick_sample, resized_crop

MIN_GLAND_PX = 30  # smaller objects (specks, cut-off corners) are not glands to click on


def _pick(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    ys, xs = np.nonzero(mask)
    i = int(rng.integers(len(ys)))
    return int(ys[i]), int(xs[i])


def simulate_guidance(target: np.ndarray, labels: np.ndarray, rng: np.random.Generator
                      ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(include, exclude) points for the gland ``target`` (bool) among ``labels`` (instances)."""
    dist = ndi.distance_transform_edt(target)
    deep = dist >= max(1.0, 0.4 * dist.max())
    mode = rng.random()
    if mode < 0.55:  # one click inside
        include = [_pick(deep, rng)]
    elif mode < 0.70:  # a careless click near the edge
        near_edge = target & (dist <= 3)
        include = [_pick(near_edge if near_edge.any() else target, rng)]
    elif mode < 0.80:  # two clicks
        include = [_pick(deep, rng), _pick(target, rng)]
    else:  # a squiggle: points along the gland's long axis inside its shrunk mask
        shrunk = dist >= max(1.0, 0.5 * dist.max())
        pts = np.array([_pick(shrunk, rng) for _ in range(int(rng.integers(3, 7)))], float)
        axis = np.linalg.svd(pts - pts.mean(0), full_matrices=False)[2][0]
        include = [tuple(map(int, p)) for p in pts[np.argsort((pts - pts.mean(0)) @ axis)]]
    exclude = []
    if rng.random() < 0.5:
        others = [g for g in np.unique(labels[(labels > 0) & ~target]) if (labels == g).sum() >= MIN_GLAND_PX]
        for g in rng.permutation(others)[: int(rng.integers(1, 4))]:
            inner = ndi.binary_erosion(labels == g, iterations=2)
            exclude.append(_pick(inner if inner.any() else labels == g, rng))
    if rng.random() < 0.1:
        glass = ndi.distance_transform_edt(labels == 0) >= 5
        if glass.any():
            exclude.append(_pick(glass, rng))
    return include, exclude


def corrective_click(result: np.ndarray, truth: np.ndarray) -> tuple[tuple[int, int], bool] | None:
    """The user's next click on a wrong ``result``: the most interior pixel of its largest error
    region, and whether it says "this too" (True: a missed part) or "not this" (False). None
    when the result is right."""
    error = result ^ truth
    regions, n = ndi.label(error)
    if n == 0:
        return None
    sizes = np.bincount(regions.ravel())[1:]
    largest = regions == 1 + int(np.argmax(sizes))
    dist = ndi.distance_transform_edt(np.pad(largest, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return (int(y), int(x)), bool(truth[y, x])


def simulate_previous(target: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible wrong first result for the gland ``target`` (bool) among ``labels``."""
    mode = rng.random()
    previous = target.copy()
    if mode < 0.6:  # part missed: the gland cut by a line through it
        ys, xs = np.nonzero(target)
        i = int(rng.integers(len(ys)))
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.ogrid[:target.shape[0], :target.shape[1]]
        previous &= (yy - ys[i]) * np.sin(angle) + (xx - xs[i]) * np.cos(angle) <= 0
    if mode >= 0.35:  # something merged in: a neighbouring gland, else stroma around it
        near = ndi.binary_dilation(target, iterations=12) & (labels > 0) & ~target
        others = np.unique(labels[near])
        if len(others) and rng.random() < 0.7:
            previous |= labels == rng.choice(others)
        else:
            previous |= ndi.binary_dilation(target, iterations=int(rng.integers(4, 14))) & ~(labels > 0)
    if rng.random() < 0.3:  # the border off by a few pixels
        step = int(rng.integers(2, 6))
        previous = (ndi.binary_erosion if rng.random() < 0.5 else ndi.binary_dilation)(previous, iterations=step)
    return previous


class GuidedCropDataset(torch.utils.data.Dataset):
    """Augmented crops around one gland each: (uint8 H×W×3, float C×H×W guidance, int64 H×W target);
    ``channels`` 3 adds the previous result, with a corrective click on it in ``second_click`` of them."""

    def __init__(self, samples: list[Sample], crop_px: int, length: int, *, seed: int = 0,
                 augment: bool = True, scale_jitter: float = 0.2, channels: int = 2, second_click: float = 0.5):
        self.samples = [s for s in samples if s.labels.max() > 0]
        if not self.samples:
            raise ValueError("no training samples with glands")
        self.crop_px, self.length, self.seed = crop_px, length, seed
        self.augment, self.scale_jitter = augment, scale_jitter
        self.channels, self.second_click = channels, second_click
        # Bounding boxes once: finding one gland's pixels then needs only its box.
        self.boxes = [ndi.find_objects(s.labels) for s in self.samples]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, 17, index])
        for _ in range(20):
            item = self._try(rng)
            if item is not None:
                return item
        raise RuntimeError("could not cut a crop around a gland in 20 tries")

    def _try(self, rng: np.random.Generator):
        k = self.samples.index(pick_sample(self.samples, rng))
        s, boxes = self.samples[k], self.boxes[k]
        ids = [i + 1 for i, b in enumerate(boxes) if b is not None]
        gid = ids[int(rng.integers(len(ids)))]
        box = boxes[gid - 1]
        y, x = _pick(s.labels[box] == gid, rng)
        y, x = y + box[0].start, x + box[1].start
        scale = float(np.exp(rng.uniform(-self.scale_jitter, self.scale_jitter))) if self.augment else 1.0
        src = max(8, round(self.crop_px / scale))
        y0 = y - int(rng.integers(src // 5, 4 * src // 5))
        x0 = x - int(rng.integers(src // 5, 4 * src // 5))
        image, labels, valid = resized_crop(*crop_at(s, y0, x0, src), self.crop_px)
        if self.augment:
            image, labels, valid = augment_crop(image, labels, valid, rng)
        target = labels == gid
        if target.sum() < MIN_GLAND_PX:
            return None
        include, exclude = simulate_guidance(target, labels, rng)
        previous, clicks = None, []
        if self.channels == 3 and rng.random() < self.second_click:
            previous = simulate_previous(target, labels, rng) & valid  # nothing beyond the image
            click = corrective_click(previous, target & valid)
            if rng.random() < 0.4:  # a gland redrawn later: its first click is not remembered
                include = []
            if click is not None:
                (clicks if click[1] else exclude).append(click[0])
        maps = guidance_maps(target.shape, include, exclude, clicks=clicks, previous=previous, channels=self.channels)
        t = target.astype(np.int64)
        t[~valid] = IGNORE
        return (torch.from_numpy(np.array(image)), torch.from_numpy(maps),
                torch.from_numpy(np.ascontiguousarray(t)))
