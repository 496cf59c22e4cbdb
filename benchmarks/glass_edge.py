"""Glands the model draws along a glass edge that are not there; prints one JSON line per model.

The same tissue is predicted twice: whole, and cut in the middle with white glass beyond the cut
(87 µm by default, the bundled RINGS sample's gaps between tiles). What the cut adds to the
gland probability of the tissue band beside it (and to the glass itself) is what the model takes
from the edge alone: a band of "gland" along every tissue edge of a slide, which joins the glands
it touches into one.

Tissue: the 4 RINGS tumour tiles (prostate, 2.72 µm/px) and 4 GlaS train images (colon, 0.62
µm/px); no label is read.

    .venv/bin/python benchmarks/glass_edge.py [--models glandseg_small glandseg_colon PATH ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".." / "shared" / "data"
SETS = {"prostate": (DATA / "rings" / "tumour" / "images", 2.72), "colon": (DATA / "glas" / "train" / "images", 0.62)}


def tissue(folder: Path, mpp: float, model_mpp: float, n: int) -> list[np.ndarray]:
    """The first ``n`` images of ``folder`` at the model's µm/px."""
    from PIL import Image

    from napari_glandseg.slide.resample import resize_rgb

    out = []
    for f in sorted(folder.glob("*.png"))[:n]:
        im = np.asarray(Image.open(f).convert("RGB"))
        h, w = (max(1, round(s * mpp / model_mpp)) for s in im.shape[:2])
        out.append(resize_rgb(im, h, w))
    return out


def edge_effect(predictor, images: list[np.ndarray], glass_px: int, band_px: int) -> dict[str, float]:
    """Mean gland probability (gland + border) on the glass beyond a cut, and what the cut adds
    to the ``band_px`` of tissue beside it (mean probability, and share of pixels ≥ 0.5)."""
    from napari_glandseg.inference.region import probabilities

    glass, added, added_share = [], [], []
    for rgb in images:
        whole = probabilities(rgb, predictor)
        c = rgb.shape[1] // 2
        cut = probabilities(np.pad(rgb[:, c:], ((0, 0), (glass_px, 0), (0, 0)), constant_values=255), predictor)
        g_whole = whole[1, :, c:c + band_px] + whole[2, :, c:c + band_px]
        g_cut = cut[1, :, glass_px:glass_px + band_px] + cut[2, :, glass_px:glass_px + band_px]
        glass.append(float((cut[1, :, :glass_px] + cut[2, :, :glass_px]).mean()))
        added.append(float((g_cut - g_whole).mean()))
        added_share.append(float((g_cut >= 0.5).mean() - (g_whole >= 0.5).mean()))
    return {"glass_p_gland": round(float(np.mean(glass)), 3), "band_p_gland_added": round(float(np.mean(added)), 3),
            "band_gland_share_added": round(float(np.mean(added_share)), 3)}


def main() -> None:
    import torch

    from napari_glandseg.inference.region import get_predictor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["glandseg_small", "glandseg_colon"])
    ap.add_argument("--glass-um", type=float, default=87.0, help="width of the glass beyond the cut")
    ap.add_argument("--band-um", type=float, default=31.0, help="width of the tissue band beside the cut")
    ap.add_argument("--images", type=int, default=4, help="images per organ")
    args = ap.parse_args()
    for name in args.models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predictor = get_predictor(name, device="cpu")
        mpp = predictor.card.mpp
        result = {"benchmark": "glass_edge", "model": name, "glass_um": args.glass_um, "band_um": args.band_um,
                  "cpu": platform.processor() or platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
        for organ, (folder, source_mpp) in SETS.items():
            images = tissue(folder, source_mpp, mpp, args.images)
            result[organ] = edge_effect(predictor, images, round(args.glass_um / mpp), round(args.band_um / mpp))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
