"""``glandseg segment`` never mixes up slides in one output folder, and never has two writers on it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/_lock_holder.py

from _lock_holder import other_writer  # noqa: E402
from napari_glandseg.cli import main  # noqa: E402

RUN = ["--mpp", "0.62", "--device", "cpu", "--chunk-px", "64"]


def _image(shared_data, index: int, path):
    """A 256² crop of a real GlaS image saved as PNG at ``path``."""
    src = shared_data / "glas" / "train" / "images" / f"train_{index}.png"
    rgb = np.asarray(Image.open(src).convert("RGB"))[:256, :256]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return path


def _segment(paths, out, ckpt, *extra):
    return main(["segment", *map(str, paths), "--out", str(out), "--model", str(ckpt), *RUN, *extra])


def _summary(folder):
    return json.loads((folder / "summary.json").read_text())


def test_resume_refuses_another_slide_of_the_same_name_and_size(shared_data, tiny_checkpoint, tmp_path, capsys):
    c = _image(shared_data, 1, tmp_path / "C" / "img.png")
    d = _image(shared_data, 2, tmp_path / "D" / "img.png")
    out = tmp_path / "out"
    assert _segment([c], out, tiny_checkpoint) == 0
    capsys.readouterr()
    assert _segment([d], out, tiny_checkpoint) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and str(c) in err and str(d) in err and "pixels differ" in err
    assert _summary(out / "img")["slide"] == str(c)  # C's results stay, named as C's
    # a moved copy of C is the same slide: it resumes with nothing left to do
    moved = tmp_path / "E" / "img.png"
    moved.parent.mkdir()
    shutil.copy(c, moved)
    assert _segment([moved], out, tiny_checkpoint) == 0
    assert _summary(out / "img")["run"]["sessions"][-1]["chunks_run"] == 0
    # starting over replaces the folder with D's results
    assert _segment([d], out, tiny_checkpoint, "--no-resume") == 0
    assert _summary(out / "img")["slide"] == str(d)


def test_same_named_slides_in_one_call_get_their_own_folders(shared_data, tiny_checkpoint, tmp_path, capsys):
    a = _image(shared_data, 1, tmp_path / "A" / "slide.png")
    b = _image(shared_data, 2, tmp_path / "B" / "slide.png")
    out = tmp_path / "out"
    assert _segment([a, b], out, tiny_checkpoint) == 0
    printed = capsys.readouterr().out
    assert "slide-A" in printed and "slide-B" in printed
    assert _summary(out / "slide-A")["slide"] == str(a)
    assert _summary(out / "slide-B")["slide"] == str(b)
    assert not (out / "slide").exists()


@pytest.mark.parametrize("names, folders", [
    (["A/s.svs", "B/s.svs", "C/t.svs"], ["s-A", "s-B", "t"]),
    (["A/x/S.svs", "B/x/s.svs"], ["S-x", "s-x-2"]),
    (["a.ome.tiff", "b/a.ome.tif"], ["a-" , "a-b"]),
])
def test_output_folders_are_distinct(tmp_path, names, folders):
    from napari_glandseg.labels.outputs import output_folders

    got = output_folders([tmp_path / n for n in names])
    expected = [f + tmp_path.name if f.endswith("-") else f for f in folders]
    assert got == expected and len({g.casefold() for g in got}) == len(got)


@pytest.mark.parametrize("held", ["img", "img/labels.ome.zarr"])
def test_a_second_writer_on_the_same_output_is_refused(shared_data, tiny_checkpoint, tmp_path, capsys, held):
    """The CLI locks OUT/<slide>; segment_slide locks the label store (the widgets use it too)."""
    c = _image(shared_data, 1, tmp_path / "C" / "img.png")
    out = tmp_path / "out"
    with other_writer(out / held) as proc:
        assert _segment([c], out, tiny_checkpoint, "--no-resume") == 2
        err = capsys.readouterr().err
        assert f"{out / held}: in use by another writer" in err and f"pid {proc.pid}" in err
    assert not (out / "img" / "summary.json").exists()
    assert _segment([c], out, tiny_checkpoint) == 0  # the holder is gone: its stale lock is taken over
