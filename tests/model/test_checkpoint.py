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
