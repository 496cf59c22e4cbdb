"""Screenshot of the bundled RINGS prostate sample segmented by the bundled default model, in napari.

Opens the sample through the plugin, docks the widgets as ``make demo`` does (Segment on top,
Correct and Export as tabs below, Correct shown: ``_widgets._layout``), zooms to the tissue, runs
"Segment view" and saves the window and the canvas. Look at the window: every button of
Segment and Correct must read whole. Needs a display; headless:

    QT_QPA_PLATFORM=xcb xvfb-run -a .venv/bin/python scripts/sample_screenshot.py docs/images
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

FIELD_PX = 560  # at the sample's 2.72 µm/px: one gland tile across (1.5 mm), ≈ 1230 px at the model's 1.24 µm/px
CENTRE_PX = (400, 832)  # (y, x): the second tile of the gland row, and the tumour row below it


def main(out_dir: str = "docs/images") -> int:
    import napari
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    from napari_glandseg._widgets import _demo as demo
    from napari_glandseg.slide.sample import rings_sample_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    widgets = demo.setup_viewer(viewer, rings_sample_path(), None)
    seg = widgets["Segment glands"]
    viewer.window._qt_window.resize(1600, 1000)
    viewer.reset_view()
    QApplication.processEvents()
    # a field of glands that "Segment view" takes whole: FIELD_PX slide px across the canvas
    image = viewer.layers[0]
    width_world = FIELD_PX * float(image.scale[-1])
    viewer.scene.camera.zoom = min(viewer.canvas.size) / width_world
    viewer.scene.camera.center = tuple(c * float(image.scale[-1]) for c in CENTRE_PX)
    QApplication.processEvents()
    t0 = time.perf_counter()
    seg.segment_view()
    while seg.jobs.busy:
        QApplication.processEvents()
        time.sleep(0.05)
    if seg.jobs.last_error is not None:
        raise SystemExit(f"segment view failed: {seg.jobs.last_error!r}")
    seconds = time.perf_counter() - t0
    layer = seg.result_layer
    layer.opacity = 0.7
    layer.contour = 3
    viewer.layers.selection.active = layer
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(out / "sample_rings_window.png")
    Image.fromarray(viewer.screenshot(canvas_only=True, flash=False)).save(out / "sample_rings_canvas.png")
    print(f"{int(layer.data.max())} glands in {seconds:.1f} s; screenshots in {out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
