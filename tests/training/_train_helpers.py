"""Helpers of the training tests (importable: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

import torch

#: Common settings of the tiny runs: the tiny preset, 64-px crops, fp32, CPU.
TINY = ["--model", "glandseg_tiny", "--crop-px", "64", "--batch-size", "2", "--amp", "false",
        "--device", "cpu", "--threads", "1", "--log-every", "1", "--save-every", "1"]


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
