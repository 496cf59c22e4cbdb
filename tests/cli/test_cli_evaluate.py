"""``glandseg evaluate`` on two GlaS testA images with a tiny untrained model."""

from __future__ import annotations

import json
import shutil

import pytest

from napari_glandseg.cli import main


def _two(shared_data, tmp_path):
    src = shared_data / "glas" / "testA"
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        for name in ("testA_1.png", "testA_2.png"):
            shutil.copy(src / sub / name, tmp_path / sub / name)
    return tmp_path / "images", tmp_path / "masks"


def test_evaluate_json(shared_data, tiny_checkpoint, tmp_path, capsys):
    images, masks = _two(shared_data, tmp_path)
    rc = main(["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(tiny_checkpoint),
               "--device", "cpu", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "glandseg_tiny"
    assert [r["image"] for r in result["per_image"]] == ["testA_1.png", "testA_2.png"]
    for key in ("pixel_dice", "pixel_iou", "object_f1", "object_dice", "object_hausdorff"):
        assert key in result["overall"]
        assert all(key in r for r in result["per_image"])
    assert 0 <= result["overall"]["pixel_dice"] <= 1
    assert result["overall"]["images"] == 2
    rows = result["per_image"]
    pooled = 2 * sum(r["n_tp"] for r in rows) / sum(r["n_pred"] + r["n_true"] for r in rows)
    assert result["overall"]["object_f1_pooled"] == pytest.approx(pooled)


def test_evaluate_table_and_limit(shared_data, tiny_checkpoint, tmp_path, capsys):
    images, masks = _two(shared_data, tmp_path)
    rc = main(["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(tiny_checkpoint),
               "--device", "cpu", "--limit", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "testA_1.png" in out and "testA_2.png" not in out and "mean (1 images)" in out


def test_evaluate_missing_masks(shared_data, tiny_checkpoint, tmp_path, capsys):
    images, masks = _two(shared_data, tmp_path)
    (masks / "testA_2.png").unlink()
    assert main(["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(tiny_checkpoint)]) == 2
    assert "no mask" in capsys.readouterr().err


def test_evaluate_with_tta_averages_the_model_over_symmetries(shared_data, tiny_checkpoint, tmp_path, capsys):
    images, masks = _two(shared_data, tmp_path)
    args = ["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(tiny_checkpoint),
            "--device", "cpu", "--json", "--limit", "1"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--tta"]) == 0
    tta = json.loads(capsys.readouterr().out)
    # what TTA does to the probabilities is tests/model/test_tta.py's; here: the option reaches the run
    assert tta["compute"]["tta"] is True and plain["compute"]["tta"] is False
    assert tta["per_image"][0]["image"] == plain["per_image"][0]["image"]


def test_tta_wraps_the_predictors_model():
    from napari_glandseg.inference.region import get_predictor
    from napari_glandseg.model.tta import TTAModel

    assert isinstance(get_predictor("glandseg_tiny", "cpu", tta=True).model, TTAModel)
    assert not isinstance(get_predictor("glandseg_tiny", "cpu").model, TTAModel)
