"""What a second probe found (issue 23): FIFOs among images, absurd numbers, a --out named like
another run's work folder (the package cases are in tests/labels/test_exports_to_files.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from napari_glandseg.errors import GlandsegError, check_mpp


def test_a_fifo_among_images_is_an_error_not_a_hang(shared_data, tmp_path):
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        shutil.copy(shared_data / "glas" / "testA" / sub / "testA_1.png", tmp_path / sub / "testA_1.png")
    os.mkfifo(tmp_path / "masks" / "testA_2.png")
    os.mkfifo(tmp_path / "images" / "testA_2.png")
    cmd = [sys.executable, "-m", "napari_glandseg.cli"]
    for argv in (["evaluate", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
                  "--model", "glandseg_tiny"],
                 ["info", str(tmp_path / "images" / "testA_2.png")]):
        out = subprocess.run(cmd + argv, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and "testA_2.png" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_absurd_numbers_are_errors():
    with pytest.raises(GlandsegError):
        check_mpp(10**400, "mpp")
    from napari_glandseg.train.data import DataSource

    with pytest.raises(ValueError, match="finite"):
        DataSource.parse({"path": "x", "weight": float("inf")})


def test_a_run_never_removes_the_work_folder_of_an_out_named_like_it(tmp_path):
    """--out "x" must not take ".x.HOST.999.HOST.PID.RAND.partial" (the work folder of --out
    "x.HOST.999", whose run is alive) for one of its own dead runs."""
    from napari_glandseg.train.corrections import _host_tag, _staging

    host = _host_tag()
    other = tmp_path / f".x.{host}.999.{host}.{os.getpid()}.abcd1234.partial"
    other.mkdir()
    mine = _staging(tmp_path / "x")
    assert other.exists() and mine.exists()
