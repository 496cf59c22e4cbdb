"""One writer per output folder: ``FolderLock`` between processes, threads, and stale owners."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/_lock_holder.py

from _lock_holder import dead_pid, other_writer  # noqa: E402
from napari_glandseg._lock import FolderLock, FolderLocked, _start_time, holder, lock_file  # noqa: E402
from napari_glandseg.labels.store import LabelStore  # noqa: E402


def _fake_lock(folder: Path, **fields) -> Path:
    record = {"pid": 1, "host": socket.gethostname(), "start": None, "purpose": "old run",
              "since": "2020-01-01T00:00:00", "token": "t", **fields}
    path = lock_file(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def test_a_second_process_is_refused_and_told_who_writes(tmp_path):
    folder = tmp_path / "out" / "slide"
    with other_writer(folder) as proc:
        assert holder(folder)["pid"] == proc.pid
        with pytest.raises(FolderLocked, match=rf"{folder}: in use .*a test holder, pid {proc.pid} on host"):
            FolderLock(folder, "me").acquire()
    # killed (-9): its lock file is left behind, and is stale now
    assert lock_file(folder).exists() and holder(folder) is None
    with FolderLock(folder, "me"):
        assert holder(folder)["purpose"] == "me" and holder(folder)["pid"] == os.getpid()
    assert not lock_file(folder).exists()


@pytest.mark.parametrize("fields, stale", [
    ({"pid": "dead"}, True),  # replaced by a real dead pid below
    ({"pid": os.getppid(), "start": "real"}, False),  # alive
    ({"pid": os.getppid(), "start": "reused"}, True),  # the pid now belongs to another process
    ({"pid": 1, "host": "elsewhere.example"}, False),  # cannot be checked from here
    ({"pid": -5}, True),
])
def test_stale_locks_are_taken_over_live_ones_are_not(tmp_path, caplog, fields, stale):
    folder = tmp_path / "s.zarr"
    if fields["pid"] == "dead":
        fields = {**fields, "pid": dead_pid()}
    if fields.get("start") in ("real", "reused"):
        real = _start_time(os.getppid())
        fields = {**fields, "start": real if fields["start"] == "real" else (real or 0) + 1}
    path = _fake_lock(folder, **fields)
    if stale:
        with caplog.at_level(logging.WARNING), FolderLock(folder, "new"):
            assert holder(folder)["purpose"] == "new"
        assert "stale lock" in caplog.text
    else:
        with pytest.raises(FolderLocked, match=f"old run.*remove {path}"):
            FolderLock(folder, "new").acquire()
        assert json.loads(path.read_text())["purpose"] == "old run"


def test_threads_of_one_process_exclude_each_other_but_one_task_may_nest(tmp_path):
    folder = tmp_path / "s.zarr"
    with FolderLock(folder, "outer"), FolderLock(folder, "inner call of the same task"):
        assert holder(folder)["purpose"] == "outer"
        errors = []

        def other_task():
            try:
                FolderLock(folder, "commit").acquire()
            except FolderLocked as exc:
                errors.append(str(exc))

        t = threading.Thread(target=other_task)
        t.start()
        t.join()
        assert errors and "another task of this program (outer)" in errors[0]
        assert lock_file(folder).exists()
    assert not lock_file(folder).exists()


def test_the_lock_lives_beside_the_folder_so_replacing_the_folder_keeps_it(tmp_path):
    folder = tmp_path / "s.zarr"
    folder.mkdir()
    with FolderLock(folder, "start over"):
        shutil.rmtree(folder)
        assert holder(folder)["purpose"] == "start over"
    assert lock_file(folder).parent == tmp_path and lock_file(folder).name.startswith(".s.zarr")


def test_a_lock_in_a_read_only_place_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(Exception, match=f"{ro / 'out'}: cannot write the lock file"):
            FolderLock(ro / "out").acquire()
    finally:
        ro.chmod(0o755)


def test_a_correction_is_refused_while_another_writer_holds_the_store(tmp_path):
    from napari_glandseg.labels.layer_meta import GlandLayerMeta
    from napari_glandseg.labels.review import commit
    from napari_glandseg.slide.placement import GridPlacement

    path = tmp_path / "slide.glandseg.zarr"
    LabelStore.create(path, (64, 64), chunk_px=32, mpp=1.0)
    meta = GlandLayerMeta(kind="edit", slide_name="s", slide_shape=(64, 64), placement=GridPlacement(1.0),
                          store=str(path), store_region=(8, 8, 16, 16))
    labels = np.full((16, 16), 3, np.int32)
    with other_writer(path), pytest.raises(FolderLocked, match="in use"):
        commit(labels, meta, reviewed_by="me")
    assert LabelStore.open(path).reviewed_regions() == []
    commit(labels, meta, reviewed_by="me")  # the other writer is gone (its lock is stale)
    assert (LabelStore.open(path).read_region(8, 8, 16, 16) == 3).all()
