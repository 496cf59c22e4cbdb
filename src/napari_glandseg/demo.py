"""``python -m napari_glandseg.demo``: the sample slide in napari with the three widgets docked
(the window is built by ``_widgets._demo``).

``--headless --out DIR`` runs ``glandseg segment`` on the sample instead (no window) and prints
where the outputs are.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run_headless(slide: Path, out: Path, mpp: float | None, model: str | None) -> int:
    """Segment the slide with the CLI and list what it wrote."""
    from napari_glandseg.cli import main as cli_main

    argv = ["segment", str(slide), "--out", str(out)]
    if mpp is not None:
        argv += ["--mpp", str(mpp)]
    if model:
        argv += ["--model", model]
    print("running: glandseg " + " ".join(argv), flush=True)
    rc = cli_main(argv)
    if rc == 0:
        print(f"outputs in {out.resolve()}:")
        for p in sorted(out.iterdir()) if out.is_dir() else []:
            print(f"  {p.name}")
    return rc


def main(argv: list[str] | None = None) -> int:
    from napari_glandseg.slide import SAMPLE_MPP, sample_slide_path

    parser = argparse.ArgumentParser(prog="python -m napari_glandseg.demo", description=__doc__)
    parser.add_argument("--headless", action="store_true", help="no window: run `glandseg segment` on the sample")
    parser.add_argument("--out", type=Path, default=Path("glandseg-demo"), help="output folder for --headless")
    parser.add_argument("--slide", type=Path, default=None, help="another slide instead of the bundled sample")
    parser.add_argument("--mpp", type=float, default=None, help="the slide's µm/px (the sample's estimate by default)")
    parser.add_argument("--model", default=None, help="model preset or checkpoint (default: the bundled model)")
    args = parser.parse_args(argv)
    slide = args.slide or sample_slide_path()
    mpp = args.mpp if args.mpp is not None else (SAMPLE_MPP if args.slide is None else None)
    if args.headless:
        return run_headless(slide, args.out, mpp, args.model)
    from napari_glandseg._widgets._demo import run_gui  # the GUI lives with the widgets

    return run_gui(slide, mpp)


if __name__ == "__main__":
    sys.exit(main())
