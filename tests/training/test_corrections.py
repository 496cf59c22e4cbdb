"""Fine-tuning on corrections (the engine of ``glandseg finetune`` and the viewer's button):
held-back validation, replay sources, the atomic output folder, cancel."""

from __future__ import annotations

import dataclasses
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_glandseg.errors import Cancelled, GlandsegError
from napari_glandseg.model import create_model, load_model, save_checkpoint
from napari_glandseg.train.corrections import finetune_on_corrections
from napari_glandseg.train.corrections_data import (
    ImageFolders,
    hold_back,
    merge_rects,
    mix,
    replay_sources,
)
from napari_glandseg.train.corrections_settings import REPLAY_ENV, CorrectionSettings
from napari_glandseg.train.data import Sample

#: Tiny runs: the tiny preset, 64-px crops, fp32, one thread, a couple of steps.
TINY = CorrectionSettings(minutes=5, max_steps=2, crop_px=64, batch_size=2, amp=False, threads=1, device="cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    weights, _ = save_checkpoint(create_model("glandseg_tiny"), tmp_path_factory.mktemp("tiny") / "tiny")
    return weights


@pytest.fixture
def glas_pairs(mini_glas) -> ImageFolders:
    return ImageFolders(mini_glas / "images", mini_glas / "masks", 0.62)


def _sample(name: str, shape=(200, 300)) -> Sample:
    labels = np.zeros(shape, np.int32)
    labels[20:80, 30:120] = 1
    return Sample(name, np.zeros((*shape, 3), np.uint8), labels, np.ones(shape, bool))


def test_a_few_images_are_split_in_strips_that_never_overlap():
    samples = [_sample("a"), _sample("b", (300, 120))]
    train, val = hold_back(samples, 0.2, seed=0)
    assert len(train) == len(val) == 2
    for t, v, s in zip(train, val, samples, strict=True):
        assert not (t.valid & v.valid).any()
        np.testing.assert_array_equal(t.valid | v.valid, s.valid)
        assert v.valid.sum() == pytest.approx(0.2 * s.valid.sum(), rel=0.05)
        assert t.image is s.image  # the whole image stays as context; only what counts differs


def test_many_images_hold_back_whole_images():
    samples = [_sample(f"s{i}") for i in range(10)]
    train, val = hold_back(samples, 0.2, seed=0)
    assert len(val) == 2 and len(train) == 8
    assert not {s.name for s in train} & {s.name for s in val}


def test_too_small_a_reviewed_area_is_an_error():
    with pytest.raises(GlandsegError, match="too small"):
        hold_back([_sample("a", (60, 60))], 0.2)


def test_overlapping_commits_merge_into_one_region():
    rects = [(0, 0, 10, 10), (5, 5, 10, 10), (100, 100, 5, 5), (12, 12, 5, 5)]
    groups = sorted(merge_rects(rects), key=len)
    assert [len(g) for g in groups] == [1, 3]


def test_crop_weights_give_replay_its_share():
    user = [_sample("a"), _sample("b")]
    replay = [_sample(f"r{i}") for i in range(5)]
    replay[0].weight = 8.0
    mixed = mix(user, replay, 0.4)
    assert sum(s.weight for s in mixed[:2]) == pytest.approx(0.6)
    assert sum(s.weight for s in mixed[2:]) == pytest.approx(0.4)
    assert mixed[2].weight == pytest.approx(8 * mixed[3].weight)


def test_replay_comes_from_the_card_then_the_environment(mini_glas, monkeypatch):
    monkeypatch.delenv(REPLAY_ENV, raising=False)
    warnings: list[str] = []
    prov = {"data": [str(mini_glas), {"path": "/nowhere/rings", "mpp": 2.72, "weight": 8}],
            "config": {"data_mpp": 0.62}}
    [src] = replay_sources(prov, warn=warnings.append)
    assert src.path == mini_glas.resolve() and src.mpp == 0.62
    assert len(warnings) == 1 and "/nowhere/rings" in warnings[0]

    monkeypatch.setenv(REPLAY_ENV, f"{mini_glas}@1.24@3")
    [src] = replay_sources(prov)
    assert (src.mpp, src.weight) == (1.24, 3.0)
    monkeypatch.setenv(REPLAY_ENV, "none")
    assert replay_sources(prov) == []
    assert replay_sources({}, replay=[]) == []


def test_finetune_writes_a_loadable_model_with_its_provenance(tiny, glas_pairs, mini_glas, tmp_path):
    messages = []
    result = finetune_on_corrections(
        str(tiny), out_dir=tmp_path / "ft", folders=[glas_pairs], replay=[str(mini_glas)], settings=TINY,
        progress=lambda done, total, msg: messages.append((done, total, msg)))
    assert sorted(p.name for p in (tmp_path / "ft").iterdir()) == ["model.json", "model.safetensors", "training_log.jsonl"]
    assert [p.name for p in tmp_path.iterdir()] == ["ft"]  # no work folder left behind
    model = load_model(tmp_path / "ft" / "model.safetensors")
    prov = model.card.provenance
    assert model.card.name == "ft" and result.steps == prov["steps"] == 2
    assert prov["fine_tuned_from"]["source"] == str(tiny) and len(prov["fine_tuned_from"]["sha256"]) == 64
    assert prov["held_back"]["before"] == result.before and prov["held_back"]["after"] == result.after
    assert prov["compute"]["precision"] == "fp32" and prov["compute"]["device"] == "cpu"  # the suite fixes fp32
    assert prov["replay"]["images"] > 0 and result.replay_after is not None
    assert prov["data"][0]["path"] == str(mini_glas.resolve())  # a later fine-tune replays the same data
    assert {"object_f1", "pixel_dice", "object_dice"} <= set(result.after)
    calibration = prov["postprocess_calibration"]  # chosen on the held-back corrections (or skipped)
    assert model.card.postprocess == calibration["chosen"]
    dones = [d for d, _, _ in messages]
    assert dones == sorted(dones) and dones[-1] == messages[-1][1]
    assert any("step 2" in m for _, _, m in messages)


def test_cancel_leaves_no_model_and_no_work_folder(tiny, glas_pairs, tmp_path):
    cancel = threading.Event()

    def progress(done, total, message):
        if "step" in message:
            cancel.set()

    settings = dataclasses.replace(TINY, max_steps=None)
    with pytest.raises(Cancelled):
        finetune_on_corrections(str(tiny), out_dir=tmp_path / "ft", folders=[glas_pairs], replay=[],
                                settings=settings, progress=progress, cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_refused_before_anything_loads(tiny, mini_glas, tmp_path):
    masks = tmp_path / "masks"
    shutil.copytree(mini_glas / "masks", masks)
    first = sorted(masks.iterdir())[0]
    first.rename(masks / "renamed.png")
    with pytest.raises(GlandsegError, match="names do not match.*renamed"):
        finetune_on_corrections(str(tiny), out_dir=tmp_path / "ft", folders=[ImageFolders(mini_glas / "images", masks, 0.62)])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(GlandsegError, match="not an empty folder"):
        finetune_on_corrections(str(tiny), out_dir=tmp_path / "full", folders=[ImageFolders(mini_glas / "images", masks, 0.62)])
    assert not (tmp_path / "ft").exists()


def test_a_diverged_fine_tune_is_an_error_and_saves_nothing(glas_pairs, tmp_path):
    """Weights that are not finite after training: one clear error, no model, no work folder."""
    torch.manual_seed(0)
    model = create_model("glandseg_tiny")
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")  # every loss is NaN: nothing repairs it
    with pytest.raises(GlandsegError, match=r"fine-tuning diverged: .* weights are not finite; nothing was saved"):
        finetune_on_corrections(model, out_dir=tmp_path / "ft", folders=[glas_pairs], replay=[], settings=TINY)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(GlandsegError, match="learning rate"):
        dataclasses.replace(TINY, lr=float("inf"))


def test_a_fine_tune_worse_than_its_base_is_saved_marked_and_says_so(glas_pairs, tmp_path):
    """The trained model scores well on GlaS; a huge learning rate wrecks it: saved, marked, warned."""
    settings = dataclasses.replace(TINY, lr=0.5, calibrate_postprocess=False)
    result = finetune_on_corrections("glandseg_small", out_dir=tmp_path / "ft", folders=[glas_pairs], replay=[],
                                     settings=settings)
    assert result.after["object_f1"] < result.before["object_f1"] and result.worse
    assert any("worse than glandseg_small" in w and "not selected" in w for w in result.warnings)
    assert load_model(tmp_path / "ft", device="cpu").card.provenance["worse_than_base"] is True


def test_colour_masks_keep_every_gland_and_jpeg_masks_are_refused(shared_data, tmp_path):
    """A colour-coded instance mask is read by colour (not its red channel); a JPEG mask is refused."""
    from PIL import Image

    from napari_glandseg.train.corrections_data import check_folders, load_folders

    src = shared_data / "glas" / "train"
    name = "train_1.png"
    instances = np.asarray(Image.open(src / "instances" / name))
    ids = [i for i in np.unique(instances) if i]
    palette = np.zeros((instances.max() + 1, 3), np.uint8)
    for k, i in enumerate(ids):  # two reds only: the red channel alone would merge glands
        palette[i] = (200 if k % 2 else 100, 40 + 20 * k, 255 - 10 * k)
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    Image.open(src / "images" / name).save(tmp_path / "images" / name)
    Image.fromarray(palette[instances]).save(tmp_path / "masks" / name)
    folders = ImageFolders(tmp_path / "images", tmp_path / "masks", 0.62)
    [sample] = load_folders(folders, 0.62, check_folders(folders))
    assert len(np.unique(sample.labels)) - 1 == len(ids) > 2

    jpeg = tmp_path / "masks" / "train_1.jpg"
    Image.fromarray(((instances > 0) * 255).astype(np.uint8)).save(jpeg, quality=75)
    (tmp_path / "masks" / name).unlink()
    with pytest.raises(GlandsegError, match=r"train_1.jpg: a JPEG mask .*save the masks as PNG"):
        check_folders(folders)


@pytest.mark.parametrize("change, message", [
    ({"seed": -1}, "seed"), ({"crop_px": 1048576}, "crop_px"), ({"lr": float("nan")}, "learning rate"),
    ({"lr": 1e39}, "learning rate"),
])
def test_settings_out_of_range_are_one_clear_error(change, message):
    with pytest.raises(GlandsegError, match=message):
        dataclasses.replace(TINY, **change)


def test_work_folders_of_dead_runs_are_removed_and_live_ones_kept(tiny, glas_pairs, tmp_path):
    """A kill while saving leaves a hidden work folder; the next run beside it removes it."""
    import os
    import socket

    host = "".join(c for c in socket.gethostname() if c.isalnum() or c == "-")[:40] or "host"
    dead = tmp_path / f".ft.{host}.999999999.abcd.partial"  # no such process
    live = tmp_path / f".ft.{host}.{os.getpid()}.efgh.partial"  # this very process
    for d in (dead, live):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "big.bin").write_bytes(b"0" * 1000)
    finetune_on_corrections(str(tiny), out_dir=tmp_path / "ft", folders=[glas_pairs], settings=TINY)
    assert not dead.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ft", live.name])


def test_too_few_minutes_to_train_is_an_error_not_an_overrun(tiny, glas_pairs, tmp_path):
    with pytest.raises(GlandsegError, match="leave no time to train.*give at least"):
        finetune_on_corrections(str(tiny), out_dir=tmp_path / "ft", folders=[glas_pairs],
                                settings=dataclasses.replace(TINY, minutes=0.01, max_steps=None))
    assert list(tmp_path.iterdir()) == []
