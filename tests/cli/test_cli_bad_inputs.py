"""The CLI's bad-input corpus: every case is a clear error (exit 2) or a correct result, never a
traceback or a silent success; inputs are checked before the model loads."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/_pyramids.py

from _pyramids import glas_mosaic, write_flat_giant_tiff  # noqa: E402
from napari_glandseg.cli import main  # noqa: E402

NO_MODEL = ["--model", "nosuchmodel"]  # loading it would fail: a case that names it loaded the model first


@pytest.fixture(scope="module")
def files(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    glas = shared_data / "glas" / "train" / "images"
    rgb = np.asarray(Image.open(glas / "train_1.png").convert("RGB"))[:256, :256]
    Image.fromarray(rgb).save(root / "crop.png")  # a PNG says no µm/px
    Image.fromarray(rgb[100:101, 100:101]).save(root / "one_px.png")
    write_flat_giant_tiff(root / "giant.tif", glas_mosaic(shared_data / "glas", 4096, 4096))  # 1e12 px
    write_flat_giant_tiff(root / "big.tif", glas_mosaic(shared_data / "glas", 4096, 4096), side=100_000)
    return root


@pytest.mark.parametrize("argv, message", [
    (["segment", "{cmu}", "--mpp", "inf"], "--mpp (the slides' µm per pixel) must be a µm/px in"),
    (["segment", "{cmu}", "--mpp", "nan"], "--mpp (the slides' µm per pixel) must be a µm/px in"),
    (["segment", "{cmu}", "--chunk-px", "0"], "--chunk-px must be between 16 and 16384"),
    (["segment", "{cmu}", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["segment", "{cmu}", "--region", "5000,5000,100,100"], "lies outside the slide (2220 × 2967 px"),
    (["segment", "{cmu}", "{files}/nothing.svs"], "nothing.svs: no such file"),
    (["segment", "{files}/crop.png"], "crop.png: the file does not say its µm/px; pass --mpp"),
    (["segment", "{files}/giant.tif"], "decodes 1e+12 px (3e+03 GB of RGB): the file stores no lower levels. Refused"),
    (["evaluate", "--images", "{files}", "--masks", "{files}", "--mpp", "inf"], "--mpp (the images' µm per pixel) must be a µm/px in"),
])
def test_bad_inputs_are_refused_before_the_model_loads(cmu_svs, files, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    argv = [a.format(cmu=cmu_svs, files=files) for a in argv]
    argv += ["--out", str(out)] if argv[0] == "segment" else []
    assert main([*argv, *NO_MODEL]) == 2
    err = capsys.readouterr().err
    assert message in err and "nosuchmodel" not in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())  # nothing was written for any slide


def _card(tiny_checkpoint: Path, tmp_path: Path, **changes) -> Path:
    card = json.loads(tiny_checkpoint.with_suffix(".json").read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(card.get(key), dict):
            card[key] = {**card[key], **value}
        else:
            card[key] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(card))
    shutil.copy(tiny_checkpoint, tmp_path / "bad.safetensors")
    return path


@pytest.mark.parametrize("changes, message", [
    ({"mean": "abc"}, "mean must be 3 finite numbers"),
    ({"std": [0.2, 0.2, 0]}, "std must be 3 finite positive numbers"),
    ({"arch": "unet3000"}, "unknown arch 'unet3000'; known: dual_swin_unet"),
    ({"arch_args": {"enc_a": {"patch_size": 4, "embed_dim": 10_000_000, "depths": [1, 1, 1, 1],
                              "num_heads": [1, 2, 4, 8]}}}, "arch_args.enc_a.embed_dim must be an integer in [1, 4096]"),
    ({"arch_args": {"enc_a": {"patch_size": 4, "embed_dim": 4096, "depths": [64, 64, 64, 64],
                              "num_heads": [64, 64, 64, 64]}}}, "parameters"),
    ({"arch_args": {"img_px": 10**7}}, "arch_args.img_px must be an integer in [32, 4096]"),
    ({"tile_px": "384"}, "tile_px must be a multiple of 32"),
    ({"mpp": float("inf")}, "mpp must be 1 finite positive"),
    ({"postprocess": {"gland_threshold": "high"}}, "postprocess.gland_threshold must be a number in [0, 1]"),
])
def test_bad_model_cards_are_clear_errors(cmu_svs, tiny_checkpoint, tmp_path, capsys, changes, message):
    card = _card(tiny_checkpoint, tmp_path, **changes)
    rc = main(["segment", str(cmu_svs), "--out", str(tmp_path / "out"), "--region", "0,0,64,64",
               "--model", str(card), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and f"{card}: not a valid model card" in err and message in err


def test_a_region_of_a_giant_tiff_without_lower_levels_reads_only_around_it(files, tiny_checkpoint, tmp_path):
    """The tissue mask of a region run is made around the region: the junk tiles elsewhere are
    never decoded (before: a whole-slide mask from level 0, past 2.7 GB and no output)."""
    rc = main(["segment", str(files / "big.tif"), "--out", str(tmp_path), "--region", "100,100,400,400",
               "--model", str(tiny_checkpoint), "--device", "cpu"])
    assert rc == 0
    summary = json.loads((tmp_path / "big" / "summary.json").read_text())
    assert summary["slide_shape"] == [100_000, 100_000] and summary["region"]["bbox0"][2] >= 400


def test_a_one_pixel_image_has_no_one_pixel_gland(files, tmp_path):
    """Context read beyond the slide's edge is no tissue: a gland cannot pass the minimum area on it."""
    for out, extra in ((tmp_path / "region", ["--region", "0,0,1,1"]), (tmp_path / "slide", [])):
        assert main(["segment", str(files / "one_px.png"), "--out", str(out), "--mpp", "0.62",
                     "--device", "cpu", *extra]) == 0
        assert json.loads((out / "one_px" / "summary.json").read_text())["glands"] == 0


def test_the_summary_run_block_counts_the_whole_run(files, tiny_checkpoint, tmp_path):
    out = tmp_path / "crop"
    argv = ["segment", str(files / "crop.png"), "--out", str(tmp_path), "--mpp", "0.62", "--chunk-px", "64",
            "--model", str(tiny_checkpoint), "--device", "cpu"]
    assert main(argv) == 0
    first = json.loads((out / "summary.json").read_text())["run"]
    assert first["chunks"] == first["chunks_run"] == 4 and len(first["sessions"]) == 1
    done = out / "labels.ome.zarr" / "glandseg_done"
    for marker in sorted(done.iterdir())[:2]:  # the state a run stopped after two chunks leaves
        marker.unlink()
    assert main(argv) == 0
    run = json.loads((out / "summary.json").read_text())["run"]
    assert run["chunks_run"] == 4 and [s["chunks_run"] for s in run["sessions"]] == [4, 2]
    assert run["model_calls"] == sum(s["model_calls"] for s in run["sessions"])
    assert run["t_total_s"] == pytest.approx(sum(s["t_total_s"] for s in run["sessions"]))
    assert run["chunks_run_unrecorded"] == 0
    (out / "summary.json").unlink()  # a killed session leaves no summary
    sorted(done.iterdir())[0].unlink()
    assert main(argv) == 0
    run = json.loads((out / "summary.json").read_text())["run"]
    assert run["chunks_run"] == 4 and len(run["sessions"]) == 1 and run["chunks_run_unrecorded"] == 3
    assert main([*argv, "--no-resume"]) == 0  # a new run starts a new count
    run = json.loads((out / "summary.json").read_text())["run"]
    assert len(run["sessions"]) == 1 and run["chunks_run_unrecorded"] == 0


def test_evaluate_says_how_it_read_masks_and_takes_a_mask_kind(shared_data, tiny_checkpoint, tmp_path, capsys):
    src = shared_data / "glas" / "testA"
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    shutil.copy(src / "images" / "testA_1.png", images)
    gt = np.asarray(Image.open(src / "masks" / "testA_1.png"))
    soft = np.where(gt > 0, 255, 0).astype(np.uint8)
    soft[:, :-1][(soft[:, :-1] == 0) & (soft[:, 1:] == 255)] = 128  # an anti-aliased edge: 3 values
    Image.fromarray(soft).save(masks / "testA_1.png")
    base = ["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(tiny_checkpoint),
            "--device", "cpu"]
    assert main(base) == 0
    assert "masks read: 1 as instance maps (each value a gland) (--mask-kind chooses)" in capsys.readouterr().out
    assert main([*base, "--mask-kind", "binary", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["masks"] == {"binary": 1} and result["per_image"][0]["mask"] == "binary"
    from scipy import ndimage as ndi

    assert result["per_image"][0]["n_true"] == ndi.label(soft > 0)[1]


def _in_small_disk(script: str, tmp_path: Path) -> str:
    """Run ``script`` (sh) with $DISK a fresh 4 MiB tmpfs, in a mount namespace of its own."""
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=4m tmpfs {disk}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {probe.stderr.strip()}")
    full = f"mount -t tmpfs -o size=4m tmpfs {disk} && cd {disk} && export DISK={disk} && {script}"
    done = subprocess.run(["unshare", "-rm", "sh", "-c", full], capture_output=True, text=True, timeout=600)
    return done.stdout + done.stderr


def test_a_full_or_read_only_output_disk_is_a_clear_error_and_a_rerun_resumes(files, tiny_checkpoint, tmp_path):
    glandseg = f"{sys.executable} -m napari_glandseg.cli segment {files / 'crop.png'} --mpp 0.62 " \
               f"--chunk-px 32 --model {tiny_checkpoint} --device cpu --out $DISK/out"
    log = _in_small_disk(
        "head -c $(( $(df -B1 --output=avail . | tail -1) - 40000 )) /dev/zero > filler; "
        f"{glandseg}; echo RC1=$?; rm filler; {glandseg}; echo RC2=$?; cat $DISK/out/crop/summary.json; "
        f"mount -o remount,ro $DISK; {glandseg} --no-resume; echo RC3=$?", tmp_path)
    assert "Traceback" not in log, log
    assert "RC1=2" in log and "no space left on the device" in log and "free)" in log, log
    assert "the label pyramid needs up to" in log and "run the same command again: it resumes" in log, log
    assert "RC2=0" in log and '"glands"' in log, log
    assert "RC3=2" in log and "out/crop: cannot write the lock file" in log and "Read-only file system" in log, log
