"""LabelStore: an OME-Zarr label pyramid on disk with done markers and a journalled review log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/_lock_holder.py

from _lock_holder import other_writer  # noqa: E402
from napari_glandseg.errors import GlandsegError  # noqa: E402
from napari_glandseg.labels.store import LabelStore, level_shapes  # noqa: E402


@pytest.fixture
def store(tmp_path):
    return LabelStore.create(tmp_path / "s.ome.zarr", (1300, 1000), chunk_px=256, mpp=1.24, source="slide.svs")


def _pyramid_consistent(store: LabelStore) -> None:
    full = store.levels[0][:]
    for k in range(1, len(store.levels)):
        np.testing.assert_array_equal(store.levels[k][:], full[:: 2**k, :: 2**k], err_msg=f"level {k}")


def test_levels_shapes_chunks_and_ngff_metadata(store, tmp_path):
    assert store.shape == (1300, 1000)
    assert [tuple(a.shape) for a in store.levels] == level_shapes((1300, 1000)) == [(1300, 1000), (650, 500), (325, 250)]
    assert all(a.dtype == np.int32 for a in store.levels)
    assert tuple(store.levels[0].chunks) == (256, 256)
    attrs = json.loads((tmp_path / "s.ome.zarr" / "zarr.json").read_text())["attributes"]
    ome = attrs["ome"]
    assert ome["version"] == "0.5"
    ms = ome["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["y", "x"] and ms["axes"][0]["unit"] == "micrometer"
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales == [[1.24, 1.24], [2.48, 2.48], [4.96, 4.96]]
    assert "source" not in ome["image-label"], "NGFF source is an image group path, not the slide file"
    reopened = LabelStore.open(tmp_path / "s.ome.zarr")
    assert reopened.mpp == 1.24 and reopened.chunk_px == 256 and reopened.source == "slide.svs"


def test_read_region_pads_outside_with_zero(store):
    store.levels[0][:10, :10] = 5
    out = store.read_region(-4, -6, 8, 20)
    assert out.shape == (8, 20)
    assert (out[:4] == 0).all() and (out[:, :6] == 0).all()
    assert (out[4:, 6:16] == 5).all() and (out[4:, 16:] == 0).all()


def test_write_chunk_then_marker_and_shape_check(store):
    gy, gx = store.grid
    assert (gy, gx) == (6, 4)
    y, x, h, w = store.chunk_box(5, 3)  # the clipped corner chunk
    assert (h, w) == (1300 - 5 * 256, 1000 - 3 * 256)
    assert not store.is_done(5, 3)
    store.write_chunk(5, 3, np.full((h, w), 9, np.int32))
    assert store.is_done(5, 3) and store.done_chunks() == {(5, 3)}
    assert (store.read_region(y, x, h, w) == 9).all()
    with pytest.raises(ValueError, match="chunk \\(0, 0\\)"):
        store.write_chunk(0, 0, np.zeros((10, 10), np.int32))
    assert not store.is_done(0, 0)
    with pytest.raises(IndexError):
        store.chunk_box(6, 0)


def test_write_region_clips_logs_and_refreshes_the_pyramid(store, tmp_path):
    rng = np.random.default_rng(1)
    store.levels[0][:] = rng.integers(0, 4, store.shape).astype(np.int32)
    store.build_pyramid()
    _pyramid_consistent(store)
    patch = rng.integers(0, 50, (300, 301)).astype(np.int32)
    rec = store.write_region(1100, 850, patch, reviewed_by="pathologist", model="glandseg_small")
    assert rec["bounds"] == [1100, 850, 200, 150]
    np.testing.assert_array_equal(store.read_region(1100, 850, 200, 150), patch[:200, :150])
    _pyramid_consistent(store)
    store.write_region(-20, -30, patch, reviewed_by="pathologist", model=None)
    np.testing.assert_array_equal(store.read_region(0, 0, 280, 271), patch[20:, 30:])
    _pyramid_consistent(store)
    log = LabelStore.open(tmp_path / "s.ome.zarr").reviewed_regions()
    assert [r["bounds"] for r in log] == [[1100, 850, 200, 150], [0, 0, 280, 271]]
    assert log[0]["reviewed_by"] == "pathologist" and log[0]["model"] == "glandseg_small" and log[0]["time"]
    np.testing.assert_array_equal(store.read_patch(log[1]), patch[20:, 30:])


def test_a_commit_cut_off_before_it_reached_the_labels_is_replayed(store, tmp_path, monkeypatch):
    patch = np.full((40, 50), 7, np.int32)

    def crash(self, record, data):
        raise KeyboardInterrupt("killed after the journal, before the labels")

    monkeypatch.setattr(LabelStore, "_apply", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write_region(100, 200, patch, reviewed_by="me")
    monkeypatch.undo()
    assert store.read_region(100, 200, 40, 50).max() == 0 and store.reviewed_regions() == []
    recovered = LabelStore.open(tmp_path / "s.ome.zarr")
    assert (recovered.read_region(100, 200, 40, 50) == 7).all()
    [rec] = recovered.reviewed_regions()
    assert rec["bounds"] == [100, 200, 40, 50] and rec["recovered"] is True
    _pyramid_consistent(recovered)
    assert len(LabelStore.open(tmp_path / "s.ome.zarr").reviewed_regions()) == 1  # replayed once


def test_bad_inputs(tmp_path, store):
    with pytest.raises(GlandsegError, match="already exists"):
        LabelStore.create(tmp_path / "s.ome.zarr", (10, 10))
    with pytest.raises(GlandsegError, match="positive shape"):
        LabelStore.create(tmp_path / "zero.zarr", (0, 10))
    with pytest.raises(GlandsegError, match="no label store"):
        LabelStore.open(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    with pytest.raises(GlandsegError, match="plain"):
        LabelStore.open(tmp_path / "plain")
    with pytest.raises(ValueError, match="2-D integer"):
        store.write_region(0, 0, np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="outside"):
        store.write_region(5000, 0, np.zeros((4, 4), np.int32))
    ro = LabelStore.open(tmp_path / "s.ome.zarr", read_only=True)
    with pytest.raises(GlandsegError, match="read-only"):
        ro.write_region(0, 0, np.ones((4, 4), np.int32))


def _log(tmp_path):
    return tmp_path / "s.ome.zarr" / "glandseg_reviews" / "reviewed.jsonl"


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]  # every line whole JSON


def test_a_torn_log_line_never_reverts_a_later_correction(store, tmp_path):
    """Power loss mid-append: the torn line goes aside, and a later commit over it stays."""
    store.write_region(100, 200, np.full((40, 50), 7, np.int32), reviewed_by="a")
    log = _log(tmp_path)
    raw = log.read_bytes()
    log.write_bytes(raw[: len(raw) // 2])  # the line of commit A, cut in half
    healed = LabelStore.open(tmp_path / "s.ome.zarr")
    [a] = _lines(log)
    assert a["patch"] == "000000.npz" and a["recovered"] is True  # A replayed once, logged whole
    assert (log.parent / "reviewed.jsonl.damaged").read_bytes() == raw[: len(raw) // 2] + b"\n"
    healed.write_region(100, 200, np.full((40, 50), 9, np.int32), reviewed_by="b")
    again = LabelStore.open(tmp_path / "s.ome.zarr")
    assert (again.read_region(100, 200, 40, 50) == 9).all()  # B stays B
    assert [r["patch"] for r in again.reviewed_regions()] == ["000000.npz", "000001.npz"]
    assert [r["seq"] for r in again.reviewed_regions()] == [0, 1]
    _pyramid_consistent(again)


def test_replaying_an_older_commit_keeps_the_newer_one_on_top(store, tmp_path):
    store.write_region(0, 0, np.full((100, 100), 3, np.int32))  # A
    store.write_region(50, 50, np.full((100, 100), 4, np.int32))  # B, over A's corner
    log = _log(tmp_path)
    log.write_text(log.read_text().splitlines(keepends=True)[1])  # A's line lost, B's kept
    recovered = LabelStore.open(tmp_path / "s.ome.zarr")
    lab = recovered.read_region(0, 0, 150, 150)
    assert (lab[50:, 50:] == 4).all()  # B wins where both are
    assert (lab[:50, :100] == 3).all() and (lab[50:100, :50] == 3).all()  # A everywhere else
    assert sorted(r["patch"] for r in recovered.reviewed_regions()) == ["000000.npz", "000001.npz"]
    _pyramid_consistent(recovered)
    LabelStore.open(tmp_path / "s.ome.zarr")  # idempotent: nothing left to replay
    assert len(_lines(log)) == 2


def test_a_commit_after_a_torn_line_starts_a_line_of_its_own(store, tmp_path):
    store.write_region(0, 0, np.ones((8, 8), np.int32))
    log = _log(tmp_path)
    with open(log, "ab") as f:
        f.write(b'{"bounds": [1, 2')  # a write cut off by a full disk; the program carries on
    store.write_region(20, 20, np.full((8, 8), 2, np.int32))
    assert [r["patch"] for r in store.reviewed_regions()] == ["000000.npz", "000001.npz"]
    ro = LabelStore.open(tmp_path / "s.ome.zarr", read_only=True)  # reading repairs nothing
    assert b'{"bounds": [1, 2\n' in log.read_bytes() and len(ro.reviewed_regions()) == 2
    LabelStore.open(tmp_path / "s.ome.zarr")
    assert len(_lines(log)) == 2


def test_a_record_glued_onto_a_torn_line_by_older_versions_is_recovered(store, tmp_path):
    store.write_region(0, 0, np.ones((8, 8), np.int32))
    store.write_region(20, 20, np.full((8, 8), 2, np.int32))
    log = _log(tmp_path)
    first, second = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(first[:30] + second)  # what the old append did after a torn line
    LabelStore.open(tmp_path / "s.ome.zarr")
    assert [r["patch"] for r in _lines(log)] == ["000001.npz", "000000.npz"]  # B salvaged, A replayed
    assert (log.parent / "reviewed.jsonl.damaged").read_bytes() == first[:30] + b"\n"


def test_temporary_files_of_killed_journal_writes_are_removed_on_open(store, tmp_path):
    store.write_region(0, 0, np.ones((8, 8), np.int32))
    reviews = tmp_path / "s.ome.zarr" / "glandseg_reviews"
    (reviews / ".000001.npz.k2j3.tmp").mkdir()
    (reviews / ".000001.npz.k2j3.tmp" / "000001.npz").write_bytes(b"PK\x03\x04 half a patch")
    (reviews / ".reviewed.jsonl.x9.tmp").write_text("{")
    LabelStore.open(tmp_path / "s.ome.zarr")
    assert sorted(p.name for p in reviews.iterdir()) == ["000000.npz", "reviewed.jsonl"]


def test_the_repair_is_left_to_the_writer_that_holds_the_lock(store, tmp_path, monkeypatch):
    """A viewer opening the store while another process commits must not replay its commit."""
    monkeypatch.setattr(LabelStore, "_apply", lambda self, record, data: None)  # saved, not applied
    store.write_region(10, 10, np.full((8, 8), 5, np.int32))
    monkeypatch.undo()
    with other_writer(tmp_path / "s.ome.zarr"):
        seen = LabelStore.open(tmp_path / "s.ome.zarr")
        assert seen.read_region(10, 10, 8, 8).max() == 0 and seen.reviewed_regions() == []
    repaired = LabelStore.open(tmp_path / "s.ome.zarr")  # the writer is gone (stale lock)
    assert (repaired.read_region(10, 10, 8, 8) == 5).all() and len(repaired.reviewed_regions()) == 1


_COMMITTER = """
import json, sys, time
from pathlib import Path
import numpy as np
from napari_glandseg.labels.store import LabelStore
path, row, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
store = LabelStore.open(path)
while not go.exists():
    time.sleep(0.005)
for k in range(16):
    value = row * 100 + k + 1
    try:
        rec = store.write_region(row * 8, k * 16, np.full((8, 16), value, np.int32))
    except Exception as exc:
        print(json.dumps({"value": value, "error": str(exc)}), flush=True)
    else:
        print(json.dumps({"value": value, "patch": rec["patch"], "bounds": rec["bounds"]}), flush=True)
"""


def test_commits_from_several_processes_are_all_kept(tmp_path):
    """Every write_region that returns is in the journal and in the labels (the lock orders them;
    a writable open meanwhile repairs nothing under a live commit)."""
    import subprocess

    path = tmp_path / "s.ome.zarr"
    LabelStore.create(path, (64, 256), chunk_px=64, mpp=1.0)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _COMMITTER, str(path), str(row), str(go)],
                              stdout=subprocess.PIPE, text=True) for row in range(3)]
    go.touch()
    done = [json.loads(line) for p in procs for line in p.communicate(timeout=120)[0].splitlines()]
    ok = [d for d in done if "patch" in d]
    assert len(ok) == 48, [d for d in done if "error" in d]
    store = LabelStore.open(path, read_only=True)
    logged = store.reviewed_regions()
    assert sorted(r["patch"] for r in logged) == sorted(d["patch"] for d in ok)
    for d in ok:
        y, x, h, w = d["bounds"]
        assert (store.read_region(y, x, h, w) == d["value"]).all(), d
        assert (store.read_patch({"patch": d["patch"]}) == d["value"]).all(), d
