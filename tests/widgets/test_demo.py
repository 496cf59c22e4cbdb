"""``python -m napari_glandseg.demo``: headless mode runs the CLI; the GUI mode docks the widgets."""

from __future__ import annotations

import numpy as np
import pytest

from napari_glandseg import demo
from napari_glandseg._widgets import _demo as demo_window


def test_headless_demo_segments_a_small_slide(tmp_path, capsys):
    from PIL import Image

    img = np.full((256, 320, 3), 230, np.uint8)
    img[60:140, 80:200] = (90, 40, 120)
    slide = tmp_path / "tiny.png"
    Image.fromarray(img).save(slide)
    out = tmp_path / "out"
    rc = demo.main(["--headless", "--slide", str(slide), "--mpp", "1.0", "--out", str(out),
                    "--model", "glandseg_tiny"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "running: glandseg segment" in printed and str(out.resolve()) in printed
    assert any(out.iterdir())
    assert "(cpu, " in printed and " threads" in printed  # says how it ran
    # a rerun with other settings (an updated model, another µm/px) starts over instead of refusing
    rc = demo.main(["--headless", "--slide", str(slide), "--mpp", "1.5", "--out", str(out), "--model", "glandseg_tiny"])
    assert rc == 0, capsys.readouterr().out


@pytest.mark.gui
def test_gui_demo_docks_three_widgets_on_the_sample(make_napari_viewer):
    from napari_glandseg.slide import SAMPLE_MPP, sample_slide_path

    viewer = make_napari_viewer()
    widgets = demo_window.setup_viewer(viewer, sample_slide_path(), SAMPLE_MPP)
    assert set(widgets) == set(demo_window.WIDGETS)
    assert len(viewer.layers) == 1 and viewer.layers[0].multiscale
    assert len([n for n in viewer.window.dock_widgets if "glands" in n]) == 3
    seg = widgets["Segment glands"]
    assert seg.slide_mpp.value == pytest.approx(SAMPLE_MPP)
    assert f"slide: {SAMPLE_MPP:g} µm/px" in seg.info.value
