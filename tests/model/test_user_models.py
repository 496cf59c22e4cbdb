"""The user models folder: listed by name (newest first), broken and unfinished folders skipped,
fresh names never taken, ``load_model(NAME)`` loads one."""

from __future__ import annotations

import os

import pytest
import torch

from napari_glandseg.model import create_model, load_model, save_checkpoint
from napari_glandseg.model.user_models import ENV_VAR, list_user_models, models_dir, new_model_dir


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "models"))
    return tmp_path / "models"


def _save(folder, name, mtime=None):
    torch.manual_seed(0)
    model = create_model("glandseg_tiny")
    weights, _ = save_checkpoint(model, folder / name / "model", card=model.card.replace(name=name))
    if mtime is not None:
        os.utime(weights, (mtime, mtime))
    return weights


def test_models_are_listed_by_name_newest_first_and_load_by_name(folder):
    assert models_dir() == folder and list_user_models() == []
    _save(folder, "older", mtime=1_000_000)
    _save(folder, "newer")
    _save(folder, ".half-written.partial")  # a fine-tune at work: never listed
    (folder / "broken").mkdir()
    (folder / "broken" / "model.safetensors").write_bytes(b"not a model")  # no card
    assert [m.name for m in list_user_models()] == ["newer", "older"]
    model = load_model("older", device="cpu")
    assert model.card.name == "older"
    with pytest.raises(ValueError, match="neither a preset"):
        load_model("nothing-by-this-name")


def test_new_names_are_fresh_and_never_a_preset(folder):
    first = new_model_dir("glandseg_small")
    assert first.parent == folder and first.name.startswith("glandseg_small-ft-")
    first.mkdir(parents=True)
    second = new_model_dir("glandseg_small")
    assert second != first and not second.exists()
    again = new_model_dir(first.name)  # a fine-tune of a fine-tune keeps one "-ft-" suffix
    assert again.name.count("-ft-") == 1


def test_a_fifo_in_the_models_folder_hangs_nothing(folder):
    """A FIFO named model.json (or model.safetensors) is skipped at once; lookups still work."""
    import signal

    from napari_glandseg.model.user_models import find_user_model

    _save(folder, "good")
    for name, fifo in (("fifo-card", "model.json"), ("fifo-weights", "model.safetensors")):
        (folder / name).mkdir()
        _save(folder, name)
        (folder / name / fifo).unlink()
        os.mkfifo(folder / name / fifo)

    def hung(*_):
        raise TimeoutError("a FIFO blocked the lookup")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        assert [m.name for m in list_user_models()] == ["good"]
        assert load_model("good", device="cpu").card.name == "good" and find_user_model("fifo-card") is None
        with pytest.raises(ValueError, match="not a regular file"):
            load_model(folder / "fifo-weights", device="cpu")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
