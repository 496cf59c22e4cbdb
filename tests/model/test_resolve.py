"""One owner for "which model is this": ``model.resolve`` gives every door (the API, the widgets'
picker, fine-tuning, training, whole-slide runs) the same answer, and ``model/`` imports without
a circle."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import napari_glandseg.model as model_pkg
from napari_glandseg._widgets._models import ModelChoices
from napari_glandseg.errors import GlandsegError
from napari_glandseg.model import create_model, resolve, save_checkpoint
from napari_glandseg.model.registry import DEFAULT_MODEL, bundled_weights_dir
from napari_glandseg.model.resolve import weights_file
from napari_glandseg.model.user_models import ENV_VAR
from napari_glandseg.train.common import build_model

MODEL_DIR = Path(model_pkg.__file__).parent


def _imports_of(path: Path) -> set[str]:
    """Sibling modules of ``model/`` that ``path`` imports anywhere (top level or inside a function:
    an import inside a function hides a circle, it does not remove it); ``__init__`` for a name
    taken from the package itself, which imports every module."""
    stems = {p.stem for p in MODEL_DIR.glob("*.py")} - {"__init__"}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "napari_glandseg.model":
            found |= {a.name if a.name in stems else "__init__" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("napari_glandseg.model."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("napari_glandseg.model.")}
    return found


def test_model_modules_import_each_other_without_a_circle():
    graph = {p.stem: _imports_of(p) for p in MODEL_DIR.glob("*.py") if p.stem != "__init__"}
    assert all("__init__" not in deps for deps in graph.values()), graph
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import circle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for dep in graph.get(name, ()):
            visit(dep, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "models"))
    return tmp_path / "models"


def _tiny(path: Path, name: str) -> Path:
    torch.manual_seed(0)
    model = create_model("glandseg_tiny")
    weights, _ = save_checkpoint(model, path, card=model.card.replace(name=name))
    return weights


def test_names_resolve_in_one_order_without_reading_weights(tmp_path, user_folder):
    default = resolve()
    assert (default.kind, default.name, default.spec) == ("preset", DEFAULT_MODEL, "")
    assert default.weights == bundled_weights_dir() / f"{DEFAULT_MODEL}.safetensors" and default.trained
    untrained = resolve("glandseg_tiny")
    assert untrained.weights is None and not untrained.trained and untrained.sha256() is None
    ck = _tiny(tmp_path / "ck", "my-checkpoint")
    for spec in (ck, str(ck), str(ck.with_suffix(".json"))):
        source = resolve(spec)
        assert (source.kind, source.name, source.weights) == ("checkpoint", "my-checkpoint", ck)
    _tiny(user_folder / "mine" / "model", "mine")
    _tiny(user_folder / "glandseg_tiny" / "model", "shadow")  # a user folder named like a preset
    assert resolve("mine").kind == "user" and resolve("mine").card.name == "mine"
    assert resolve("glandseg_tiny").kind == "preset"  # presets come first, everywhere
    assert resolve(resolve("mine")) == resolve("mine")
    with pytest.raises(GlandsegError, match="neither a preset"):
        resolve("nothing-by-this-name")
    for suffix in (".pt", ".pth", ".ckpt", ".bin", ".pkl"):  # one suffix list: each refused alike
        with pytest.raises(GlandsegError, match="pickled checkpoints"):
            resolve(f"model{suffix}")


def test_load_and_fresh(tmp_path, user_folder):
    ck = _tiny(tmp_path / "ck", "ck")
    source = resolve(ck)
    loaded = source.load("cpu")
    assert not loaded.training and loaded.card.name == "ck"
    assert source.sha256() == resolve(str(ck)).sha256() and len(source.sha256()) == 64
    fresh = source.fresh()
    assert fresh.card == source.card and not torch.equal(
        fresh.state_dict()["stem1.0.weight"], loaded.state_dict()["stem1.0.weight"])
    with pytest.warns(UserWarning, match="untrained"):
        resolve("glandseg_tiny").load("cpu")
    assert resolve("glandseg_tiny").fresh(num_classes=2).card.classes == ("background", "gland")


def test_the_picker_fine_tuning_and_training_agree_with_resolve(tmp_path, user_folder):
    _tiny(user_folder / "mine" / "model", "mine")
    choices = ModelChoices()
    for label in ("glandseg_colon", "glandseg_tiny", "mine"):
        assert choices.card(label) == resolve(label).card
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert choices.load("mine", "cpu").card == resolve("mine").card
    # training: a preset is an architecture (untrained); a user model starts from its weights
    trained = resolve("mine").load("cpu").state_dict()
    net = build_model("mine", crop_px=64)
    assert net.training and all(torch.equal(v, trained[k]) for k, v in net.state_dict().items())
    assert build_model("glandseg_tiny", crop_px=64).card.name == "glandseg_tiny"
    # init: a checkpoint path needs no card, a name is resolved
    assert weights_file("mine") == user_folder / "mine" / "model.safetensors"
    bare = _tiny(tmp_path / "bare", "bare")
    bare.with_suffix(".json").unlink()
    assert weights_file(bare) == bare
    with pytest.raises(GlandsegError, match="untrained preset"):
        weights_file("glandseg_tiny")


def test_fine_tuning_records_the_resolved_weights(tmp_path, user_folder):
    from napari_glandseg.train.corrections import _load_base

    weights = _tiny(user_folder / "mine" / "model", "mine")
    model, base = _load_base("mine", "cpu")
    assert base["path"] == weights and base["info"]["sha256"] == resolve("mine").sha256()
    assert model.card.name == "mine"


def test_a_slide_run_reports_the_model_it_ran(tmp_path):
    from napari_glandseg.inference import SlideRunSettings, segment_slide
    from napari_glandseg.slide import open_slide

    ck = _tiny(tmp_path / "ck", "ck")
    image = np.full((256, 256, 3), 230, np.uint8)
    image[64:192, 64:192] = (120, 60, 140)  # a block of "tissue"
    Image.fromarray(image).save(tmp_path / "slide.png")
    run = segment_slide(open_slide(tmp_path / "slide.png", mpp=1.24), tmp_path / "out.zarr", str(ck),
                        SlideRunSettings(device="cpu"))
    assert (run.model.kind, run.model.weights) == ("checkpoint", ck)
    assert run.chunks == 1 and run.chunks_run == 1 and run.stats()["shape"] == list(run.shape)
