"""Post-processing profiles per organ (issue 18.3): the card holds them, --organ picks one."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from napari_glandseg.cli import main
from napari_glandseg.model import ModelCard

PROFILES = {"colon": {"min_area_um2": 0.0, "gland_threshold": 0.0}, "prostate": {"min_area_um2": 1e12}}


def test_card_profiles_apply_over_the_postprocess():
    card = ModelCard("m", profiles=PROFILES, organ="colon")
    assert card.for_organ().postprocess["gland_threshold"] == 0.0 and card.for_organ().organ == "colon"
    prostate = card.for_organ("prostate")
    assert prostate.postprocess["min_area_um2"] == 1e12 and prostate.postprocess["gland_threshold"] == 0.5
    assert ModelCard.from_json(card.to_json()).for_organ("prostate") == prostate
    with pytest.raises(ValueError, match="no post-processing profile for organ 'breast'.*colon, prostate"):
        card.for_organ("breast")
    with pytest.raises(ValueError, match="one post-processing for all"):
        ModelCard("plain").for_organ("colon")
    assert ModelCard("plain").for_organ() == ModelCard("plain")
    with pytest.raises(ValueError, match="profile colon"):
        ModelCard("m", profiles={"colon": {"gland_threshold": 2.0}})
    with pytest.raises(ValueError, match="organ 'lung' has no profile"):
        ModelCard("m", profiles=PROFILES, organ="lung")


@pytest.fixture
def profiled_checkpoint(tmp_path):
    from napari_glandseg.model import create_model, save_checkpoint

    torch.manual_seed(0)
    model = create_model("glandseg_tiny")
    weights, _ = save_checkpoint(model, tmp_path / "tiny", card=model.card.replace(profiles=PROFILES, organ="colon"))
    return weights


def test_evaluate_uses_the_organ_asked_for(shared_data, profiled_checkpoint, tmp_path, capsys):
    for sub in ("images", "instances"):
        (tmp_path / sub).mkdir()
        shutil.copy(shared_data / "glas" / "testA" / sub / "testA_1.png", tmp_path / sub / "testA_1.png")
    args = ["evaluate", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "instances"),
            "--model", str(profiled_checkpoint), "--device", "cpu", "--json", "--precision", "fp32", "--threads", "1"]
    runs = {}
    for organ in ("colon", "prostate"):
        assert main([*args, "--organ", organ]) == 0
        runs[organ] = json.loads(capsys.readouterr().out)
    assert runs["colon"]["compute"]["organ"] == "colon" and runs["colon"]["compute"]["precision"] == "fp32"
    assert runs["colon"]["per_image"][0]["n_pred"] >= 1  # threshold 0: everything is gland
    assert runs["prostate"]["per_image"][0]["n_pred"] == 0  # nothing is 10⁶ mm²
    assert main([*args, "--organ", "breast"]) != 0
    err = capsys.readouterr().err
    assert "breast" in err and "Traceback" not in err
