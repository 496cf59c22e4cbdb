"""Device choice: cuda, then mps, then cpu, unless the user says otherwise."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def pick_device(preference: str | torch.device | None = "auto") -> torch.device:
    """Return the device to run on; ``auto`` (or None) picks cuda → mps → cpu."""
    if isinstance(preference, torch.device):
        return preference
    pref = (preference or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = pref.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {preference!r}; choose one of {DEVICE_CHOICES} (cuda:N works too)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was asked for but it is not available; use 'auto' or 'cpu'")
    return torch.device(pref)
