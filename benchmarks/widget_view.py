"""Widget latency: "Segment view" click → labels layer on screen, and committing an edit.

Prints one JSON line. The view is 1024×2048 level-0 px (H×W) of the real CMU-1 small-region
slide, segmented with the default model (bundled weights if present, else an untrained
glandseg_small: the timing is the same). The commit is of a 4096×4096 editable layer after a
brush-sized edit; the first commit also creates the label store next to the slide.

    QT_QPA_PLATFORM=offscreen python benchmarks/widget_view.py [--slide PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parent.parent
DEFAULT_SLIDE = REPO / ".." / "shared" / "data" / "slides" / "cmu-1-small-region.svs"


def _wait(app, cond, timeout_s: float) -> float:
    t0 = time.perf_counter()
    while not cond():
        app.processEvents()
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError("benchmark step timed out")
        time.sleep(0.002)
    return time.perf_counter() - t0


def bench_view(viewer, app, slide: Path, repeats: int) -> dict:
    from napari_glandseg._widgets import SegmentWidget
    from napari_glandseg.model import DEFAULT_MODEL

    [layer] = viewer.open(slide, plugin="napari-glandseg")
    widget = SegmentWidget(viewer)
    widget.model.value = DEFAULT_MODEL
    mpp = float(layer.scale[-1])
    viewer.canvas.size = (512, 1024)
    app.processEvents()
    viewer.scene.camera.zoom = 0.5 / mpp  # 0.5 screen px per level-0 px: 1024×2048 px visible
    h0, w0 = widget.image_layer().data[0].shape[:2]
    viewer.scene.camera.center = (h0 / 2 * mpp, w0 / 2 * mpp)
    bbox = widget.visible_bbox(layer).bbox
    # warm-up: loads the model once (cached by the widget, as in a session)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        widget.models.load(widget.model_label(), "auto")
    times = []
    for _ in range(repeats):
        n_before = len(viewer.layers)
        t0 = time.perf_counter()
        widget.view_button.native.click()
        _wait(app, lambda: not widget.jobs.busy, 600)
        if widget.jobs.last_error is not None:
            raise widget.jobs.last_error
        assert len(viewer.layers) == n_before + 1
        viewer.window._qt_viewer.canvas.native.repaint()  # the frame that shows the labels
        app.processEvents()
        times.append(time.perf_counter() - t0)
    card = widget.models.card(widget.model_label())
    return {
        "view_px": [bbox[2], bbox[3]],
        "model": card.name,
        "model_mpp": card.mpp,
        "segment_view_s": round(min(times), 3),
        "segment_view_all_s": [round(t, 3) for t in times],
    }


def bench_commit(viewer, app, tmp: Path) -> dict:
    from napari_glandseg._widgets import CorrectWidget
    from napari_glandseg.labels import layer_meta as lm

    size = 4096
    rng = np.random.default_rng(0)
    labels = np.zeros((size, size), np.int32)
    for i in range(1, 301):  # 300 blob-shaped glands
        y, x = rng.integers(40, size - 40, 2)
        r = int(rng.integers(8, 30))
        yy, xx = np.ogrid[-r : r + 1, -r : r + 1]
        disk = yy * yy + xx * xx <= r * r
        labels[y - r : y + r + 1, x - r : x + r + 1][disk] = i
    meta = lm.make_meta(
        kind="view", slide_path=str(tmp / "bench.svs"), slide_name="bench", slide_mpp=0.5,
        slide_shape=(size * 2, size * 2), label_scale0=2.0, label_translate0=(0.5, 0.5),
        model="bench", model_mpp=1.0, bbox0=(0, 0, size * 2, size * 2), store=str(tmp / "bench.glandseg.zarr"),
    )
    layer = viewer.add_labels(labels, name="bench glands", scale=(1.0, 1.0), metadata={lm.KEY: meta})
    viewer.layers.selection.active = layer
    widget = CorrectWidget(viewer)
    out = {}
    for key in ("commit_first_s", "commit_s"):
        yy, xx = np.nonzero(np.hypot(*np.ogrid[-20:21, -20:21]) <= 20)
        layer.data_setitem((yy + 2000, xx + 2000), 7)  # a brush stroke
        t0 = time.perf_counter()
        widget.commit_button.click()
        _wait(app, lambda: not widget.jobs.busy, 600)
        if widget.jobs.last_error is not None:
            raise widget.jobs.last_error
        out[key] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    widget.delete_gland(int(labels[2000, 2000]) or 7)
    out["delete_gland_s"] = round(time.perf_counter() - t0, 3)
    out["edit_layer_px"] = [size, size]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slide", type=Path, default=DEFAULT_SLIDE)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    import napari
    import torch

    import napari_glandseg.model  # noqa: F401  before GL: see _widgets._demo.run_gui (triton vs Mesa LLVM)

    app = napari.qt.get_qapp()
    viewer = napari.Viewer(show=True)
    tmp = Path(tempfile.mkdtemp(prefix="glandseg-bench-"))
    try:
        result = {"benchmark": "widget_view", "threads": torch.get_num_threads()}
        result.update(bench_view(viewer, app, args.slide, args.repeats))
        result.update(bench_commit(viewer, app, tmp))
    finally:
        viewer.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
