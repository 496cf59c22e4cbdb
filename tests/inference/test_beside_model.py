"""Work beside the model: a helper thread where a core is spare for it, inline where none is;
the whole-slide run gives the same glands either way."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from _inference_models import ThresholdModel, disc_image, write_disc_slide

from napari_glandseg.inference import SlideRunSettings, beside_model, segment_slide
from napari_glandseg.inference.beside_model import InlineExecutor, executor_beside, spare_core
from napari_glandseg.slide import open_slide


def test_inline_executor_runs_at_submit_and_delivers_errors_by_result():
    ran = []
    with InlineExecutor() as pool:
        fut = pool.submit(lambda a, b=0: ran.append(threading.current_thread()) or a + b, 2, b=3)
        assert fut.done() and fut.result() == 5 and ran == [threading.current_thread()]
        bad = pool.submit(lambda: 1 / 0)
    assert bad.done() and isinstance(bad.exception(), ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        bad.result()


class _Pred:
    def __init__(self, threads):
        self.threads = threads


def test_a_helper_thread_only_where_a_core_is_spare(monkeypatch):
    assert spare_core(_Pred(None))  # a GPU run: the CPU cores are all spare
    assert not spare_core(_Pred(10_000))  # the model's threads take every free core
    monkeypatch.setattr("napari_glandseg.model.precision.free_cores_now", lambda: 4)
    assert spare_core(_Pred(2)) and not spare_core(_Pred(4))
    assert isinstance(executor_beside(_Pred(4), "x"), InlineExecutor)
    pool = executor_beside(_Pred(2), "x")
    assert not isinstance(pool, InlineExecutor)
    assert pool.submit(lambda: threading.current_thread().name).result().startswith("x")
    pool.shutdown()


def test_whole_slide_glands_are_the_same_inline_and_threaded(tmp_path, monkeypatch):
    img = disc_image(700, 900, [(256, 300, 70), (120, 512, 60), (500, 600, 90), (600, 140, 40)],
                     tissue=(0, 0, 700, 800))
    path = write_disc_slide(tmp_path / "discs.tif", img, mpp=1.0)
    labels, names = {}, {}
    for spare in (True, False):
        monkeypatch.setattr(beside_model, "spare_core", lambda predictor, spare=spare: spare)
        seen: set[str] = set()
        run = segment_slide(open_slide(path), tmp_path / f"{spare}.zarr", ThresholdModel(),
                            SlideRunSettings(chunk_px=256),
                            progress=lambda *a, seen=seen: seen.update(t.name for t in threading.enumerate()))
        labels[spare], names[spare] = np.asarray(run.store.levels[0][:]), seen
    assert len(np.unique(labels[True])) == 5 and np.array_equal(labels[True], labels[False])
    assert any(n.startswith("glandseg-finish") for n in names[True])
    assert not any(n.startswith(("glandseg-finish", "glandseg-read")) for n in names[False])
