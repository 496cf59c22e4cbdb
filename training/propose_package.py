"""Gland proposals (no labels) of image folders and slides as a training package: the targets of
the unsupervised model (``unsupervised.pseudo_labels``; MSSG's selective proposals, grouped).

    python training/propose_package.py --out RUN/proposals ../shared/data/glas/train \\
        ../shared/data/rings/glands:2.72 ../shared/data/slides/cmu-1-small-region.svs --holdout 0.15

A source ``PATH:MPP`` gives a folder's (or slide's) µm/px; folders without one are at
``--data-mpp``. ``--holdout`` leaves out the images a supervised run with that ``val_fraction``
validates on, so a model trained on the package can be measured on them.

``--model NAME`` labels the images with a model made without labels instead (its card must say
``labels: none``): the package of a self-training round, e.g. ``--model glandseg_unsupervised``.
"""

from __future__ import annotations

import argparse
import sys


def parse_source(text: str):
    path, sep, mpp = text.rpartition(":")
    if sep and path:
        try:
            return {"path": path, "mpp": float(mpp)}
        except ValueError:
            pass
    return text


def model_labeller(name: str, threads: int):
    """(labels(rgb, mpp), {name, sha256}) of a model whose card says it saw no labels (else SystemExit)."""
    from napari_glandseg.inference.region import get_predictor, segment_image

    predictor = get_predictor(name, "cpu", None, threads=threads, precision="fp32")  # the same glands on every CPU
    labels = str((predictor.card.provenance or {}).get("labels", ""))
    if not labels.startswith("none"):
        raise SystemExit(f"{name}: its card does not say it was made without labels (labels: {labels!r}); "
                         "a package it labels would not be label-free")
    from napari_glandseg.model.resolve import resolve

    return (lambda rgb, mpp: segment_image(rgb, mpp=mpp, predictor=predictor)), {"name": name,
                                                                                  "sha256": resolve(name).sha256()}


def main(argv: list[str] | None = None) -> int:
    from napari_glandseg.unsupervised.pseudo_labels import write_proposal_package

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="image folders / slides, each optionally PATH:MPP")
    parser.add_argument("--out", required=True, help="the package folder to write")
    parser.add_argument("--data-mpp", type=float, default=0.62, help="µm/px of folders without :MPP (GlaS: 0.62)")
    parser.add_argument("--holdout", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--band-um", type=float, default=3.0, help="ignored band on either side of each outline")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default=None, help="label with this no-label model instead (self-training)")
    args = parser.parse_args(argv)
    labeller, info = (None, None) if args.model is None else model_labeller(args.model, args.threads)
    manifest = write_proposal_package(
        args.out, [parse_source(s) for s in args.sources], data_mpp=args.data_mpp, holdout=args.holdout,
        seed=args.seed, band_um=args.band_um, threads=args.threads,
        progress=lambda i, name: print(f"propose {i}: {name}", flush=True),
        labeller=labeller, labeller_info=info)
    regions = manifest["regions"]
    print(f"{len(regions)} images, {sum(r['n_glands'] for r in regions)} proposed glands -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
