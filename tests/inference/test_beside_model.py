"""Work beside the model: a helper thread where a core is spare for it, one that borrows a core
from the model, or inline; the whole-slide run gives the same glands every way."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from _inference_models import ThresholdModel, disc_image, write_disc_slide

from napari_glandseg.inference import Predictor, SlideRunSettings, beside_model, segment_slide
from napari_glandseg.inference.beside_model import (
    InlineExecutor,
    LendingPool,
    cores_lent,
    executor_beside,
    spare_core,
)
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
    assert isinstance(executor_beside(_Pred(4), "x", borrow=True), LendingPool)
    pool = executor_beside(_Pred(2), "x")
    assert not isinstance(pool, InlineExecutor | LendingPool)
    assert pool.submit(lambda: threading.current_thread().name).result().startswith("x")
    pool.shutdown()
    monkeypatch.setattr("napari_glandseg.model.precision.free_cores_now", lambda: 1)
    assert isinstance(executor_beside(_Pred(1), "x", borrow=True), InlineExecutor)  # no core to lend


def test_a_borrowing_task_takes_a_thread_from_the_model_while_it_runs(monkeypatch):
    import torch

    monkeypatch.setattr("napari_glandseg.model.precision.free_cores_now", lambda: 2)
    monkeypatch.delenv("GLANDSEG_THREADS", raising=False)  # the suite fixes it; a fixed count is not lent
    seen = []

    class Spy(ThresholdModel):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return super().forward(x)

    pred = Predictor(Spy(), device="cpu", precision="fp32")
    tiles = np.zeros((1, 64, 64, 3), np.uint8)
    pred.predict(tiles)
    started, release = threading.Event(), threading.Event()
    with LendingPool("lend") as pool:
        fut = pool.submit(lambda: started.set() or release.wait(10))
        assert started.wait(10) and cores_lent() == 1
        pred.predict(tiles)
        release.set()
        assert fut.result() is True
    assert cores_lent() == 0
    pred.predict(tiles)
    assert seen == [2, 1, 2]
    monkeypatch.setenv("GLANDSEG_THREADS", "2")  # a count the user fixed is kept
    started.clear()
    release.clear()
    with LendingPool("lend") as pool:
        fut = pool.submit(lambda: started.set() or release.wait(10))
        assert started.wait(10)
        pred.predict(tiles)
        release.set()
    assert seen[-1] == 2


def test_whole_slide_glands_are_the_same_inline_and_threaded(tmp_path, monkeypatch):
    img = disc_image(700, 900, [(256, 300, 70), (120, 512, 60), (500, 600, 90), (600, 140, 40)],
                     tissue=(0, 0, 700, 800))
    path = write_disc_slide(tmp_path / "discs.tif", img, mpp=1.0)
    labels, names = {}, {}
    for mode, spare, threads in (("spare", True, 2), ("lend", False, 2), ("inline", False, 1)):
        monkeypatch.setattr(beside_model, "spare_core", lambda predictor, spare=spare: spare)
        seen: set[str] = set()
        run = segment_slide(open_slide(path), tmp_path / f"{mode}.zarr",
                            Predictor(ThresholdModel(), device="cpu", threads=threads), SlideRunSettings(chunk_px=256),
                            progress=lambda *a, seen=seen: seen.update(t.name for t in threading.enumerate()))
        labels[mode], names[mode] = np.asarray(run.store.levels[0][:]), seen
    assert len(np.unique(labels["spare"])) == 5
    assert np.array_equal(labels["spare"], labels["lend"]) and np.array_equal(labels["spare"], labels["inline"])
    assert any(n.startswith("glandseg-finish") for n in names["spare"])
    assert any(n.startswith("glandseg-finish") for n in names["lend"])
    assert not any(n.startswith("glandseg-read") for n in names["lend"] | names["inline"])
    assert not any(n.startswith("glandseg-finish") for n in names["inline"])
