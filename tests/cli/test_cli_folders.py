"""One reader of image/mask folders: a folder ``glandseg evaluate`` accepts, ``glandseg finetune``
and the training scripts accept too, and a bad folder gets the same error through each door."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_glandseg.cli import main
from napari_glandseg.errors import GlandsegError
from napari_glandseg.labels.folders import GLAS_MPP
from napari_glandseg.train.corrections_data import ImageFolders, check_folders, load_folders
from napari_glandseg.train.data import load_glas_folder


@pytest.fixture
def varied(shared_data, tmp_path) -> Path:
    """A GlaS-style folder of real crops in the ways people save them: a PNG image with a
    colour-coded instance mask named NAME_anno, a TIFF image with a binary PNG mask."""
    src = shared_data / "glas" / "testA"
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name, image_as in (("testA_1", ".png"), ("testA_2", ".tif")):
        image = np.asarray(Image.open(src / "images" / f"{name}.png").convert("RGB"))[:160, :192]
        instances = np.asarray(Image.open(src / "instances" / f"{name}.png"))[:160, :192]
        Image.fromarray(image).save(tmp_path / "images" / f"{name}{image_as}")
        if image_as == ".png":
            colours = np.random.default_rng(0).integers(40, 255, (int(instances.max()) + 1, 3)).astype(np.uint8)
            colours[0] = 0
            Image.fromarray(colours[instances]).save(tmp_path / "masks" / f"{name}_anno.png")
        else:
            Image.fromarray(((instances > 0) * 255).astype(np.uint8)).save(tmp_path / "masks" / f"{name}.png")
    return tmp_path


def _evaluate(folder: Path, model: Path) -> list[str]:
    return ["evaluate", "--images", str(folder / "images"), "--masks", str(folder / "masks"), "--model", str(model),
            "--device", "cpu", "--json"]


def _finetune(folder: Path, model: Path, out: Path) -> list[str]:
    return ["finetune", "--images", str(folder / "images"), "--masks", str(folder / "masks"), "--model", str(model),
            "--out", str(out), "--device", "cpu", "--no-replay"]


def test_a_folder_evaluate_accepts_the_others_accept(varied, tiny_checkpoint, capsys):
    assert main(_evaluate(varied, tiny_checkpoint)) == 0
    rows = json.loads(capsys.readouterr().out)["per_image"]
    assert [r["image"] for r in rows] == ["testA_1.png", "testA_2.tif"]
    assert [r["mask"] for r in rows] == ["instance", "binary"]

    folders = ImageFolders(varied / "images", varied / "masks", GLAS_MPP)
    tuned = load_folders(folders, GLAS_MPP, check_folders(folders))  # what glandseg finetune trains on
    trained = load_glas_folder(varied, source_mpp=GLAS_MPP, model_mpp=GLAS_MPP)  # training/finetune.py's folders
    for samples in (tuned, trained):
        assert [s.name for s in samples] == ["testA_1", "testA_2"]
        assert [int(s.labels.max() > 0) for s in samples] == [1, 1]
    for a, b in zip(tuned, trained, strict=True):
        np.testing.assert_array_equal(a.labels, b.labels)  # read the same way
    assert len(np.unique(tuned[0].labels)) - 1 == rows[0]["n_true"]  # colours kept apart, as evaluate counts


def _break(folder: Path, how: str) -> None:
    masks = folder / "masks"
    if how == "missing mask":
        (masks / "testA_2.png").unlink()
    elif how == "wrong size":
        Image.fromarray(np.zeros((50, 60), np.uint8) + 255).save(masks / "testA_2.png")
    elif how == "jpeg mask":
        shutil.move(masks / "testA_2.png", masks / "testA_2.jpg")
        Image.open(masks / "testA_2.jpg").convert("L").save(masks / "testA_2.jpg", format="JPEG")


@pytest.mark.parametrize("how, says", [
    ("missing mask", r"no mask for 1 image\(s\) in \S*masks: \['testA_2.tif'\]"),
    ("wrong size", r"testA_2.png: the mask is 60×50 px but testA_2.tif is 192×160"),
    ("jpeg mask", r"testA_2.jpg: a JPEG mask"),
])
def test_a_bad_folder_gets_the_same_error_through_each_door(varied, tiny_checkpoint, tmp_path, capsys, how, says):
    _break(varied, how)
    errors = []
    assert main(_evaluate(varied, tiny_checkpoint)) == 2
    errors.append(capsys.readouterr().err.strip().splitlines()[-1].split("error: ", 1)[1])
    assert main(_finetune(varied, tiny_checkpoint, tmp_path / "never")) == 2
    errors.append(capsys.readouterr().err.strip().splitlines()[-1].split("error: ", 1)[1])
    with pytest.raises(GlandsegError) as training:
        load_glas_folder(varied, source_mpp=GLAS_MPP, model_mpp=GLAS_MPP)
    errors.append(str(training.value))
    assert errors[0] == errors[1] == errors[2], errors
    assert re.search(says, errors[0]), errors[0]
    assert not (tmp_path / "never").exists()
