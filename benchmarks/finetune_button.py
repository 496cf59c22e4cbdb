"""How quickly "Fine-tune on my corrections" answers in a real viewer: first progress, first
training step, and how long Cancel takes to stop the job, with the shipped model.

A real napari viewer (no window needed) opens the bundled RINGS prostate sample, Segment view
runs the shipped model on it, the result is committed as reviewed (the corrections), and the
Export widget's button is pressed three times:

* ``first_progress_s`` / ``first_step_s``: from the press to the first progress message and to
  the first training step shown (the run then goes on to its end, ``--minutes``);
* ``cancel_loading_s``: Cancel pressed ``--cancel-after`` seconds after the press (while the
  corrections, replay data and scores are prepared), until the job has stopped;
* ``cancel_training_s``: Cancel pressed at the first training step, until the job has stopped.

Goals: first progress and Cancel within 5 s. One JSON line.

    QT_QPA_PLATFORM=offscreen xvfb-run -a .venv/bin/python benchmarks/finetune_button.py [--minutes 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=1.0, help="time budget of the run that goes to its end")
    ap.add_argument("--cancel-after", type=float, default=2.0, help="seconds after the press (first cancel)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory(prefix="finetune_button_") as tmp:
        os.environ["GLANDSEG_MODELS_DIR"] = str(Path(tmp) / "models")
        print(json.dumps(measure(args)), flush=True)


def measure(args: argparse.Namespace) -> dict:
    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_glandseg._widgets import CorrectWidget, ExportWidget, SegmentWidget
    from napari_glandseg.model import DEFAULT_MODEL
    from napari_glandseg.slide.sample import rings_sample_path

    if args.threads:
        torch.set_num_threads(args.threads)
    app = QApplication.instance() or QApplication([])

    def wait(until, timeout: float = 1800.0, poll: float = 0.01) -> float:
        t0 = time.monotonic()
        while not until():
            app.processEvents()
            if time.monotonic() - t0 > timeout:
                raise TimeoutError("the job did not answer in time")
            time.sleep(poll)
        return time.monotonic() - t0

    slide = Path(os.environ["GLANDSEG_MODELS_DIR"]).parent / rings_sample_path().name
    shutil.copy(rings_sample_path(), slide)  # the corrections are stored beside the slide
    viewer = napari.Viewer(show=False)
    viewer.open(slide, plugin="napari-glandseg")
    segment, correct, export = SegmentWidget(viewer), CorrectWidget(viewer), ExportWidget(viewer)
    viewer.reset_view()
    t0 = time.monotonic()
    segment.segment_view()
    wait(lambda: not segment.jobs.busy)
    segment_s = time.monotonic() - t0
    layer = segment.result_layer
    viewer.layers.selection.active = layer
    correct.commit()
    wait(lambda: not correct.jobs.busy)
    export.glands.value = layer
    panel = export.finetune

    def press() -> tuple[float, list[tuple[float, str]]]:
        seen: list[tuple[float, str]] = []
        panel.jobs.progressed.connect(lambda done, total, message: seen.append((time.monotonic(), message)))
        start = time.monotonic()
        assert panel.start() is not None, panel.jobs.status.text()
        return start, seen

    def first(seen, start, text: str = "") -> float:
        wait(lambda: any(text in m for _, m in seen))
        return next(t for t, m in seen if text in m) - start

    result: dict = {"benchmark": "finetune_button", "model": DEFAULT_MODEL, "segment_view_s": round(segment_s, 1),
                    "glands_committed": int(layer.data.max()), "threads": torch.get_num_threads()}
    # 1: a whole run
    panel.minutes.value = args.minutes
    start, seen = press()
    result["first_progress_s"] = round(first(seen, start), 2)
    result["first_step_s"] = round(first(seen, start, "fine-tuning: step"), 2)
    wait(lambda: not panel.jobs.busy)
    result["run_s"] = round(time.monotonic() - start, 1)
    result["result"] = panel.result.value
    # 2: cancel while loading and scoring
    panel.minutes.value = 10.0
    start, seen = press()
    wait(lambda: time.monotonic() - start >= args.cancel_after)
    pressed, last = time.monotonic(), seen[-1][1] if seen else ""
    panel.jobs.cancel()
    result["cancel_loading_s"] = round(wait(lambda: not panel.jobs.busy), 2)
    result["cancel_loading_during"] = last
    # 3: cancel at the first training step
    start, seen = press()
    first(seen, start, "fine-tuning: step")
    pressed = time.monotonic()
    panel.jobs.cancel()
    wait(lambda: not panel.jobs.busy)
    result["cancel_training_s"] = round(time.monotonic() - pressed, 2)
    result["models_saved"] = sorted(p.name for p in Path(os.environ["GLANDSEG_MODELS_DIR"]).iterdir())
    viewer.close()
    return result


if __name__ == "__main__":
    main()
