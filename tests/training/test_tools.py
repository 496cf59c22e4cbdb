"""convert_checkpoint.py, evaluate.py, compare_runs.py, and the shipped default model on a GlaS testA image."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from napari_glandseg.model import create_model, load_checkpoint, save_checkpoint
from napari_glandseg.model.registry import bundled_weights_dir
from training import compare_runs, convert_checkpoint, evaluate, ship_model, tune_postprocess


def test_convert_unwraps_and_round_trips(tmp_path, capsys):
    model = create_model("glandseg_tiny")
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3},
               tmp_path / "old.pth")
    assert convert_checkpoint.main([str(tmp_path / "old.pth"), "glandseg_tiny", str(tmp_path / "new"),
                                    "--mpp", "0.5"]) == 0
    loaded = load_checkpoint(tmp_path / "new.safetensors")
    assert loaded.card.mpp == 0.5 and loaded.card.provenance["converted_from"] == "old.pth"
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_convert_refuses_wrong_shapes_and_code(tmp_path, capsys):
    torch.save(create_model("glandseg_tiny").state_dict(), tmp_path / "tiny.pt")
    assert convert_checkpoint.main([str(tmp_path / "tiny.pt"), "glandseg_small", str(tmp_path / "x")]) == 2
    assert "do not fit" in capsys.readouterr().err

    class Evil:  # any pickled object that is not plain data must be refused by weights_only
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"w": Evil()}, tmp_path / "evil.pt")
    assert convert_checkpoint.main([str(tmp_path / "evil.pt"), "glandseg_tiny", str(tmp_path / "y")]) == 2
    assert "weights-only" in capsys.readouterr().err
    assert not (tmp_path / "y.safetensors").exists()


def _two_images(mini_glas, folder):
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for p in sorted((mini_glas / "images").glob("*.png"))[:2]:
        shutil.copy(p, folder / "images")
        shutil.copy(mini_glas / "masks" / p.name, folder / "masks")
    shutil.copy(mini_glas / "Grade.csv", folder)
    return folder


def test_evaluate_writes_per_image_and_overall_json(mini_glas, tmp_path):
    torch.manual_seed(0)
    save_checkpoint(create_model("glandseg_tiny"), tmp_path / "tiny")
    folder = _two_images(mini_glas, tmp_path / "two")
    out = tmp_path / "metrics.json"
    assert evaluate.main([str(tmp_path / "tiny.safetensors"), str(folder), "--mpp", "0.62", "--json", str(out),
                          "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert len(result["per_image"]) == 2 and result["overall"]["images"] == 2
    for key in ("pixel_dice", "pixel_iou", "object_f1", "object_dice", "object_hausdorff", "object_f1_pooled"):
        assert key in result["overall"]
    assert 0.0 <= result["overall"]["pixel_dice"] <= 1.0
    grades = result["by_grade"]  # mini_glas has 2 benign + 2 malignant images and its Grade.csv
    assert sum(g["images"] for g in grades.values()) == 2


def test_ship_writes_fp16_weights_with_test_metrics_and_a_model_card(mini_glas, tmp_path):
    from safetensors import safe_open

    torch.manual_seed(0)
    save_checkpoint(create_model("glandseg_tiny"), tmp_path / "trained")
    folder = _two_images(mini_glas, tmp_path / "two")
    out = tmp_path / "weights"
    out.mkdir()
    result = ship_model.ship(tmp_path / "trained.safetensors", folder, name="glandseg_tiny", out_dir=out)
    with safe_open(out / "glandseg_tiny.safetensors", "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    card = json.loads((out / "glandseg_tiny.json").read_text())
    assert card["provenance"]["test"]["images"] == 2
    assert card["provenance"]["test"]["pixel_dice"] == pytest.approx(result["overall"]["pixel_dice"])
    assert "research use only" in card["provenance"]["license"]
    text = (out / "MODEL_CARD.md").read_text()
    assert "glandseg_tiny" in text and f"{result['overall']['pixel_dice']:.3f}" in text
    assert load_checkpoint(out / "glandseg_tiny.safetensors").card.name == "glandseg_tiny"


def test_shipped_default_model_segments_glas(shared_data):
    """The bundled glandseg_small on a GlaS testA image (never used in training): pixel Dice > 0.85."""
    weights = bundled_weights_dir() / "glandseg_small.safetensors"
    assert weights.exists(), f"the default model must ship with the package: {weights}"
    from PIL import Image

    from napari_glandseg.labels.metrics import pixel_dice
    from napari_glandseg.model import load_model

    model = load_model(device="cpu")
    name = "testA_2.png"
    rgb = np.asarray(Image.open(shared_data / "glas" / "testA" / "images" / name).convert("RGB"))
    gt = np.asarray(Image.open(shared_data / "glas" / "testA" / "masks" / name))
    from napari_glandseg.inference import segment_image

    with torch.inference_mode():
        labels = np.asarray(segment_image(rgb, model, mpp=0.62, device="cpu"))
    assert labels.shape == rgb.shape[:2]
    assert pixel_dice(labels, gt) > 0.85


def test_tune_postprocess_picks_the_best_setting_on_validation_images(mini_glas, tmp_path):
    torch.manual_seed(0)
    save_checkpoint(create_model("glandseg_tiny"), tmp_path / "m")
    pairs = [(p, mini_glas / "masks" / p.name, 0.62, "glas") for p in sorted((mini_glas / "images").glob("*.png"))[:2]]
    grid = {"gland_threshold": (0.3, 0.7), "min_area_um2": (50.0, 5000.0)}
    best, results = tune_postprocess.tune(tmp_path / "m.safetensors", pairs, grid=grid)
    assert len(results) == 4
    assert best["object_f1"] == max(r["object_f1"] for r in results)
    assert {(r["params"]["gland_threshold"], r["params"]["min_area_um2"]) for r in results} == {
        (0.3, 50.0), (0.3, 5000.0), (0.7, 50.0), (0.7, 5000.0)}


def test_validation_pairs_follow_the_training_split(tmp_path, shared_data):
    config = tmp_path / "c.yaml"
    rings = shared_data / "rings" / "glands"
    config.write_text(f"data: [{shared_data / 'glas' / 'train'}, {{path: {rings}, mpp: 2.72}}]\n"
                      "val_fraction: 0.15\nseed: 0\n")
    pairs = tune_postprocess.validation_pairs(config)
    assert len(pairs) == 13 + 1 and all(img.exists() and mask.exists() for img, mask, _, _ in pairs)
    assert not any("testA" in str(img) for img, *_ in pairs)
    assert {mpp for *_, mpp, _ in pairs} == {0.62, 2.72}, "each folder keeps its own µm/px"


def test_compare_runs_counts_time_across_a_resumed_session(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("batch_size: 8\n")
    records = [{"time_s": 60.0, "step": 10, "loss": 1.0}, {"time_s": 120.0, "step": 20, "loss": 0.8},
               {"time_s": 125.0, "step": 20, "event": "validation", "object_f1": 0.5, "pixel_dice": 0.8},
               {"time_s": 3.0, "event": "start", "step": 20},  # resumed: its clock starts again
               {"time_s": 63.0, "step": 30, "loss": 0.6},
               {"time_s": 70.0, "step": 30, "event": "validation", "object_f1": 0.6, "pixel_dice": 0.85}]
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    assert compare_runs.main([str(run), "--every", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_minute = {r["minutes"]: r for r in rows if not r.get("summary")}
    assert by_minute[1.0]["step"] == 10 and by_minute[2.0]["object_f1"] is None
    # the second session's records come after the first's 125 s: step 30 at 188 s, its validation at 195 s
    assert by_minute[3.0]["step"] == 20 and by_minute[3.0]["object_f1"] == 0.5
    summary = rows[-1]
    assert summary["crops_per_s"] == round(30 * 8 / 188.0, 2) and summary["best_at_minutes"] == round(195 / 60, 1)
    with pytest.raises(SystemExit, match="no log.jsonl"):
        compare_runs.main([str(tmp_path)])


def test_evaluate_scores_at_the_organs_profile(mini_glas, tmp_path):
    torch.manual_seed(0)
    model = create_model("glandseg_tiny")
    nothing = {**model.card.postprocess, "min_area_um2": 1e12}  # the card's own: no gland survives
    everything = {**model.card.postprocess, "gland_threshold": 0.0, "border_threshold": 1.0, "min_area_um2": 0.0}
    save_checkpoint(model, tmp_path / "tiny", card=model.card.replace(postprocess=nothing, profiles={"colon": everything}))
    folder = _two_images(mini_glas, tmp_path / "two")
    runs = {}
    for organ in (None, "colon"):
        out = tmp_path / f"{organ}.json"
        assert evaluate.main([str(tmp_path / "tiny.safetensors"), str(folder), "--json", str(out), "--device", "cpu",
                              *(["--organ", organ] if organ else [])]) == 0
        runs[organ] = json.loads(out.read_text())
    assert runs["colon"]["organ"] == "colon"
    assert all(r["n_pred"] == 0 for r in runs[None]["per_image"])
    assert all(r["n_pred"] >= 1 for r in runs["colon"]["per_image"])
