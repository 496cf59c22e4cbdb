"""Predictor: shapes, batching, buffer reuse, out-of-memory retry, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _inference_models import FlakyOOMModel, ThresholdModel

from napari_glandseg.errors import GlandsegError
from napari_glandseg.inference.predictor import Predictor, default_batch_size


def test_probabilities_shape_and_sum(threshold_model):
    pred = Predictor(threshold_model, device="cpu", batch_size=2)
    tiles = np.zeros((5, 64, 96, 3), np.uint8)
    tiles[:, :32] = 255
    out = pred.predict(tiles)
    assert out.shape == (5, 3, 64, 96) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-4)
    assert (out[:, 1, 40:] > 0.99).all() and (out[:, 1, :32] < 0.01).all()
    assert pred.calls == 3 and pred.tiles == 5


def test_buffers_are_reused(threshold_model):
    pred = Predictor(threshold_model, device="cpu", batch_size=4)
    tiles = np.zeros((4, 64, 64, 3), np.uint8)
    pred.predict(tiles)
    inp, out = pred._in.data_ptr(), pred._out.ctypes.data
    for _ in range(3):
        pred.predict(tiles[:3])
    assert pred._in.data_ptr() == inp and pred._out.ctypes.data == out


def test_model_is_in_eval_mode_and_channels_last(threshold_model):
    threshold_model.train()
    pred = Predictor(threshold_model, device="cpu")
    assert not pred.model.training
    assert pred.batch_size == default_batch_size(torch.device("cpu"), 128)
    assert 4 <= pred.batch_size <= 8


def test_fake_oom_halves_the_batch_and_retries():
    model = FlakyOOMModel().eval()
    pred = Predictor(model, device="cpu", batch_size=8, amp=False)
    tiles = np.full((7, 64, 64, 3), 10, np.uint8)
    out = pred.predict(tiles)
    assert model.raised and pred.batch_size == 3  # the failed batch of 7, halved
    assert model.batch_sizes == [3, 3, 1]
    assert (out[:, 1] > 0.99).all()


def test_oom_with_one_tile_is_a_clear_error():
    class AlwaysOOM(ThresholdModel):
        def forward(self, x):
            raise torch.cuda.OutOfMemoryError("fake")

    pred = Predictor(AlwaysOOM().eval(), device="cpu", batch_size=2)
    with pytest.raises(GlandsegError, match="out of GPU memory"):
        pred.predict(np.zeros((2, 64, 64, 3), np.uint8))


@pytest.mark.parametrize("tiles", [np.zeros((2, 64, 64, 3), np.float32), np.zeros((64, 64, 3), np.uint8),
                                   np.zeros((1, 60, 64, 3), np.uint8)])
def test_bad_tiles_raise(threshold_model, tiles):
    with pytest.raises(GlandsegError):
        Predictor(threshold_model, device="cpu").predict(tiles)


def test_wrong_output_shape_is_named():
    class TwoClass(ThresholdModel):
        def forward(self, x):
            return super().forward(x)[:, :2]

    with pytest.raises(GlandsegError, match="threshold-test"):
        Predictor(TwoClass(), device="cpu").predict(np.zeros((1, 64, 64, 3), np.uint8))


def test_not_a_model_raises():
    with pytest.raises(GlandsegError, match="card"):
        Predictor(torch.nn.Conv2d(3, 3, 1))


def test_real_tiny_model_runs_with_autocast():
    from napari_glandseg.model import create_model

    pred = Predictor(create_model("glandseg_tiny"), device="cpu", batch_size=2, precision="bf16")
    assert pred.amp_dtype == torch.bfloat16 and pred.info()["precision"] == "bf16"
    out = pred.predict(np.random.default_rng(0).integers(0, 255, (3, 128, 128, 3), dtype=np.uint8))
    assert out.shape == (3, 3, 128, 128) and np.isfinite(out).all()
