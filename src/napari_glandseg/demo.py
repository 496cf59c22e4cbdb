"""``python -m napari_glandseg.demo``: the sample slide in napari with the three widgets docked
(the window is built by ``_widgets._demo``).

``--headless --out DIR`` runs ``glandseg segment`` instead (no window) on the RINGS prostate
sample (2208×1120 px at 2.72 µm/px: about a minute on two cores), then lists what it wrote and
how to open it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run_headless(slide: Path, out: Path, mpp: float | None, model: str | None) -> int:
    """Segment the slide with the CLI, then say what it wrote and how to open it."""
    import time

    from napari_glandseg.cli import main as cli_main

    # the demo's folder is the demo's own: a rerun (after an update of the model, say) starts over
    argv = ["segment", str(slide), "--out", str(out), "--no-resume"]
    if mpp is not None:
        argv += ["--mpp", str(mpp)]
    if model:
        argv += ["--model", model]
    if "prostate" in _profiles(model):  # the sample is prostate tissue
        argv += ["--organ", "prostate"]
    print("running: glandseg " + " ".join(argv), flush=True)
    t0 = time.perf_counter()
    rc = cli_main(argv)
    if rc == 0:
        print(f"done in {time.perf_counter() - t0:.0f} s ({_how_it_ran(out)}); outputs in {out.resolve()}:")
        for folder in sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []:
            for p in sorted(folder.iterdir()):
                print(f"  {folder.name}/{p.name}{'/' if p.is_dir() else ''}  ({_size(p)})")
            print(how_to_open(slide, folder))
    return rc


def _profiles(model: str | None) -> dict:
    from napari_glandseg.model import load_model

    return load_model(model, device="cpu").card.profiles


def _how_it_ran(out: Path) -> str:
    """Device, precision, threads and CPU kind from the run's summary.json."""
    import json

    for summary in sorted(out.glob("*/summary.json")):
        c = json.loads(summary.read_text(encoding="utf-8")).get("compute", {})
        parts = [c.get("device"), c.get("precision"), c.get("threads") and f"{c['threads']} threads",
                 c.get("cpu") and f"CPU {c['cpu']}", c.get("organ") and f"{c['organ']} post-processing"]
        return ", ".join(str(p) for p in parts if p)
    return "no summary"


def how_to_open(slide: Path, folder: Path) -> str:
    """Where each output of ``glandseg segment`` opens."""
    return "\n".join([
        "how to open them:",
        f"  glands.geojson    QuPath: open {slide}, then File > Import objects > {folder / 'glands.geojson'}",
        "  measurements.csv  any spreadsheet (one row per gland: area, perimeter, shape, centroid)",
        f"  labels.ome.zarr   the gland label pyramid (NGFF); in Python: "
        f"napari_glandseg.labels.store.LabelStore.open('{folder / 'labels.ome.zarr'}')",
        "  summary.json      the run: model, µm/px, gland count, timings",
        "  with a display, `make demo` opens the sample in napari with the plugin docked",
    ])


def _size(path: Path) -> str:
    n = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def main(argv: list[str] | None = None) -> int:
    from napari_glandseg.slide.sample import rings_sample_path

    parser = argparse.ArgumentParser(prog="python -m napari_glandseg.demo", description=__doc__)
    parser.add_argument("--headless", action="store_true", help="no window: run `glandseg segment` on a sample")
    parser.add_argument("--out", type=Path, default=Path("glandseg-demo"), help="output folder for --headless")
    parser.add_argument("--slide", type=Path, default=None, help="another slide instead of the bundled sample")
    parser.add_argument("--mpp", type=float, default=None, help="the slide's µm/px (the sample's estimate by default)")
    parser.add_argument("--model", default=None, help="model preset or checkpoint (default: the bundled model)")
    args = parser.parse_args(argv)
    if args.headless:
        # the RINGS sample states its µm/px; the TCGA sample (5 µm/px) is 13,000² px at the model's
        # µm/px: minutes of model time on two cores
        return run_headless(args.slide or rings_sample_path(), args.out, args.mpp, args.model)
    from napari_glandseg._widgets._demo import run_gui  # the GUI lives with the widgets

    # the window opens the RINGS prostate sample too (its file states 2.72 µm/px): the model works there
    return run_gui(args.slide or rings_sample_path(), args.mpp)


if __name__ == "__main__":
    sys.exit(main())
