"""glandseg segment against TIAToolbox's SemanticSegmentor on one slide and model; one JSON line per tool.

Both tools run the same network (``glandseg_small`` by default, as ``load_model`` gives it) on
the same generated slide (``segment_slide.py``'s pyramidal JPEG TIFF of real GlaS tissue, about
30 % of the area in many pieces, 0.5 µm/px), at the model's µm/px (1.24), in 384-px tiles with
a 64-px overlap (stride 320), batch 1 (the engine's CPU default), channels_last, and one precision for
both (``--precision``; ``auto`` is the engine's choice for this CPU: bf16 autocast where the CPU runs
bf16 natively, fp32 where it would emulate it, e.g. AVX2 only):

* ``glandseg``: ``glandseg segment SLIDE --out DIR`` end to end (tissue mask, tiles, blending,
  gland instances stitched across chunks, the label pyramid, ``glands.geojson`` and
  ``measurements.csv``), in the project's own venv;
* ``tiatoolbox``: TIAToolbox 2.1.3's ``SemanticSegmentor.run(patch_mode=False,
  output_type="zarr")`` with its own automatic (Otsu) tissue mask, giving a class map only
  (argmax of the blended probabilities; no instances, no polygons, no tables), in a venv of
  its own (TIAToolbox pins torch < 2.13; that venv has the project's torch, see below). The
  network is wrapped in ``tiatoolbox.models.models_abc.ModelABC``; its ``infer_batch`` does
  what glandseg's Predictor does per batch (normalise, autocast at that precision, softmax) and counts the
  forward calls and tiles.

Each tool runs in a fresh process started from here and is timed from outside: wall seconds
from start to exit (imports and model loading included; ``run_s`` is the tool's own run
alone), peak RSS of the process tree (psutil, sampled every 50 ms: ``peak_rss_gb``) and the
kernel's high-water mark of the child (``wait4``: ``maxrss_gb``). Model tiles: glandseg's
from its ``summary.json`` (the Predictor's count of tiles it ran, ``tiles``; ``tiles_run``
excludes the padding tiles of the last batches), TIAToolbox's as counted by the wrapper's
``infer_batch`` (sum of the batch sizes; ``patches`` is the patches its dataset kept after
the tissue mask, ``patches_grid`` the whole grid). ``foreground_fraction`` is a sanity check
that both ran the model: the fraction of the slide (at the model's µm/px) that glandseg
labels as glands, and that TIAToolbox's class map calls gland or gland border.

    .venv/bin/python benchmarks/tiatoolbox_compare.py [--size 20000] [--tia-python /work/tia_venv/bin/python]

TIAToolbox's venv, outside the repo: its requirements (from its METADATA) minus torch,
torchvision and timm, whose pins (torch < 2.13, timm < 1.0.28) exclude the project's versions,
plus those of the project and the project itself (run from the repo root):

    .venv/bin/python -m venv /work/tia_venv
    /work/tia_venv/bin/pip install tiatoolbox==2.1.3 --no-deps
    grep '^Requires-Dist:' /work/tia_venv/lib/python3.11/site-packages/tiatoolbox-2.1.3.dist-info/METADATA \\
      | sed 's/^Requires-Dist: //' | grep -viE '^(torch|torchvision|timm)[<>=]' > /tmp/tia_reqs.txt
    /work/tia_venv/bin/pip install -r /tmp/tia_reqs.txt torch==2.14.1 torchvision==0.29.1 'timm>=1.0.9' safetensors psutil
    /work/tia_venv/bin/pip install --no-deps -e .
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
DEFAULT_TIA_PYTHON = "/work/tia_venv/bin/python"
TOOLS = ("glandseg", "tiatoolbox")


# -- the parent: slide, child processes, measurements ---------------------------------------

class TreePeakRSS:
    """Peak resident memory of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int, every_s: float = 0.05):
        import psutil

        self.proc, self.every, self.peak, self.procs = psutil.Process(pid), every_s, 0, 1
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _sample(self) -> int:
        import psutil

        total = 0
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return 0
        self.procs = max(self.procs, len(procs))
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.every)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def timed_child(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run ``cmd`` to its end (output to ``log``): wall seconds, peak tree RSS, kernel maxrss."""
    load = os.getloadavg()[0]  # a busy machine shows here
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        rss = TreePeakRSS(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        peak = rss.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise SystemExit(f"{cmd[0]} ... exited {proc.returncode}; the end of {log}:\n" + "\n".join(tail))
    # ru_maxrss is in KiB on Linux; the kernel's high-water mark can miss memory handed back by
    # madvise (allocators do), so the sampled peak is the main number
    return {"seconds": round(wall, 1), "peak_rss_gb": round(peak / 1e9, 3),
            "maxrss_gb": round(usage.ru_maxrss * 1024 / 1e9, 3), "processes": rss.procs,
            "load_avg_1m_before": round(load, 2)}


def run_glandseg(slide: Path, args, work: Path) -> dict:
    out = work / "glandseg_out"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [args.python, "-m", "napari_glandseg.cli", "segment", str(slide), "--out", str(out),
           "--model", args.model, "--device", "cpu", "--batch-size", str(args.batch_size), "--no-resume",
           "--precision", args.precision]
    measured = timed_child(cmd, work / "glandseg.log")
    folder = next(p for p in out.iterdir() if (p / "summary.json").exists())
    summary = json.loads((folder / "summary.json").read_text())
    run = summary["run"]
    session = run["sessions"][-1]
    shape, frac = _label_level0(folder / "labels.ome.zarr")
    return {
        **measured, "run_s": round(summary["timings_s"]["total"], 1),
        "t_segment_s": round(summary["timings_s"]["segment"], 1),
        "t_tables_s": round(summary["timings_s"]["tables"], 1),
        "tiles": run["tiles"], "model_calls": run["model_calls"], "tiles_run": session.get("tiles_run"),
        "tiles_padding": session.get("tiles_padding"),
        "tiles_meeting_tissue_mask": session.get("tiles_with_tissue"),
        "model_mpp": summary["model_mpp"], "output_px": shape, "glands": summary["glands"],
        "foreground_fraction": frac,
        "outputs": sorted(p.name for p in folder.iterdir()),
    }


def _label_level0(store: Path) -> tuple[list[int], float | None]:
    """Shape of the label image's level 0 and the fraction of it that is a gland (read chunk-wise)."""
    import dask.array as da
    import zarr

    level0 = zarr.open_array(str(store / "0"), mode="r")
    try:
        frac = round(float((da.from_zarr(level0) > 0).mean().compute()), 4)
    except Exception as exc:  # noqa: BLE001 - a sanity number, not the benchmark
        print(f"note: glandseg foreground fraction not read: {exc!r}", file=sys.stderr)
        frac = None
    return list(level0.shape), frac


def run_tiatoolbox(slide: Path, args, work: Path) -> dict:
    out = work / "tiatoolbox_out"
    shutil.rmtree(out, ignore_errors=True)
    result = work / "tiatoolbox_result.json"
    result.unlink(missing_ok=True)
    cmd = [args.tia_python, str(Path(__file__).resolve()), "--tia-child", str(slide), "--child-out", str(out),
           "--child-result", str(result), "--model", args.model, "--batch-size", str(args.batch_size),
           "--tia-workers", str(args.tia_workers), "--precision", args.precision]
    measured = timed_child(cmd, work / "tiatoolbox.log")
    return {**measured, **json.loads(result.read_text())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=20_000, help="slide side in level-0 px (0.5 µm/px)")
    ap.add_argument("--layout", choices=("ellipses", "pieces"), default="pieces", help="where the tissue lies")
    ap.add_argument("--model", default="glandseg_small", help="preset name or checkpoint path")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--tools", default="glandseg,tiatoolbox", help="which to run, in this order")
    ap.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"), help="the project venv's python")
    ap.add_argument("--tia-python", default=DEFAULT_TIA_PYTHON, help="python of the venv with tiatoolbox 2.1.3")
    ap.add_argument("--tia-workers", type=int, default=0, help="TIAToolbox DataLoader workers (its default: 0)")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                    help="both tools' autocast on the CPU (auto: bf16 only where this CPU runs it natively)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out" / "tia_compare")
    ap.add_argument("--keep", action="store_true", help="keep both tools' outputs")
    # the TIAToolbox half, run by the parent in TIAToolbox's venv
    ap.add_argument("--tia-child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tia_child is not None:
        tia_child(args)
        return
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if bad := [t for t in tools if t not in TOOLS]:
        ap.error(f"unknown tools {bad}; choose from {TOOLS}")
    if "tiatoolbox" in tools and not Path(args.tia_python).exists():
        ap.error(f"--tia-python {args.tia_python} does not exist (see this file's docstring for the venv)")

    sys.path.insert(0, str(HERE))
    from segment_slide import MPP, write_slide

    # one concrete precision for both tools (the engine's "auto" would time bf16 against fp32 on its
    # first batch and might keep another than the TIAToolbox child resolves)
    args.precision = _resolved(args.precision)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    slide = write_slide(args.out / f"slide_{args.layout}_{args.size}.tif", args.size, args.layout)
    print(f"slide {slide} ({slide.stat().st_size / 1e6:.0f} MB, ready in {time.perf_counter() - t0:.0f} s)",
          file=sys.stderr, flush=True)
    common = {"slide_px": args.size, "slide_mpp": MPP, "layout": args.layout,
              "slide_mb": round(slide.stat().st_size / 1e6, 1), "model": args.model, "batch_size": args.batch_size,
              "precision": args.precision, "cpu": _cpu(), "device": "cpu", "cpus": os.cpu_count()}
    for tool in tools:
        print(f"running {tool} ...", file=sys.stderr, flush=True)
        res = run_glandseg(slide, args, args.out) if tool == "glandseg" else run_tiatoolbox(slide, args, args.out)
        print(json.dumps({"benchmark": "tiatoolbox_compare", "tool": tool, **common, **res}), flush=True)
        if not args.keep:
            shutil.rmtree(args.out / f"{tool}_out", ignore_errors=True)


def _resolved(precision: str) -> str:
    import torch

    from napari_glandseg.model.precision import precision_name, resolve_precision

    return precision_name(resolve_precision(torch.device("cpu"), precision))


def _cpu() -> str:
    from napari_glandseg.model.precision import cpu_description

    return cpu_description()


# -- the child in TIAToolbox's venv ----------------------------------------------------------

def tia_child(args) -> None:
    """Run TIAToolbox's SemanticSegmentor on the slide; write its counts and timings as JSON."""
    import warnings

    t_start = time.perf_counter()
    import numpy as np
    import tiatoolbox
    import torch
    import zarr
    from tiatoolbox import rcParam

    rcParam["torch_compile_mode"] = "disable"  # glandseg does not compile either (and on CPU it is off anyway)
    from tiatoolbox.models.engine.io_config import IOSegmentorConfig
    from tiatoolbox.models.engine.semantic_segmentor import SemanticSegmentor
    from tiatoolbox.models.models_abc import ModelABC

    from napari_glandseg.model import load_model
    from napari_glandseg.model.outputs import to_probabilities
    from napari_glandseg.model.precision import resolve_precision

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = load_model(args.model, device="cpu")
    card = net.card

    class GlandsegNet(ModelABC):
        """The glandseg network in TIAToolbox's model interface (uint8 NHWC in, NHWC probabilities out)."""

        calls = 0
        tiles = 0

        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner.to(memory_format=torch.channels_last).eval()
            self.class_dict = dict(enumerate(card.classes))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.inner(x)
            return out["logits"] if isinstance(out, dict) else out

        @staticmethod
        def infer_batch(model: GlandsegNet, batch_data, *, device: str) -> np.ndarray:
            model.eval()
            dev = torch.device(device)
            x = torch.as_tensor(batch_data).to(dev)
            dtype = resolve_precision(dev, args.precision)
            with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                logits = model(model.inner.normalize(x))
                probs = to_probabilities(logits, len(model.inner.card.classes))
            GlandsegNet.calls += 1
            GlandsegNet.tiles += int(x.shape[0])
            return probs.permute(0, 2, 3, 1).cpu().numpy()

        @staticmethod
        def postproc(image):
            return image.argmax(axis=-1)  # the class map (dask or numpy)

    model = GlandsegNet(net)
    res = {"units": "mpp", "resolution": card.mpp}
    step = card.tile_px - card.overlap_px
    ioconfig = IOSegmentorConfig(
        input_resolutions=[res], output_resolutions=[res],
        patch_input_shape=(card.tile_px, card.tile_px), patch_output_shape=(card.tile_px, card.tile_px),
        stride_shape=(step, step), save_resolution=res,
    )
    engine = SemanticSegmentor(model=model, batch_size=args.batch_size, num_workers=args.tia_workers,
                               device="cpu", verbose=False)
    t0 = time.perf_counter()
    out = engine.run([args.tia_child], patch_mode=False, ioconfig=ioconfig, save_dir=args.child_out,
                     overwrite=True, output_type="zarr", auto_get_mask=True, device="cpu",
                     batch_size=args.batch_size, num_workers=args.tia_workers)
    run_s = time.perf_counter() - t0
    ds = engine.dataloader.dataset
    path = Path(next(iter(out.values())))
    root = zarr.open_group(str(path), mode="r")
    pred = root["predictions"]
    frac = None
    try:
        import dask.array as da

        p = da.from_zarr(pred)
        frac = round(float((p > 0).mean().compute()), 4)  # classes: 0 background, 1 gland, 2 border
    except Exception as exc:  # noqa: BLE001 - a sanity number, not the benchmark
        print(f"note: foreground fraction not read: {exc!r}", file=sys.stderr)
    result = {
        "run_s": round(run_s, 1), "t_startup_s": round(t0 - t_start, 1),
        "model_mpp": card.mpp, "patch_px": card.tile_px, "stride_px": step,
        "tiles": GlandsegNet.tiles, "model_calls": GlandsegNet.calls,
        "patches": len(ds.inputs), "patches_grid": len(getattr(ds, "full_outputs", ds.inputs)),
        "output_px": list(pred.shape), "output_dtype": str(pred.dtype), "output_keys": sorted(root.keys()),
        "foreground_fraction": frac, "tiatoolbox": tiatoolbox.__version__, "torch": torch.__version__,
        "tia_workers": args.tia_workers,
    }
    args.child_result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
