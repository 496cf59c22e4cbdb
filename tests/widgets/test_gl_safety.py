"""Loading the model after napari has an OpenGL context must not crash the viewer (Mesa + triton)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]  # a napari subprocess with an OpenGL context

SCRIPT = textwrap.dedent("""
    import napari
    from qtpy.QtWidgets import QApplication
    from napari_glandseg.slide import sample_slide_path

    viewer = napari.Viewer(show=True)  # the GL context exists from here on
    viewer.open(sample_slide_path(), plugin="napari-glandseg")
    viewer.window.add_plugin_dock_widget("napari-glandseg", "Segment glands")
    QApplication.processEvents()
    from napari_glandseg.model import create_model  # timm -> torchvision -> torch._dynamo

    net = create_model("glandseg_tiny")
    print("params", sum(p.numel() for p in net.parameters()), flush=True)
    viewer.close()
""")


def test_model_import_after_the_viewer_has_gl_does_not_crash():
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs an X display (pytest-xvfb provides one)")
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode} (-11 = segfault):\n{proc.stderr[-2000:]}"
    assert "params" in proc.stdout
