"""``glandseg finetune`` on real RINGS prostate tiles (CC BY 4.0, Salvi et al. 2021,
doi:10.17632/h8bdwrtnr5.1) with a tiny model; the result loads in ``segment`` and ``evaluate``;
bad inputs get one clear error before training starts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from napari_glandseg.cli import main

RINGS_MPP = "2.72"
#: Tiny, quick runs: 64-px crops, two steps, one thread, no replay (the tiny model has no data).
QUICK = ["--crop-px", "64", "--batch-size", "2", "--max-steps", "2", "--threads", "1", "--device", "cpu", "--no-replay"]


@pytest.fixture
def rings(shared_data, tmp_path):
    """Two real RINGS gland tiles (images/ + masks/) in a fresh folder."""
    src = shared_data / "rings" / "glands"
    names = sorted(p.name for p in (src / "images").glob("*.png"))[:2]
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        for n in names:
            shutil.copy(src / sub / n, tmp_path / sub / n)
    return tmp_path / "images", tmp_path / "masks"


def _finetune(images, masks, model, out, *extra):
    return main(["finetune", "--images", str(images), "--masks", str(masks), "--mpp", RINGS_MPP,
                 "--model", str(model), "--out", str(out), *QUICK, *extra])


def test_finetune_on_rings_tiles_then_segment_and_evaluate_load_it(rings, tiny_checkpoint, tmp_path, capsys):
    images, masks = rings
    out = tmp_path / "prostate"
    assert _finetune(images, masks, tiny_checkpoint, out, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == str(out / "model.safetensors") and result["steps"] == 2
    assert {"object_f1", "pixel_dice"} <= set(result["before"]) and result["after"]["images"] == 2
    assert any("replay" in w for w in result["warnings"]) is False  # --no-replay: nothing to warn about
    card = json.loads((out / "model.json").read_text())
    assert card["name"] == "prostate" and card["provenance"]["corrections"][0]["mpp"] == 2.72

    model = str(out / "model.safetensors")
    assert main(["evaluate", "--images", str(images), "--masks", str(masks), "--mpp", RINGS_MPP, "--model", model,
                 "--device", "cpu", "--limit", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "prostate"
    tile = sorted(images.iterdir())[0]
    seg_out = tmp_path / "seg"
    assert main(["segment", str(tile), "--mpp", RINGS_MPP, "--model", model, "--out", str(seg_out),
                 "--region", "0,0,160,160", "--device", "cpu"]) == 0
    assert (seg_out / tile.stem / "summary.json").exists()


def _one_error(capsys) -> str:
    # progress lines share stderr (stdout stays for results): exactly one error line among them
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert len(err) == 1 and err[0].startswith("glandseg finetune: error:"), err
    return err[0]


def test_bad_inputs_get_one_clear_error_before_training(rings, tiny_checkpoint, tmp_path, capsys):
    images, masks = rings
    out = tmp_path / "never"
    first = sorted(masks.iterdir())[0]

    first.rename(masks / "other.png")  # mismatched names
    assert _finetune(images, masks, tiny_checkpoint, out) == 2
    assert "other" in _one_error(capsys)
    (masks / "other.png").rename(first)

    mask = np.asarray(Image.open(first))
    Image.fromarray(np.zeros_like(mask)).save(first)  # an empty mask
    assert _finetune(images, masks, tiny_checkpoint, out) == 2
    line = _one_error(capsys)
    assert "empty" in line and first.name in line

    Image.fromarray(mask[:100, :120]).save(first)  # the wrong size
    assert _finetune(images, masks, tiny_checkpoint, out) == 2
    assert "120×100" in _one_error(capsys)
    Image.fromarray(mask).save(first)

    package = tmp_path / "pkg"  # a training package whose regions were never reviewed
    for sub in ("images", "masks", "valid"):
        (package / sub).mkdir(parents=True)
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(package / "images" / "r.png")
    Image.fromarray(np.zeros((64, 64), np.uint16)).save(package / "masks" / "r.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(package / "valid" / "r.png")
    (package / "manifest.json").write_text(json.dumps({
        "format": "glandseg-training-package", "version": 1, "mpp": 1.24,
        "regions": [{"name": "r", "image": "images/r.png", "mask": "masks/r.png", "valid": "valid/r.png"}]}))
    assert main(["finetune", "--package", str(package), "--model", str(tiny_checkpoint), "--out", str(out), *QUICK]) == 2
    assert "no reviewed regions" in _one_error(capsys)

    assert main(["finetune", "--images", str(images), "--model", str(tiny_checkpoint), "--out", str(out)]) == 2
    assert "together" in _one_error(capsys)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["images", "masks", "pkg"]


def test_replay_folders_given_by_option_or_environment(rings, tiny_checkpoint, tmp_path, capsys, monkeypatch,
                                                       shared_data):
    """``--replay`` of a GlaS-style folder trains; a folder that is not there is one clear error."""
    images, masks = rings
    quick = [q for q in QUICK if q != "--no-replay"]
    glas = shared_data / "glas" / "train"
    assert main(["finetune", "--images", str(images), "--masks", str(masks), "--mpp", RINGS_MPP, "--model",
                 str(tiny_checkpoint), "--out", str(tmp_path / "ok"), *quick, "--replay", f"{glas}@0.62", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["replay_after"]["images"] > 0
    args = ["finetune", "--images", str(images), "--masks", str(masks), "--mpp", RINGS_MPP, "--model",
            str(tiny_checkpoint), "--out", str(tmp_path / "never"), *quick]
    assert main([*args, "--replay", str(tmp_path / "missing")]) == 2
    assert "missing: replay data must be a folder" in _one_error(capsys)
    monkeypatch.setenv("GLANDSEG_REPLAY_DATA", str(tmp_path / "gone"))
    assert main(args) == 2
    assert "gone: $GLANDSEG_REPLAY_DATA must be a folder" in _one_error(capsys)
    assert main([*args, "--no-replay", "--lr", "inf"]) == 2
    assert "learning rate" in _one_error(capsys)
    assert main([*[a if a != RINGS_MPP else "1e9" for a in args], "--no-replay"]) == 2
    assert "--mpp (the images' µm per pixel) must be a µm/px in" in _one_error(capsys)
    package = tmp_path / "pkg"  # a package that names a file outside itself
    for sub in ("images", "masks", "valid"):
        (package / sub).mkdir(parents=True)
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(package / "images" / "r.png")
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(package / "valid" / "r.png")
    (package / "manifest.json").write_text(json.dumps({
        "format": "glandseg-training-package", "version": 1, "mpp": 2.72,
        "regions": [{"name": "r", "image": "images/r.png", "mask": str(sorted(masks.iterdir())[0]),
                     "valid": "valid/r.png"}]}))
    assert main(["finetune", "--package", str(package), "--model", str(tiny_checkpoint),
                 "--out", str(tmp_path / "never"), *QUICK]) == 2
    assert "lies outside the package" in _one_error(capsys)
    assert not (tmp_path / "never").exists()


def test_out_a_symlink_gets_the_model_and_a_full_disk_is_one_line(rings, tiny_checkpoint, tmp_path, capsys):
    """``--out`` a link to an empty folder: the model lands in that folder. A write that fails (a
    file size limit stands in for a full disk) is one error line and leaves nothing behind."""
    import resource
    import signal
    import subprocess
    import sys

    images, masks = rings
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert _finetune(images, masks, tiny_checkpoint, tmp_path / "link") == 0
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "model.safetensors").is_file()
    capsys.readouterr()

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), no signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    out = tmp_path / "out" / "model"
    cmd = [sys.executable, "-m", "napari_glandseg.cli", "finetune", "--images", str(images), "--masks", str(masks),
           "--mpp", RINGS_MPP, "--model", str(tiny_checkpoint), "--out", str(out), *QUICK]
    proc = subprocess.run(cmd, preexec_fn=small_files, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if "error" in line or "Traceback" in line]
    assert proc.returncode == 2 and len(errors) == 1 and "cannot write" in errors[0], proc.stderr[-2000:]
    assert list((tmp_path / "out").iterdir()) == []
