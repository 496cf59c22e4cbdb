"""Precision and threads from the machine (issue 21): bf16 only where the CPU runs it natively."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from napari_glandseg.model.precision import (
    cpu_has_native_bf16,
    free_of,
    pick_faster,
    precision_name,
    resolve_precision,
)

CPU = torch.device("cpu")


def _in_fresh_python(env: dict[str, str]) -> dict:
    code = ("import json, torch; from napari_glandseg.model.precision import cpu_has_native_bf16, resolve_precision;"
            "print(json.dumps({'native': cpu_has_native_bf16(), 'cap': torch.backends.cpu.get_cpu_capability(),"
            "'auto': str(resolve_precision(torch.device('cpu'), 'auto'))}))")
    import os

    base = {k: v for k, v in os.environ.items() if k not in ("GLANDSEG_PRECISION", "GLANDSEG_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_avx2_only_cpu_gets_fp32_by_default():
    """ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA make any CPU look like one without AVX-512."""
    r = _in_fresh_python({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert not r["cap"].startswith("AVX512") and r["native"] is False and r["auto"] == "None"


@pytest.fixture(autouse=True)
def _auto_means_auto(monkeypatch):
    """The suite fixes precision and threads (tests/conftest.py); these tests are of "auto"."""
    monkeypatch.delenv("GLANDSEG_PRECISION", raising=False)
    monkeypatch.delenv("GLANDSEG_THREADS", raising=False)


def test_the_environment_fixes_what_auto_means(monkeypatch):
    from napari_glandseg.model.precision import cpu_threads

    monkeypatch.setenv("GLANDSEG_PRECISION", "bf16")
    assert resolve_precision(CPU, "auto") is torch.bfloat16 and resolve_precision(CPU, "fp32") is None
    monkeypatch.setenv("GLANDSEG_PRECISION", "fp8")
    with pytest.raises(ValueError, match="GLANDSEG_PRECISION"):
        resolve_precision(CPU, "auto")
    monkeypatch.setenv("GLANDSEG_THREADS", "3")
    assert cpu_threads() == 3 and cpu_threads(1) == 1


def test_onednn_isa_without_bf16_is_not_native(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    assert not cpu_has_native_bf16()
    assert resolve_precision(CPU, "auto") is None


def test_forced_precisions_and_bad_names():
    assert resolve_precision(CPU, "fp32") is None
    assert resolve_precision(CPU, "bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        resolve_precision(CPU, "fp8")
    assert precision_name(torch.bfloat16) == "bf16" and precision_name(None) == "fp32"


def test_pick_faster_keeps_the_faster(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    cost = {torch.bfloat16: 3.0, None: 0.5}  # seconds a call takes on this pretend CPU

    def run(dtype):
        clock[0] += cost[dtype]

    best, seconds = pick_faster(run, (torch.bfloat16, None))
    assert best is None and seconds == {"bf16": 3.0, "fp32": 0.5}
    cost[torch.bfloat16] = 0.2
    assert pick_faster(run, (torch.bfloat16, None))[0] is torch.bfloat16
    cost[torch.bfloat16] = 0.53  # within 10 % of the fastest: the first (preferred) one stays
    assert pick_faster(run, (torch.bfloat16, None))[0] is torch.bfloat16


def test_free_cores_count_other_processes_not_this_one():
    assert free_of([100.0, 5.0], [0, 1], own_cores=0.0) == 1  # another process holds a core
    assert free_of([100.0, 5.0], [0, 1], own_cores=1.0) == 2  # it was this process itself
    assert free_of([100.0, 100.0, 0.0, 0.0], [2, 3], own_cores=0.0) == 2  # only the affinity counts
    assert free_of([100.0, 100.0], [0, 1], own_cores=0.0) == 1  # never below one


def test_predictor_says_what_it_chose():
    from napari_glandseg.inference.predictor import Predictor
    from napari_glandseg.model import create_model

    tiles = np.random.default_rng(0).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
    fp32 = Predictor(create_model("glandseg_tiny"), device="cpu", precision="fp32", threads=1)
    out = fp32.predict(tiles).copy()
    assert fp32.info()["precision"] == "fp32" and fp32.info()["threads"] == 1 and torch.get_num_threads() == 1
    auto = Predictor(fp32.model, device="cpu", threads=1)
    out_auto = auto.predict(tiles)
    info = auto.info()
    assert auto.calls == 1 and auto.tiles == 1  # the timing runs are not counted
    if cpu_has_native_bf16():
        assert set(info["precision_timing_s"]) == {"bf16", "fp32"}
        assert info["precision"] == min(info["precision_timing_s"], key=info["precision_timing_s"].get)
    else:
        assert info["precision"] == "fp32" and "precision_timing_s" not in info
    assert np.isfinite(out_auto).all() and np.allclose(out_auto.sum(1), 1, atol=1e-3)
    assert np.abs(out_auto - out).mean() < 0.01  # bf16 or not, the same probabilities (0.0007 here)
