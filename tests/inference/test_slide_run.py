"""segment_slide: chunks with tissue only, glands across chunk borders, resume, cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from _inference_models import ThresholdModel, disc_image, write_disc_slide
from scipy import ndimage as ndi

from napari_glandseg.errors import Cancelled, GlandsegError
from napari_glandseg.inference import SlideRunSettings, segment_slide
from napari_glandseg.inference.slide_run import read_record
from napari_glandseg.slide import open_slide

# discs on chunk borders (256, 512, 768 with chunk_px 256 at f = 1), on a corner, and inside
DISCS = [(256, 300, 70), (120, 512, 60), (512, 512, 90), (600, 140, 40), (130, 130, 30), (760, 900, 50),
         (400, 768, 45), (620, 1030, 35)]
TISSUE = (0, 0, 900, 1150)  # the rest (right and bottom) is glass


@pytest.fixture(scope="module")
def disc_slide(tmp_path_factory):
    img = disc_image(1400, 1700, DISCS, tissue=TISSUE)
    path = write_disc_slide(tmp_path_factory.mktemp("slide_run") / "discs.tif", img, mpp=1.0)
    return path, img


def _run(path, out, model=None, progress=None, cancel=None, **settings):
    settings.setdefault("chunk_px", 256)
    run = segment_slide(open_slide(path), out, model or ThresholdModel(), SlideRunSettings(**settings),
                        progress=progress, cancel=cancel)
    return run.store, np.asarray(run.store.levels[0][:]), run


def test_glands_across_chunk_borders_are_whole_and_unique(disc_slide, tmp_path):
    path, img = disc_slide
    store, lab, stats = _run(path, tmp_path / "a.zarr")
    assert lab.shape == img.shape[:2] and lab.dtype == np.int32
    dark = img.mean(-1) < 128
    cc, n = ndi.label(dark)
    assert n == len(DISCS)
    ids = np.unique(lab[lab > 0])
    assert len(ids) == n  # one id per disc, none split by a chunk border
    for i in range(1, n + 1):
        inside = np.unique(lab[cc == i])
        assert len(inside) == 1 and inside[0] > 0, f"disc {i} has labels {inside}"
    assert ((lab > 0) == dark).mean() > 0.999
    # every gland's confidence and box are kept beside the labels, whole across chunk borders
    kept = store.read_confidence()
    assert set(kept) == set(ids.tolist())
    for gid, (conf, y0, x0, y1, x1) in kept.items():
        ys, xs = np.nonzero(lab == gid)
        assert (y0, x0, y1, x1) == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
        assert 0.5 < conf <= 1.0, "a crisp threshold model is sure of its discs"
    # only chunks with tissue ran the model (the glass on the right and bottom did not)
    assert stats.chunks == 6 * 7
    assert 0 < stats.chunks_with_tissue < stats.chunks
    assert stats.model_calls > 0 and stats.relabelled_chunks > 0
    assert stats.model.kind == "memory" and stats.model.card.name == read_record(stats.store.path)["model"]


def test_store_is_at_the_model_resolution(disc_slide, tmp_path):
    path, img = disc_slide
    store, lab, stats = _run(path, tmp_path / "b.zarr", model=ThresholdModel(mpp=2.0), chunk_px=128)
    assert lab.shape == (700, 850)
    assert stats.downsample == 2.0
    assert getattr(store, "mpp", 2.0) == pytest.approx(2.0)
    dark = img[::2, ::2].mean(-1) < 128  # roughly: discs at half size
    cc, n = ndi.label(dark)
    assert len(np.unique(lab[lab > 0])) == n
    assert ((lab > 0) == dark).mean() > 0.99


def test_resume_skips_done_chunks_and_gives_the_same_labels(disc_slide, tmp_path):
    path, _ = disc_slide
    _, ref, _ = _run(path, tmp_path / "ref.zarr")
    cancel = threading.Event()
    seen = []

    def progress(done, total, msg):
        seen.append((done, total, msg))
        if msg == "chunks" and done >= 10:
            cancel.set()

    with pytest.raises(Cancelled, match="resume"):
        _run(path, tmp_path / "c.zarr", progress=progress, cancel=cancel)
    assert seen[-1][:2] == (10, 42)
    store, lab, stats = _run(path, tmp_path / "c.zarr")
    assert stats.chunks_run == 42 - 10
    np.testing.assert_array_equal(lab, ref)
    _, lab2, stats2 = _run(path, tmp_path / "c.zarr")  # all done: nothing to run
    assert stats2.chunks_run == 0 and stats2.model_calls == 0
    np.testing.assert_array_equal(lab2, ref)


def test_resume_with_other_settings_is_refused(disc_slide, tmp_path):
    path, _ = disc_slide
    _run(path, tmp_path / "d.zarr")
    with pytest.raises(GlandsegError, match="chunk_px"):
        _run(path, tmp_path / "d.zarr", chunk_px=128)
    _, lab, stats = _run(path, tmp_path / "d.zarr", chunk_px=128, resume=False)
    assert stats.chunks_run == stats.chunks == 11 * 14


def test_a_run_recorded_before_a_postprocess_setting_existed_resumes_at_its_default(disc_slide, tmp_path):
    import json

    from napari_glandseg.inference.chunks import RUN_DIR
    from napari_glandseg.inference.slide_run import RECORD

    path, _ = disc_slide
    _, ref, _ = _run(path, tmp_path / "ref.zarr")
    cancel = threading.Event()
    with pytest.raises(Cancelled):
        _run(path, tmp_path / "f.zarr", progress=lambda d, t, m: m == "chunks" and d >= 10 and cancel.set(),
             cancel=cancel)
    record_path = tmp_path / "f.zarr" / RUN_DIR / RECORD
    record = json.loads(record_path.read_text())
    record["postprocess"].pop("neck_um", None)  # as an earlier version wrote it
    record_path.write_text(json.dumps(record))
    _, lab, stats = _run(path, tmp_path / "f.zarr")
    assert 0 < stats.chunks_run < stats.chunks
    np.testing.assert_array_equal(lab, ref)
    record = json.loads(record_path.read_text())
    record["postprocess"]["neck_um"] = 5.0  # another setting than this run's: refused
    record_path.write_text(json.dumps(record))
    with pytest.raises(GlandsegError, match="postprocess"):
        _run(path, tmp_path / "f.zarr")


def test_output_that_is_not_a_store_is_refused(disc_slide, tmp_path):
    path, _ = disc_slide
    (tmp_path / "e.zarr").mkdir()
    (tmp_path / "e.zarr" / "mine.txt").write_text("precious")
    with pytest.raises(GlandsegError, match="not a label store"):
        _run(path, tmp_path / "e.zarr", resume=False)
    assert (tmp_path / "e.zarr" / "mine.txt").exists()
