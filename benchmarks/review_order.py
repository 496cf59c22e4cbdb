"""Least certain first: how many of the model's wrong glands does reviewing the least certain
10 / 20 / 30 % of glands find, against reviewing them in random order?

For each image the bundled default (or ``--model``) segments at its organ's profile, and every gland gets its
features and confidence (``inference.confidence``). A predicted gland is *wrong* when it is a
false positive (no annotated gland has half its area in it), merged (it holds half of two or
more annotated glands), split (its annotated gland's best match is another gland), or spills
(less than half of it is its annotated gland); a missed annotated gland is counted at the
nearest predicted gland (reviewing that gland is where the user sees the miss). Reviewing k %
of the glands in confidence order finds the share of these errors printed (random order finds
k % on average). ``--features OUT.json`` keeps every gland's features and errors, so a
confidence formula can be chosen on the ``validation`` set and only then read on the others.

    .venv/bin/python benchmarks/review_order.py [--sets validation glas_testA rings] [--threads 1] [--model M]

RINGS: CC BY 4.0, Salvi et al. 2021, doi:10.17632/h8bdwrtnr5.1.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".." / "shared" / "data"
SHARES = (0.1, 0.2, 0.3)


def image_sets(names: list[str]) -> dict[str, list[tuple[Path, Path, float, str]]]:
    """name → [(image, mask, µm/px, organ)]: validation = the images none of the bundled models
    trained on (15 % of GlaS train and of the RINGS tiles, seed 0, as their cards say)."""
    from napari_glandseg.labels.folders import GLAS_MPP, glas_pairs, split_names

    def folder(path: Path, mpp: float, organ: str, only: list[str] | None = None):
        return [(p.image, p.mask, mpp, organ) for p in glas_pairs(path) if only is None or p.name in only]

    glas_train, rings = DATA / "glas" / "train", DATA / "rings" / "glands"
    val_glas = split_names([p.name for p in glas_pairs(glas_train)], 0.15, 0)[1]
    val_rings = split_names([p.name for p in glas_pairs(rings)], 0.15, 0)[1]
    sets = {
        "validation": folder(glas_train, GLAS_MPP, "colon", val_glas) + folder(rings, 2.72, "prostate", val_rings),
        "glas_testA": folder(DATA / "glas" / "testA", GLAS_MPP, "colon"),
        "rings": folder(rings, 2.72, "prostate"),
    }
    return {n: sets[n] for n in names}


def wrong_glands(pred: np.ndarray, truth: np.ndarray) -> list[tuple[int, str]]:
    """(the predicted gland at which it is seen, its kind) for each error (see the doc): kinds
    ``false_positive``, ``merge``, ``split`` (a piece holding no gland's half but lying mostly on
    one, or not its gland's best match), ``spill``, ``miss``."""
    n_p, n_t = int(pred.max()), int(truth.max())
    inter = np.zeros((n_p + 1, n_t + 1), np.int64)
    np.add.at(inter, (pred.ravel(), truth.ravel()), 1)
    area_p, area_t = inter.sum(1), inter.sum(0)
    covers = inter[1:, 1:] >= 0.5 * area_t[None, 1:]  # pred i holds half of truth j
    errors = []
    best_pred = np.argmax(inter[1:, 1:], axis=0) + 1 if n_p else np.zeros(n_t, int)
    for i in range(1, n_p + 1):
        held = np.flatnonzero(covers[i - 1])
        if len(held) != 1:
            # holding no gland's half: a piece of a gland split apart if it lies mostly on one
            piece = n_t > 0 and inter[i, 1:].max() >= 0.5 * area_p[i]
            errors.append((i, "merge" if len(held) else "split" if piece else "false_positive"))
            continue
        j = held[0] + 1
        if best_pred[j - 1] != i:
            errors.append((i, "split"))
        elif inter[i, j] < 0.5 * area_p[i]:
            errors.append((i, "spill"))
    if n_p:
        missed = [j for j in range(1, n_t + 1) if not covers[:, j - 1].any()]
        if missed:
            _, (iy, ix) = ndi.distance_transform_edt(pred == 0, return_indices=True)
            for j in missed:
                ys, xs = np.nonzero(truth == j)
                k = len(ys) // 2
                errors.append((int(pred[iy[ys[k], xs[k]], ix[ys[k], xs[k]]]), "miss"))
    return errors


ERROR_KINDS = ("false_positive", "merge", "split", "spill", "miss")


def segment_with_probs(path: Path, mpp: float, organ: str, predictor):
    from PIL import Image

    from napari_glandseg.inference.postprocess import probabilities_to_instances
    from napari_glandseg.inference.region import probabilities
    from napari_glandseg.slide.resample import resize_rgb

    card = predictor.card.for_organ(organ)
    rgb = np.asarray(Image.open(path).convert("RGB"))
    f = mpp / card.mpp
    img = resize_rgb(rgb, max(1, round(rgb.shape[0] * f)), max(1, round(rgb.shape[1] * f)))
    probs = probabilities(img, predictor)
    return probs, probabilities_to_instances(probs, mpp=card.mpp, params=card.postprocess)


def collect(items, predictor) -> list[dict]:
    """One row per predicted gland: image, id, features, confidence, errors seen there."""
    from PIL import Image

    from napari_glandseg.inference.confidence import confidence_of, gland_features
    from napari_glandseg.labels.metrics import to_instances
    from napari_glandseg.slide.resample import resize_labels

    rows = []
    for image, mask, mpp, organ in items:
        probs, pred = segment_with_probs(image, mpp, organ, predictor)
        truth = resize_labels(to_instances(np.asarray(Image.open(mask))), *pred.shape)
        wrong = wrong_glands(pred, truth)
        errors = np.bincount(np.asarray([g for g, _ in wrong], dtype=int), minlength=int(pred.max()) + 1)
        for gid, feats in gland_features(pred, probs).items():
            rows.append({"image": image.stem, "organ": organ, "gland": gid, "area_px": int((pred == gid).sum()),
                         **feats, "confidence": confidence_of(feats), "errors": int(errors[gid]),
                         "kinds": sorted(kind for g, kind in wrong if g == gid)})
    return rows


def found_share(rows: list[dict], key: str = "confidence") -> dict[str, float]:
    """Share of all errors at the least ``key`` 10/20/30 % of glands (ties broken by order)."""
    total = sum(r["errors"] for r in rows)
    order = sorted(rows, key=lambda r: r[key])
    out = {}
    for s in SHARES:
        k = int(round(s * len(order)))
        out[f"found_at_{int(s * 100)}pct"] = round(sum(r["errors"] for r in order[:k]) / total, 4) if total else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sets", nargs="*", default=["validation", "glas_testA", "rings"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--features", type=Path, default=None, help="write every gland's row here (JSON)")
    parser.add_argument("--model", default=None, help="a model name or checkpoint (default: the bundled default), "
                        "at its card's per-organ profiles")
    args = parser.parse_args()
    if args.threads:
        os.environ["GLANDSEG_THREADS"] = str(args.threads)
    from napari_glandseg.inference.region import get_predictor
    from napari_glandseg.model.precision import cpu_description

    predictor = get_predictor(args.model, "cpu")
    print(json.dumps({"cpu": cpu_description(), **predictor.info()}), flush=True)
    everything = {}
    for name, items in image_sets(args.sets).items():
        rows = everything[name] = collect(items, predictor)
        print(json.dumps({"benchmark": "review_order", "set": name, "images": len(items), "glands": len(rows),
                          "errors": sum(r["errors"] for r in rows), "wrong_glands": sum(r["errors"] > 0 for r in rows),
                          "error_kinds": {k: sum(r["kinds"].count(k) for r in rows) for k in ERROR_KINDS},
                          "random_order_finds": "the share reviewed, on average", **found_share(rows)}), flush=True)
    if args.features:
        args.features.write_text(json.dumps(everything))


if __name__ == "__main__":
    main()
