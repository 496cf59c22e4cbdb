"""The proposals' per-image network runs on one torch thread in these tests (as ``propose_glands``
does by default); the setting is restored afterwards so that other tests keep their own."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
