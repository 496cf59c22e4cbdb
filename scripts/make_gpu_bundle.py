"""Pack the training data for a GPU machine that has no ../shared and no dask/zarr.

Writes ``gpu_bundle/`` (git-ignored): GlaS train at 1.24 µm/px (images bilinear, instance
labels nearest, as the training loader resamples them) with Grade.csv, the RINGS gland and
tumour tiles as they are (≈ 2.72 µm/px), and unlabeled tissue at 1.24 µm/px for pretraining (JPEG, quality 92: the size limit of what travels)
(the RINGS tiles and tissue tiles of the CMU slide). GlaS testA is packed only for evaluating
the ablation there (``glas_testA/``, at 1.24 µm/px); no training run reads it.

    python scripts/make_gpu_bundle.py [--out gpu_bundle]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from napari_glandseg.train.data import load_glas_folder
from napari_glandseg.train.unlabeled import load_image_folder, slide_tiles

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
MODEL_MPP = 1.24


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("gpu_bundle"))
    out = parser.parse_args().out
    shutil.rmtree(out, ignore_errors=True)
    for part in ("train", "testA"):
        glas = out / f"glas_{part}"
        (glas / "images").mkdir(parents=True)
        (glas / "masks").mkdir()
        for s in load_glas_folder(DATA / "glas" / part, source_mpp=0.62, model_mpp=MODEL_MPP):
            Image.fromarray(s.image).save(glas / "images" / f"{s.name}.png")
            Image.fromarray(s.labels.astype(np.uint16)).save(glas / "masks" / f"{s.name}.png")
    shutil.copy(DATA / "glas" / "Grade.csv", out / "Grade.csv")
    for part in ("glands", "tumour"):
        shutil.copytree(DATA / "rings" / part, out / f"rings_{part}")
    unlabeled = out / "unlabeled"
    unlabeled.mkdir()
    for part in ("glands", "tumour"):
        names = sorted(p.stem for p in (DATA / "rings" / part / "images").glob("*.png"))
        for name, img in zip(names, load_image_folder(DATA / "rings" / part, source_mpp=2.72, model_mpp=MODEL_MPP), strict=True):
            Image.fromarray(img).save(unlabeled / f"rings_{part}_{name}.jpg", quality=92)
    from napari_glandseg.slide import open_slide

    svs = DATA / "slides" / "cmu-1-small-region.svs"
    tiles = slide_tiles(svs, tile_px=512, model_mpp=MODEL_MPP, max_tiles=200)
    slide = open_slide(svs)
    for i, box in enumerate(tiles.boxes):
        Image.fromarray(slide.read_at_mpp(box, MODEL_MPP)).save(unlabeled / f"cmu_{i:03d}.jpg", quality=92)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
