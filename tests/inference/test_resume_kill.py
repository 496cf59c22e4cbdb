"""A whole-slide run killed with SIGKILL resumes to exactly the uninterrupted result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from _inference_models import ThresholdModel, disc_image, write_disc_slide

from napari_glandseg.inference import SlideRunSettings, segment_slide
from napari_glandseg.inference.chunks import RUN_DIR
from napari_glandseg.slide import open_slide

HERE = Path(__file__).resolve().parent
DISCS = [(256, 256, 60), (256, 600, 80), (520, 380, 70), (100, 700, 40)]

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    from _inference_models import ThresholdModel
    from napari_glandseg.inference import SlideRunSettings, segment_slide
    from napari_glandseg.slide import open_slide
    segment_slide(open_slide({slide!r}), {out!r}, ThresholdModel(delay_s=0.15),
                  SlideRunSettings(chunk_px=128, device="cpu"))
    """
)


@pytest.mark.slow  # a subprocess run, killed, then two whole-slide runs
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    img = disc_image(640, 800, DISCS)
    slide = write_disc_slide(tmp_path / "kill.tif", img, mpp=1.0)
    out = tmp_path / "killed.zarr"
    script = SCRIPT.format(here=str(HERE), slide=str(slide), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    seams = out / RUN_DIR / "seams"
    try:
        deadline = time.monotonic() + 120
        # a second seam file is written only after the first chunk is logged as done
        while len(list(seams.glob("*.npz"))) < 3:
            assert proc.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline, "no chunk was written in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    run = segment_slide(open_slide(slide), out, ThresholdModel(), SlideRunSettings(chunk_px=128))
    store = run.store
    assert 0 < run.chunks_run < run.chunks  # resumed, not restarted
    ref = segment_slide(open_slide(slide), tmp_path / "ref.zarr", ThresholdModel(), SlideRunSettings(chunk_px=128)).store
    np.testing.assert_array_equal(np.asarray(store.levels[0][:]), np.asarray(ref.levels[0][:]))
    assert len(np.unique(np.asarray(ref.levels[0][:]))) == len(DISCS) + 1
