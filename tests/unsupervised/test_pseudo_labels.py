"""Proposals as a training package: the supervised loader reads it, the held-out images stay out,
the band around every outline is left out of the loss, and no mask is ever read."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from napari_glandseg.errors import GlandsegError
from napari_glandseg.labels.folders import split_names, validation_names
from napari_glandseg.unsupervised import ClusterConfig, ProposalConfig
from napari_glandseg.unsupervised.pseudo_labels import PROPOSAL_LABELS, selective_valid, write_proposal_package

FAST = ProposalConfig(cluster=ClusterConfig(iterations=20))


def test_selective_valid_leaves_out_a_band_on_both_sides_of_each_outline():
    labels = np.zeros((60, 60), np.int32)
    labels[10:30, 10:30] = 1
    labels[10:30, 30:50] = 2  # touching the first
    valid = selective_valid(labels, mpp=1.0, band_um=3.0)
    # pixel centres nearer than 3 µm (3 px) to an outline are left out, those farther are kept
    assert not valid[20, 27:33].any() and valid[20, 26] and valid[20, 33]  # between the two glands
    assert not valid[7:13, 20].any() and valid[6, 20] and valid[13, 20]  # across the outer outline
    assert valid[20, 20] and valid[20, 40] and valid[2, 2] and valid[50, 50]  # cores and far background
    assert selective_valid(labels, 1.0, 0.0).all() and selective_valid(np.zeros((5, 5), np.int32), 1.0, 3.0).all()


def test_package_of_proposals_trains_and_holds_out_validation_images(shared_data, tmp_path):
    from napari_glandseg.train.data import load_training_package

    folder = tmp_path / "glas"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    names = ["train_1", "train_2", "train_3", "train_4"]
    for n in names:
        shutil.copy(shared_data / "glas" / "train" / "images" / f"{n}.png", folder / "images")
        # masks that are all gland: were they read, the proposals could not differ from them
        h, w = np.asarray(Image.open(folder / "images" / f"{n}.png")).shape[:2]
        Image.fromarray(np.full((h, w), 255, np.uint8)).save(folder / "masks" / f"{n}.png")
    held = validation_names(folder, 0.25, seed=0)
    assert held == split_names(names, 0.25, 0)[1] and len(held) == 1
    manifest = write_proposal_package(tmp_path / "pkg", [folder], config=FAST, holdout=0.25, band_um=3.0)
    assert manifest["labels"] == PROPOSAL_LABELS and manifest["mpp"] == FAST.work_mpp
    assert sorted(r["name"] for r in manifest["regions"]) == sorted(f"glas_{n}" for n in names if n not in held)
    assert json.loads((tmp_path / "pkg" / "manifest.json").read_text())["regions"] == manifest["regions"]
    samples = load_training_package(tmp_path / "pkg", model_mpp=FAST.work_mpp)
    assert len(samples) == 3
    for s in samples:
        assert s.image.shape[:2] == s.labels.shape == s.valid.shape
        assert s.labels.max() >= 2  # glands, not the all-gland masks
        assert 0.5 < s.valid.mean() < 0.99  # the bands are left out, most of the image is not
        assert (s.labels > 0).mean() < 0.9


def test_bad_sources_are_errors_that_leave_nothing_and_spare_a_users_folder(tmp_path, shared_data):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GlandsegError, match="no image"):
        write_proposal_package(tmp_path / "pkg", [tmp_path / "empty"], config=FAST)
    assert not (tmp_path / "pkg").exists()
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(tiny / "speck.png")
    with pytest.raises(GlandsegError, match="tiny_speck: .*too small"):
        write_proposal_package(tmp_path / "pkg", [tiny], config=FAST)
    with pytest.raises(GlandsegError, match="nothing else"):
        write_proposal_package(tmp_path / "pkg", [{"path": str(tiny), "mmp": 2.0}], config=FAST)
    mine = tmp_path / "mine"  # not a package: never replaced
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(GlandsegError, match="not empty"):
        write_proposal_package(mine, [tiny], config=FAST)
    assert (mine / "notes.txt").read_text() == "mine"


def test_self_training_package_holds_the_labellers_glands_and_names_it(shared_data, tmp_path):
    from napari_glandseg.train.data import load_training_package
    from napari_glandseg.unsupervised.pseudo_labels import SELF_TRAINING_LABELS

    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(shared_data / "glas" / "train" / "images" / "train_1.png", folder)
    seen = []

    def labeller(rgb, mpp):  # two square "glands" where the labeller puts them
        seen.append((rgb.shape, mpp))
        labels = np.zeros(rgb.shape[:2], np.int32)
        labels[20:80, 20:80], labels[100:160, 20:80] = 1, 2
        return labels

    manifest = write_proposal_package(tmp_path / "pkg", [folder], config=FAST, band_um=0.0, labeller=labeller,
                                      labeller_info={"name": "my_unsupervised", "sha256": "ab12"})
    assert manifest["labels"] == SELF_TRAINING_LABELS and manifest["model"] == "my_unsupervised"
    assert manifest["model_sha256"] == "ab12"
    assert len(seen) == 1 and seen[0][1] == FAST.work_mpp
    (sample,) = load_training_package(tmp_path / "pkg", model_mpp=FAST.work_mpp)
    assert sample.labels.shape == seen[0][0][:2] and sample.valid.all()
    assert len(np.unique(sample.labels[20:80, 20:80])) == 1 and len(np.unique(sample.labels[100:160, 20:80])) == 1
    assert sample.labels[50, 50] != sample.labels[130, 50] and sample.labels[50, 50] > 0
    assert (sample.labels > 0).sum() == 2 * 60 * 60


def test_a_model_made_with_labels_cannot_label_a_no_label_package(tmp_path):
    from training import propose_package

    with pytest.raises(SystemExit, match="glandseg_small: its card does not say it was made without labels"):
        propose_package.main(["--out", str(tmp_path / "pkg"), str(tmp_path), "--model", "glandseg_small"])
    assert not (tmp_path / "pkg").exists()
    label, info = propose_package.model_labeller("glandseg_unsupervised", 1)
    assert callable(label) and info["name"] == "glandseg_unsupervised" and len(info["sha256"]) == 64
