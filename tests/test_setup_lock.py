"""The set-up lock (scripts/lock.py): fresh for this setup.cfg, and stale when a dependency changes."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lock_module():
    spec = importlib.util.spec_from_file_location("lock_script", ROOT / "scripts" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_lock_was_made_from_this_setup_cfg():
    lock = _lock_module()
    assert lock.recorded_hash() == lock.dependency_hash(), "setup.cfg changed since the lock: run `make lock`"
    pins = lock.locked()
    for name in ("torch", "torchvision", "numpy", "napari", "zarr", "pip"):
        assert name in pins, name


def test_a_dependency_change_makes_the_lock_stale_and_metadata_does_not(tmp_path):
    lock = _lock_module()
    cfg = tmp_path / "setup.cfg"
    shutil.copy(ROOT / "setup.cfg", cfg)
    before = lock.dependency_hash(cfg)
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("description =", "description = (edited)"), encoding="utf-8")
    assert lock.dependency_hash(cfg) == before
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("numpy>=1.26", "numpy>=2.0"), encoding="utf-8")
    assert lock.dependency_hash(cfg) != before
