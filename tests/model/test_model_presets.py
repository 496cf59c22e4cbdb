"""Presets, shapes, heads, training step, bad configurations, device choice."""

from __future__ import annotations

import pytest
import torch

from napari_glandseg.model import create_model, list_models, pick_device


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("glandseg_tiny").eval()


def test_presets_are_listed():
    assert {"glandseg_tiny", "glandseg_small", "glandseg_base"} <= set(list_models())


@pytest.mark.parametrize("hw", [(64, 64), (128, 96), (96, 160)])
def test_tiny_logits_shape(tiny, hw):
    with torch.no_grad():
        out = tiny(torch.randn(2, 3, *hw))
    assert out.shape == (2, 3, *hw) and torch.isfinite(out).all()


def test_return_all_has_deep_supervision_tumor_and_tokens(tiny):
    with torch.no_grad():
        out = tiny(torch.randn(2, 3, 128, 128), return_all=True)
    assert out["logits"].shape == (2, 3, 128, 128)
    assert [tuple(d.shape[-2:]) for d in out["deep"]] == [(8, 8), (16, 16), (32, 32)]
    assert all(d.shape[:2] == (2, 3) for d in out["deep"])
    assert out["tumor"].shape == (2, 2)
    assert out["tokens"].shape[0] == 2 and out["tokens"].shape[1] == 16


def test_backward_pass_reaches_both_encoders():
    model = create_model("glandseg_tiny").train()
    out = model(torch.randn(2, 3, 64, 64), return_all=True)
    loss = out["logits"].mean() + sum(d.mean() for d in out["deep"]) + out["tumor"].mean()
    loss.backward()
    for name in ("swin_a.patch_embed.proj.weight", "swin_b.patch_embed.proj.weight", "head.weight",
                 "tumor_head.1.weight", "deep_heads.0.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_normalize_uses_the_card(tiny):
    rgb = torch.full((1, 4, 4, 3), 255, dtype=torch.uint8)
    x = tiny.normalize(rgb)
    assert x.shape == (1, 3, 4, 4)
    expect = (1.0 - torch.tensor(tiny.card.mean)) / torch.tensor(tiny.card.std)
    torch.testing.assert_close(x[0, :, 0, 0], expect)


def test_input_checks(tiny):
    with pytest.raises(ValueError, match="multiples of 32"):
        tiny(torch.randn(1, 3, 60, 64))
    with pytest.raises(ValueError, match="N×3×H×W"):
        tiny(torch.randn(1, 4, 64, 64))


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError, match="glandseg_tiny"):
        create_model("glandseg_huge")


def test_window_that_does_not_divide_is_refused():
    enc = {"patch_size": 4, "embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 4, 8], "window_size": 5}
    with pytest.raises(ValueError, match="window"):
        create_model("glandseg_tiny", enc_a=enc)


def test_heads_that_do_not_divide_are_refused():
    enc = {"patch_size": 4, "embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [3, 2, 4, 8], "window_size": 4}
    with pytest.raises(ValueError, match="divisible by 3 heads"):
        create_model("glandseg_tiny", enc_a=enc)


def test_bad_card_values_are_refused():
    with pytest.raises(ValueError, match="tile_px"):
        create_model("glandseg_tiny", tile_px=100)
    with pytest.raises(ValueError, match="overlap_px"):
        create_model("glandseg_tiny", overlap_px=64)


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="auto"):
        pick_device("bogus")
