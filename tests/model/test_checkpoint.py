"""Checkpoints: round trip, fp16, pickles refused, mismatches named."""

from __future__ import annotations

import json

import pytest
import torch

from napari_glandseg.errors import GlandsegError
from napari_glandseg.model import (
    create_model,
    load_checkpoint,
    load_model,
    read_card,
    save_checkpoint,
)


@pytest.fixture
def tiny():
    torch.manual_seed(1)
    return create_model("glandseg_tiny").eval()


def test_round_trip_gives_identical_outputs(tiny, tmp_path):
    weights, card = save_checkpoint(tiny, tmp_path / "ck")
    assert weights.name == "ck.safetensors" and card.name == "ck.json"
    loaded = load_checkpoint(tmp_path / "ck.safetensors").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), tiny(x), rtol=0, atol=0)
    assert loaded.card == tiny.card
    assert read_card(tmp_path / "ck").name == "glandseg_tiny"
    assert load_model(tmp_path / "ck.json", device="cpu").card == tiny.card


def test_fp16_checkpoint_is_smaller_and_close(tiny, tmp_path):
    w32, _ = save_checkpoint(tiny, tmp_path / "f32")
    w16, _ = save_checkpoint(tiny, tmp_path / "f16", half=True)
    assert w16.stat().st_size < 0.6 * w32.stat().st_size
    loaded = load_checkpoint(w16).eval()
    assert next(loaded.parameters()).dtype == torch.float32
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), tiny(x), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_pickles_are_refused(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"not even read")
    with pytest.raises(GlandsegError, match="pickle"):
        load_checkpoint(path)


def test_mismatched_shapes_name_the_keys(tiny, tmp_path):
    save_checkpoint(tiny, tmp_path / "ck")
    card = json.loads((tmp_path / "ck.json").read_text())
    card["arch_args"]["stem_channels"] = [16, 8]
    (tmp_path / "ck.json").write_text(json.dumps(card))
    with pytest.raises(GlandsegError, match=r"stem1\.0\.weight"):
        load_checkpoint(tmp_path / "ck")


def test_missing_files_are_named(tmp_path):
    with pytest.raises(GlandsegError, match="model card not found"):
        load_checkpoint(tmp_path / "nothing.safetensors")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(GlandsegError, match="bad.json"):
        load_checkpoint(tmp_path / "bad.json")


def test_a_card_is_checked_against_the_weights_before_anything_is_built(tiny, tmp_path):
    """A small card whose network would need 56 GiB of buffers is refused without allocating."""
    import resource

    save_checkpoint(tiny, tmp_path / "ck")
    card = json.loads((tmp_path / "ck.json").read_text())
    for enc in ("enc_a", "enc_b"):
        card["arch_args"][enc].update(window_size=64, depths=[64] * len(card["arch_args"][enc]["depths"]))
    card["arch_args"]["img_px"] = 4096
    (tmp_path / "ck.json").write_text(json.dumps(card))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(GlandsegError, match=r"ck.safetensors: the card describes a network whose buffers need 56"):
        load_checkpoint(tmp_path / "ck")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: nothing big allocated

    card = json.loads((tmp_path / "ck.json").read_text())
    card["arch_args"] = json.loads(json.dumps(tiny.card.arch_args))  # a shape change: named from the header
    card["arch_args"]["enc_b"] = {**card["arch_args"]["enc_b"], "embed_dim": 32}
    (tmp_path / "ck.json").write_text(json.dumps(card))
    with pytest.raises(GlandsegError, match=r"weights do not fit the model card: shape mismatch: .*swin_b.layers.0"):
        load_checkpoint(tmp_path / "ck")


def test_a_deeply_nested_card_and_a_fifo_card_are_clear_errors(tmp_path):
    import os

    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "deep.safetensors").write_bytes(b"")
    with pytest.raises(GlandsegError, match="deep.json: not a valid model card"):
        load_checkpoint(tmp_path / "deep.safetensors")
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(GlandsegError, match="fifo.json: not a regular file"):
        read_card(tmp_path / "fifo.json")


def test_a_model_folder_loads_by_its_path(tiny, tmp_path):
    """``--model OUT`` for the folder ``glandseg finetune`` wrote (model.safetensors + model.json)."""
    save_checkpoint(tiny, tmp_path / "out" / "model")
    assert load_model(tmp_path / "out", device="cpu").card == tiny.card


@pytest.mark.parametrize("damage, message", [("nan", "not finite"), ("int8", "not floating point")])
def test_nan_or_integer_weights_are_refused(tiny, tmp_path, damage, message):
    from safetensors.torch import load_file, save_file

    weights, _ = save_checkpoint(tiny, tmp_path / "ck")
    state = load_file(str(weights))
    state = {k: (torch.full_like(v, float("nan")) if damage == "nan" else v.to(torch.int8)) for k, v in state.items()}
    save_file(state, str(weights))
    with pytest.raises(GlandsegError, match=f"ck.safetensors: weights {message}"):
        load_checkpoint(weights)
