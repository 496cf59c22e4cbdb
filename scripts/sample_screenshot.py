"""Screenshot of the bundled prostate sample segmented by the bundled default model, in napari.

Opens the sample through the plugin, docks the widgets (as ``make demo`` does), zooms to the
tissue, runs "Segment view" and saves the window and the canvas. Needs a display; headless:

    QT_QPA_PLATFORM=xcb xvfb-run -a .venv/bin/python scripts/sample_screenshot.py docs/images
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

FIELD_PX = 450  # at the sample's 5 µm/px: 2.25 mm of tissue, 1800 px at the model's 1.24 µm/px


def main(out_dir: str = "docs/images") -> int:
    import napari
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    from napari_glandseg._widgets import _demo as demo
    from napari_glandseg.slide import SAMPLE_MPP, sample_slide_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    widgets = demo.setup_viewer(viewer, sample_slide_path(), SAMPLE_MPP)
    seg = widgets["Segment glands"]
    viewer.window._qt_window.resize(1600, 1000)
    viewer.reset_view()
    QApplication.processEvents()
    # a field of glands that "Segment view" takes whole: FIELD_PX slide px across the canvas
    image = viewer.layers[0]
    width_world = FIELD_PX * float(image.scale[-1])
    viewer.scene.camera.zoom = min(viewer.canvas.size) / width_world
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
    layer.opacity = 0.45
    layer.contour = 2
    viewer.layers.selection.active = layer
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(out / "sample_prostate_window.png")
    Image.fromarray(viewer.screenshot(canvas_only=True, flash=False)).save(out / "sample_prostate_canvas.png")
    print(f"{int(layer.data.max())} glands in {seconds:.1f} s; screenshots in {out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
