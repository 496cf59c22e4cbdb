"""Training tests: one thread each, a few real GlaS images."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Training tests run single-threaded (reproducible sums, a small shared machine); the
    setting is restored afterwards so that other tests keep their own."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

@pytest.fixture(scope="session")
def mini_glas(shared_data: Path, tmp_path_factory) -> Path:
    """A GlaS-style folder with 4 real training images (2 benign, 2 malignant) and Grade.csv."""
    src = shared_data / "glas" / "train"
    grades = (shared_data / "glas" / "Grade.csv").read_text(encoding="utf-8").splitlines()
    chosen = {"benign": [], "malignant": []}
    for row in grades[1:]:
        cols = [c.strip() for c in row.split(",")]
        if cols[0].startswith("train_") and len(chosen[cols[2]]) < 2:
            chosen[cols[2]].append(cols[0])
    names = chosen["benign"] + chosen["malignant"]
    out = tmp_path_factory.mktemp("mini_glas")
    (out / "images").mkdir()
    (out / "masks").mkdir()
    for n in names:
        shutil.copy(src / "images" / f"{n}.png", out / "images")
        shutil.copy(src / "masks" / f"{n}.png", out / "masks")
    (out / "Grade.csv").write_text("\n".join([grades[0]] + [r for r in grades if r.split(",")[0] in names]) + "\n")
    return out
