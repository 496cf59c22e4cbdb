"""The running average of the weights (train.weight_average) and the supervised runs that keep it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _train_helpers import TINY, max_abs_diff, weights

from napari_glandseg.train import supervised
from napari_glandseg.train.weight_average import WeightAverage


def test_average_follows_the_ramped_decay():
    net = torch.nn.Linear(3, 2)
    with torch.no_grad():
        net.weight.fill_(0.0)
    average = WeightAverage(net, 0.9)
    expected = torch.zeros(2, 3)
    for value in (1.0, 2.0, 3.0, 4.0):
        with torch.no_grad():
            net.weight.fill_(value)
        d = min(0.9, (1 + average.updates) / (10 + average.updates))
        expected = d * expected + (1 - d) * value
        average.update(net)
    assert torch.allclose(average.net.weight, expected)
    assert not any(p.requires_grad for p in average.net.parameters())  # never trained itself


def test_average_restores_exactly_and_starts_from_the_net_without_a_saved_one():
    net = torch.nn.Linear(3, 2)
    average = WeightAverage(net, 0.99)
    for _ in range(3):
        with torch.no_grad():
            net.weight.add_(1.0)
        average.update(net)
    again = WeightAverage(torch.nn.Linear(3, 2), 0.99)
    again.restore(average.state_tensors(), net)
    assert again.updates == 3 and torch.equal(again.net.weight, average.net.weight)
    fresh = WeightAverage(torch.nn.Linear(3, 2), 0.99)
    fresh.restore({}, net)  # a run started without averaging, resumed with it
    assert fresh.updates == 0 and torch.equal(fresh.net.weight, net.weight)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_bad_decay_is_refused(decay):
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage(torch.nn.Linear(1, 1), decay)


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", json.dumps([str(data)]), "--out", str(out), "--val-fraction", "0", *TINY,
            "--ema-decay", "0.5", *extra]


def test_run_keeps_the_average_and_resumes_it(mini_glas, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    supervised.main(_args(mini_glas, straight, "--steps", "3"))
    supervised.main(_args(mini_glas, resumed, "--steps", "3", "--stop-at", "2"))
    supervised.main(_args(mini_glas, resumed, "--steps", "3"))
    average, last = weights(straight / "average.safetensors"), weights(straight / "last.safetensors")
    assert max_abs_diff(average, last) > 1e-6  # the average is not the last step's weights
    assert max_abs_diff(average, weights(resumed / "average.safetensors")) < 1e-6
    assert max_abs_diff(last, weights(resumed / "last.safetensors")) < 1e-6


def test_validation_scores_the_average_and_best_holds_it(mini_glas, tmp_path, monkeypatch):
    scored = []
    real = supervised.validate

    def recording(model, *args, **kwargs):
        scored.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return real(model, *args, **kwargs)

    monkeypatch.setattr(supervised, "validate", recording)
    supervised.main([*_args(mini_glas, tmp_path, "--steps", "2"), "--val-fraction", "0.25", "--val-every", "2"])
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r.get("event") == "validation"] == [2]
    average, last = weights(tmp_path / "average.safetensors"), weights(tmp_path / "last.safetensors")
    assert len(scored) == 1 and max_abs_diff(scored[0], average) < 1e-6  # what validation scored
    assert max_abs_diff(scored[0], last) > 1e-6
    assert max_abs_diff(weights(tmp_path / "best.safetensors"), average) < 1e-6
    card = json.loads((tmp_path / "average.json").read_text())
    assert card["provenance"]["step"] == 2 and card["provenance"]["config"]["ema_decay"] == 0.5


def test_a_skipped_step_leaves_the_average_alone(monkeypatch):
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    average = WeightAverage(net, 0.9)
    losses = iter([torch.tensor(float("nan")), None])

    def loss_of_batch(*_args, **_kwargs):
        loss = next(losses)
        return (net(torch.ones(1, 3)).sum() if loss is None else loss), {}

    monkeypatch.setattr(supervised, "step_loss", loss_of_batch)
    _, parts = supervised.train_step(net, optimizer, None, None, None, None, None, average)
    assert parts["skipped"] == 1.0 and average.updates == 0  # a non-finite loss: no step, no average
    _, parts = supervised.train_step(net, optimizer, None, None, None, None, None, average)
    assert parts["skipped"] == 0.0 and average.updates == 1
