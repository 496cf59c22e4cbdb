"""Click-to-segment: one gland's outline from a click or squiggle (and "not this" clicks).

The guided model sees a window of ``card.tile_px`` pixels at its µm/px centred on the guidance;
when the gland it finds reaches the window's edge, the next window is placed and sized from
what the first one found (centred on the gland, as large as it needs, at most 2× the tile), so
large prostate glands are outlined whole without always paying for the largest window. Only
that window is read: it works the same on an in-memory image and on a whole slide at any zoom.

A second click refines a result: the earlier mask (``previous``) goes in with the new marks —
a "this too" click (``clicks``) in a missed part or a "not this" click (``exclude``) in a wrong
part — and a model with a previous-mask channel redraws that same gland.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi

from napari_glandseg.interactive.guidance import Point, _as_points, guidance_maps

GUIDED_MODEL = "glandseg_guided"
MAX_GROWTHS = 1  # 768² at most: 4× a 384² window (a 950-µm gland); 1536² took tens of seconds on a CPU
MAX_PASSES = 3  # the first window, then at most two placed from what it found
WINDOW_STEP_PX = 64  # window sizes are multiples of this (the model needs multiples of 32)
MAX_READ_PX = 12288  # the largest window edge read in the caller's pixels (a 768² window at 0.08 µm/px)


@dataclass(frozen=True)
class GlandWindow:
    """The gland found, in a window at the model's µm/px.

    ``mask[i, j]`` covers caller pixels ``origin + (i, j) * px_per_model`` (corner convention).
    """

    mask: np.ndarray  # bool, at the model's µm/px
    probability: np.ndarray  # float32 P(gland), same grid
    origin: tuple[float, float]  # window top-left, caller pixels
    px_per_model: float  # caller pixels per model pixel


def _load_channels_last(name, device: str | None):
    """A guided model loaded with its weights channels_last, the layout its input comes in
    (on a CPU with AVX2 alone 1.1-1.35x faster than contiguous at fp32; see the README)."""
    from napari_glandseg.model import load_model

    return load_model(name, device=device).to(memory_format=torch.channels_last)


@lru_cache(maxsize=2)
def _default_model(device: str | None):
    return _load_channels_last(GUIDED_MODEL, device)


def guided_model(model=None, device: str | None = None):
    """``model`` itself, a checkpoint path / preset name, or the bundled guided model (cached)."""
    if model is None:
        return _default_model(device)
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        return _load_channels_last(model, device)
    return model


def guide_channels(model) -> int:
    """How many guidance maps the model takes: 2 (include, exclude) or 3 (and the previous mask)."""
    return int(model.in_chans) - 3


@torch.no_grad()
def window_probability(model, rgb: np.ndarray, include: Sequence[Point] | np.ndarray,
                       exclude: Sequence[Point] | np.ndarray = (), precision: str = "auto", *,
                       clicks: Sequence[Point] | np.ndarray = (), previous: np.ndarray | None = None) -> np.ndarray:
    """P(the pointed-at gland) for an H×W×3 uint8 window at the model's µm/px (H, W multiples of 32).

    ``precision`` auto: bf16 only where the CPU runs it natively (emulated bf16 made a click
    take 18 s instead of 2 on a CPU with AVX2 alone). ``previous``: the earlier mask on this
    window's grid (used by a model with a previous-mask channel)."""
    from napari_glandseg.model.precision import apply_cpu_threads, resolve_precision

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 window, got {rgb.shape} {rgb.dtype}")
    device = next(model.parameters()).device
    dtype = resolve_precision(device, precision)
    if device.type == "cpu":
        apply_cpu_threads()
    maps = guidance_maps(rgb.shape[:2], include, exclude, clicks=clicks, previous=previous,
                         channels=guide_channels(model))
    maps = torch.from_numpy(maps)[None].to(device)
    x = torch.cat([model.normalize(torch.from_numpy(np.array(rgb))[None].to(device)), maps], 1)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        logits = model(x)
    return logits.float().softmax(1)[0, 1].cpu().numpy()


def select_gland(prob: np.ndarray, include: Sequence[Point], exclude: Sequence[Point] = (), threshold: float = 0.5,
                 *, clicks: Sequence[Point] = (), previous: np.ndarray | None = None) -> np.ndarray:
    """The thresholded component(s) under the inclusion marks (and, refining, those that are
    mostly the previous gland — more than half of the component or of that gland — unless a
    "not this" mark is on a piece other than the one holding most of that gland), holes filled,
    exclusion marks cut out."""
    maps = guidance_maps(prob.shape, include, exclude, clicks=clicks) > 0
    components, n = ndi.label(prob > threshold)
    keep = np.zeros(n + 1, bool)
    keep[np.unique(components[maps[0]])] = True
    if previous is not None and previous.any():
        inside = np.bincount(components[previous], minlength=n + 1)
        mostly = inside > 0.5 * np.minimum(np.bincount(components.ravel(), minlength=n + 1), previous.sum())
        excluded = np.zeros(n + 1, bool)
        # the model tends to hollow out the mark itself: what touches it is what was pointed at
        excluded[np.unique(components[ndi.binary_dilation(maps[1], iterations=2)])] = True
        excluded[int(np.argmax(inside[1:])) + 1 if n else 0] = False  # the gland itself stays (its mark is cut)
        keep |= mostly & ~excluded
    keep[0] = False
    mask = ndi.binary_fill_holes(keep[components])
    return mask & ~maps[1]


def _add_touching(previous: np.ndarray, found: np.ndarray) -> np.ndarray:
    """"This too" for a model that cannot see its previous result: the previous gland plus the
    parts found at the click that touch it (a separate gland is not merged in)."""
    parts, n = ndi.label(found & ~previous)
    touching = np.unique(parts[ndi.binary_dilation(previous) & (parts > 0)])
    return previous | np.isin(parts, touching)


def _cut_without_model(previous: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """"Not this" for a model that cannot see its previous result: the separate pieces of the
    previous gland under the marks go (not its largest piece), and the marks are cut out."""
    marks = guidance_maps(previous.shape, [], exclude)[1] > 0
    pieces, n = ndi.label(previous)
    if n > 1:
        largest = 1 + int(np.argmax(np.bincount(pieces.ravel())[1:]))
        hit = set(np.unique(pieces[ndi.binary_dilation(marks, iterations=2)]).tolist()) - {0, largest}
        previous = previous & ~np.isin(pieces, list(hit))
    return previous & ~marks


def window_from(found: GlandWindow, origin: tuple[float, float], size: int, px_per_model: float) -> np.ndarray:
    """``found``'s mask sampled (nearest) on a size×size window at ``origin`` (caller pixels)."""
    centres = (np.arange(size) + 0.5) * px_per_model
    out = np.zeros((size, size), bool)
    rows = np.floor((origin[0] + centres - found.origin[0]) / found.px_per_model).astype(int)
    cols = np.floor((origin[1] + centres - found.origin[1]) / found.px_per_model).astype(int)
    h, w = found.mask.shape
    ry, cx = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
    if ry.any() and cx.any():
        out[np.ix_(ry, cx)] = found.mask[np.ix_(rows[ry], cols[cx])]
    return out


def _extent(found: GlandWindow) -> np.ndarray | None:
    """(y0, x0, y1, x1) of ``found``'s mask in caller pixels (None: empty)."""
    ys, xs = np.nonzero(found.mask)
    if len(ys) == 0:
        return None
    o, p = np.asarray(found.origin), found.px_per_model
    return np.array([o[0] + ys.min() * p, o[1] + xs.min() * p, o[0] + (ys.max() + 1) * p, o[1] + (xs.max() + 1) * p])


def _next_window(mask: np.ndarray, size: int, largest: int) -> tuple[np.ndarray, int]:
    """Where the gland cut by the window's edge probably lies, in window px: (centre, size) of
    the next window. The gland is taken to go on beyond each edge it touches by half its visible
    extent."""
    ys, xs = np.nonzero(mask)
    lo = np.array([ys.min(), xs.min()], float)
    hi = np.array([ys.max() + 1, xs.max() + 1], float)
    extent = hi - lo
    lo = np.where(lo <= 0, lo - 0.5 * extent, lo)
    hi = np.where(hi >= size, hi + 0.5 * extent, hi)
    need = int(np.ceil(((hi - lo).max() * 1.15 + 16) / WINDOW_STEP_PX)) * WINDOW_STEP_PX
    return (lo + hi) / 2, min(largest, max(size, need))


def segment_window(model, read: Callable[[tuple[float, float], int], np.ndarray], include: Sequence[Point],
                   exclude: Sequence[Point], px_per_model: float,
                   glass: Callable[[tuple[float, float], tuple[int, int]], np.ndarray | None] | None = None,
                   *, clicks: Sequence[Point] = (), previous: GlandWindow | None = None) -> GlandWindow:
    """The gland the guidance points at, in a window placed and sized around it (see the module doc).

    ``read(origin, size)`` returns the size×size window at the model's µm/px whose top-left is
    ``origin`` (caller pixels); points are in caller pixels. ``glass(origin, shape)``, when given,
    marks the window's pixels that are glass (or None): the gland never extends onto them.
    ``clicks`` ("this too") and ``exclude`` ("not this") with ``previous`` (the earlier result)
    refine that result.
    """
    inc, exc, more = (_as_points(p, what) for p, what in ((include, "include"), (exclude, "exclude"), (clicks, "clicks")))
    blind = previous is not None and guide_channels(model) == 2  # refining with a model that cannot see it
    marks = np.concatenate([inc, more])
    box = _extent(previous) if previous is not None else None
    if len(marks) == 0 and box is None:
        raise ValueError("include: give at least one (y, x) point on the gland")
    marks = np.concatenate([marks, exc]) if box is not None else marks  # refining: "not this" clicks count
    # a long squiggle needs a big window (and one too long for any window is an error)
    span = float((marks.max(0) - marks.min(0)).max()) / px_per_model if len(marks) else 0.0
    lo, hi = (marks.min(0), marks.max(0)) if len(marks) else (box[:2], box[2:])
    if box is not None:  # the gland being refined sets the window too (at most the largest one)
        lo, hi = np.minimum(lo, box[:2]), np.maximum(hi, box[2:])
    size, largest = model.card.tile_px, model.card.tile_px * 2**MAX_GROWTHS
    _check_window(span, largest, px_per_model, model.card.mpp)
    need = float((hi - lo).max()) / px_per_model * 1.15
    while size < need and size < largest:
        size *= 2
    centre = (lo + hi) / 2
    if len(marks) and need > largest:  # a refined gland larger than any window: the window goes to the click
        centre = (marks.min(0) + marks.max(0)) / 2
    threshold = float(model.card.postprocess.get("gland_threshold", 0.5))
    for attempt in range(MAX_PASSES):
        # whole caller pixels: the image reader, the previous mask and ``paste`` then share one grid
        origin = (float(np.floor(centre[0] - size / 2 * px_per_model)), float(np.floor(centre[1] - size / 2 * px_per_model)))
        inc_w, exc_w, more_w = ((pts - np.asarray(origin)) / px_per_model for pts in (inc, exc, more))
        prev_w = window_from(previous, origin, size, px_per_model) if previous is not None else None
        prob = window_probability(model, read(origin, size), inc_w, exc_w, clicks=more_w, previous=prev_w)
        off = glass(origin, prob.shape) if glass is not None else None
        if off is not None:
            prob = np.where(off, 0.0, prob).astype(prob.dtype, copy=False)
        mask = select_gland(prob, inc_w, exc_w, threshold, clicks=more_w, previous=prev_w)
        if blind:
            mask = (_add_touching(prev_w, mask) & ~(guidance_maps(mask.shape, [], exc_w) > 0)[1] if len(more_w)
                    else _cut_without_model(prev_w, exc_w))
        if off is not None:
            mask &= ~off  # holes filled over glass that the window's crop enclosed
        found = GlandWindow(mask, prob, origin, px_per_model)
        edge = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
        if not edge or attempt == MAX_PASSES - 1 or (size >= largest and attempt > 0):
            return found
        centre_w, size = _next_window(mask, size, largest)
        centre = np.asarray(origin) + centre_w * px_per_model
        # the marks stay well inside the window
        half = size / 2 * px_per_model * 0.9
        centre = np.clip(centre, marks.max(0) - half, marks.min(0) + half) if len(marks) else centre
    return found


def _check_window(span: float, largest: int, px_per_model: float, model_mpp: float) -> None:
    """The window a gland needs is bounded: a squiggle longer than a gland, or an image so finely
    sampled that the window would be huge in its pixels, is a clear error, not minutes or GiB."""
    if span * 1.5 > largest:
        raise ValueError(f"the squiggle spans {span * model_mpp:.0f} µm; one gland's window holds at most "
                         f"{largest / 1.5 * model_mpp:.0f} µm: draw inside one gland")
    if largest * px_per_model > MAX_READ_PX:
        raise ValueError(f"the image's µm/px ({model_mpp / px_per_model:.3g}) is too fine for the model at "
                         f"{model_mpp:g} µm/px: its window would be {largest * px_per_model:.0f} px wide "
                         f"(at most {MAX_READ_PX}); check the µm/px")


def image_reader(rgb: np.ndarray, px_per_model: float) -> Callable[[tuple[float, float], int], np.ndarray]:
    h, w = rgb.shape[:2]

    def read(origin: tuple[float, float], size: int) -> np.ndarray:
        y0, x0 = int(np.floor(origin[0])), int(np.floor(origin[1]))
        n = int(np.ceil(size * px_per_model))
        window = np.full((n, n, 3), 255, np.uint8)  # white outside the image, as slides are
        ys, xs = slice(max(0, y0), min(h, y0 + n)), slice(max(0, x0), min(w, x0 + n))
        if ys.stop > ys.start and xs.stop > xs.start:
            window[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = rgb[ys, xs]
        return np.asarray(Image.fromarray(window).resize((size, size), Image.BILINEAR))

    return read


def paste(found: GlandWindow, shape: tuple[int, int]) -> np.ndarray:
    """The window's gland as a bool mask of ``shape`` in caller pixels (probabilities resampled,
    then thresholded: outlines follow the gland at the caller's resolution, not model pixels)."""
    h, w = shape
    y0, x0 = int(np.floor(found.origin[0])), int(np.floor(found.origin[1]))
    n = int(np.ceil(found.mask.shape[0] * found.px_per_model))
    if found.px_per_model == 1.0:
        window = found.mask
    else:
        prob = np.where(found.mask, np.maximum(found.probability, 0.5), np.minimum(found.probability, 0.5 - 1e-3))
        window = np.asarray(Image.fromarray(prob.astype(np.float32)).resize((n, n), Image.BILINEAR)) >= 0.5
    out = np.zeros(shape, bool)
    ys, xs = slice(max(0, y0), min(h, y0 + n)), slice(max(0, x0), min(w, x0 + n))
    if ys.stop > ys.start and xs.stop > xs.start:
        out[ys, xs] = window[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return out


def segment_gland(rgb: np.ndarray, include: Sequence[Point], exclude: Sequence[Point] = (), *, mpp: float,
                  model=None, device: str | None = None, clicks: Sequence[Point] = (),
                  previous: np.ndarray | None = None) -> np.ndarray:
    """The mask (H×W bool) of the gland that ``include`` points at.

    ``rgb``: H×W×3 uint8 at ``mpp`` µm/px; ``include``: (y, x) points on the gland (several
    points: a squiggle, joined in order); ``exclude``: (y, x) points that are not this gland.
    Refining an earlier result: ``previous`` (H×W bool, that result), ``clicks`` ("this too"
    points in a missed part) and/or ``exclude`` points in its wrong part.
    ``model``: the guided model (default: the bundled one), a preset name or a checkpoint path.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb: expected an H×W×3 uint8 image, got {rgb.shape} {rgb.dtype}")
    from napari_glandseg.errors import check_mpp

    mpp = check_mpp(mpp, "mpp (the image's µm per pixel)")
    earlier = None
    if previous is not None:
        previous = np.asarray(previous, bool)
        if previous.shape != rgb.shape[:2]:
            raise ValueError(f"previous: expected a {rgb.shape[:2]} mask like the image, got {previous.shape}")
        earlier = GlandWindow(previous, previous.astype(np.float32), (0.0, 0.0), 1.0)
    net = guided_model(model, device)
    px_per_model = net.card.mpp / mpp
    found = segment_window(net, image_reader(rgb, px_per_model), include, exclude, px_per_model,
                           clicks=clicks, previous=earlier)
    return paste(found, rgb.shape[:2])


def segment_gland_on_slide(slide, include: Sequence[Point], exclude: Sequence[Point] = (), *, model=None,
                           device: str | None = None, clicks: Sequence[Point] = (),
                           previous: GlandWindow | None = None) -> GlandWindow:
    """The gland at level-0 points ``include`` of a slide; reads only the window it needs.
    Refining: ``previous`` (the earlier result, origin in level-0 pixels) with ``clicks`` /
    ``exclude`` (see ``segment_window``).

    Returns the window at the model's µm/px with its level-0 origin (``px_per_model`` level-0
    pixels per model pixel); ``paste`` or the caller's own resampling places it on a layer.
    Glass farther than 8 µm from the tissue is never gland (``slide.on_tissue``: the model
    would take it for lumen and spill a gland at the tissue's edge onto it).
    """
    from napari_glandseg.slide.on_tissue import GLASS, on_tissue

    if slide.mpp is None:
        from napari_glandseg.errors import SlideError

        raise SlideError(slide.path, "µm/px unknown: give it (open_slide(..., mpp=...)) to run the guided model")
    net = guided_model(model, device)
    px_per_model = net.card.mpp / slide.mpp

    def read(origin: tuple[float, float], size: int) -> np.ndarray:
        n = size * px_per_model
        window = slide.read_at_mpp((round(origin[0]), round(origin[1]), round(n), round(n)), net.card.mpp)
        if window.shape[:2] != (size, size):
            window = np.asarray(Image.fromarray(window).resize((size, size), Image.BILINEAR))
        return window

    def glass(origin: tuple[float, float], shape: tuple[int, int]) -> np.ndarray | None:
        on = on_tissue(shape, slide, origin, px_per_model, GLASS)
        return None if on is None else ~on

    return segment_window(net, read, include, exclude, px_per_model, glass, clicks=clicks, previous=previous)
